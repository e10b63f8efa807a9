"""Speed of decoding the test video and scaling it to the model's frame size.

On its own (speed.py runs it among the others):

    python3 benchmarks/speed/speed_decode.py --model cpu --threads 2
"""

from __future__ import annotations

import os
import time

import av
from harness import (
    FPS,
    Bench,
    Row,
    iter_frames,
    iter_frames_parallel,
    num_frames,
    probe,
    section_main,
)

RANGE_FRAMES = 100
RANGE_EVERY_FRAMES = 750  # 30 s


def measure(bench: Bench) -> None:
    """Decode + scale to the model's frame size: the obvious PyAV loop (a new scaling
    context per frame, FFmpeg's default threads, no resampling), ``iter_frames``,
    ``iter_frames_parallel`` with one process per core (60 s segments), and ``iter_frames``
    over 100-frame ranges every 30 s, each sought (the boundary clips' second pass over sparse
    detections: boundary_refiner.SEEK_GAP_FRAMES); its rate counts the whole video's frames,
    as a pass over it that skips what it need not convert."""
    size = bench.size.clip.frame_size
    processes = bench.args.decode_processes or os.cpu_count() or 1

    def baseline() -> int:
        count = 0
        with av.open(str(bench.video)) as container:
            for frame in container.decode(video=0):
                frame.to_ndarray(width=size[0], height=size[1], format="rgb24")
                count += 1
        return count

    def ranges() -> int:
        total = num_frames(probe(bench.video))
        for start in range(RANGE_EVERY_FRAMES // 2, total, RANGE_EVERY_FRAMES):
            stop = min(start + RANGE_FRAMES, total)
            sum(map(len, iter_frames(bench.video, size=size, start_frame=start, stop_frame=stop)))
        return total

    runs = (
        ("baseline: PyAV loop, frame.to_ndarray(width, height)", baseline),
        ("iter_frames", lambda: sum(map(len, iter_frames(bench.video, size=size)))),
        (
            f"iter_frames_parallel, {processes} processes",
            lambda: sum(map(len, iter_frames_parallel(bench.video, processes, size=size))),
        ),
        (f"iter_frames over {RANGE_FRAMES}-frame ranges every {RANGE_EVERY_FRAMES}", ranges),
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
