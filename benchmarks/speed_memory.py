"""Peak memory (RSS) of detection on a 10-minute and a 2-hour video, each in a fresh process.

On its own (speed.py runs it among the others):

    python3 benchmarks/speed_memory.py --model cpu --threads 2
"""

from __future__ import annotations

import argparse
import subprocess
import time

from harness import (
    Bench,
    Detector,
    Row,
    existing_model_dir,
    make_video,
    own_peak_rss_mb,
    section_or_child_main,
)

MEMORY_VIDEOS_S = (600, 7200)  # 10 minutes and 2 hours
MEMORY_SOURCE_SIZE = (96, 72)  # small source frames: the 2-hour video encodes in about a minute


def measure(bench: Bench) -> None:
    """Each video detected in a child process, whose peak RSS is that of detection alone."""
    bench.extra["peak_rss_mb"] = peak_rss_rows(bench, __file__, "detection")


def peak_rss_rows(bench: Bench, script: str, job: str) -> dict[int, float]:
    """The peak RSS in MB of ``script``'s child (``--peak-rss-of VIDEO``) on each memory video,
    a row each, by video duration in seconds."""
    results = {}
    for duration_s in MEMORY_VIDEOS_S:
        video = make_video(bench.work / f"memory_{duration_s}s.mp4", duration_s, MEMORY_SOURCE_SIZE)
        command = [*bench.child_command(script), "--peak-rss-of", str(video)]
        start = time.perf_counter()
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[duration_s] = float(output.split()[-1])
        bench.add(
            Row(
                "memory",
                f"{job} peak RSS, {duration_s / 60:g}-minute video",
                results[duration_s],
                "MB",
                note=f"{duration_s / (time.perf_counter() - start):.0f}x real time incl. start-up",
            )
        )
    return results


def peak_rss_of(args: argparse.Namespace) -> None:
    """Child process of the memory section: detect on one video, print the peak RSS in MB."""
    detector = Detector.load(existing_model_dir(args), device=args.device)
    detector(args.peak_rss_of)
    print(own_peak_rss_mb())


if __name__ == "__main__":
    section_or_child_main(__doc__, measure, peak_rss_of)
