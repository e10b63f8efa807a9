"""Speed of decoding the test video and scaling it to the model's frame size.

On its own (speed.py runs it among the others):

    python3 benchmarks/speed/speed_decode.py --model cpu --threads 2
"""

from __future__ import annotations

import os
import time

import av
from harness import FPS, Bench, Row, iter_frames, iter_frames_parallel, section_main


def measure(bench: Bench) -> None:
    """Decode + scale to the model's frame size: the obvious PyAV loop (a new scaling
    context per frame, FFmpeg's default threads, no resampling), ``iter_frames``, and
    ``iter_frames_parallel`` with one process per core (60 s segments)."""
    size = bench.size.clip.frame_size
    processes = bench.args.decode_processes or os.cpu_count() or 1

    def baseline() -> int:
        count = 0
        with av.open(str(bench.video)) as container:
            for frame in container.decode(video=0):
                frame.to_ndarray(width=size[0], height=size[1], format="rgb24")
                count += 1
        return count

    runs = (
        ("baseline: PyAV loop, frame.to_ndarray(width, height)", baseline),
        ("iter_frames", lambda: sum(map(len, iter_frames(bench.video, size=size)))),
        (
            f"iter_frames_parallel, {processes} processes",
            lambda: sum(map(len, iter_frames_parallel(bench.video, processes, size=size))),
        ),
    )
    base = None
    for name, run in runs:
        start = time.perf_counter()
        frames = run()
        rate = frames / (time.perf_counter() - start)
        base = base or rate
        bench.add(
            Row(
                "decode",
                f"{size[0]}x{size[1]}, {name}",
                rate,
                "frames/s",
                base,
                note=f"{rate / FPS:.0f}x real time",
            )
        )


if __name__ == "__main__":
    section_main(__doc__, measure)
