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
    results = {}
    for duration_s in MEMORY_VIDEOS_S:
        video = make_video(bench.work / f"memory_{duration_s}s.mp4", duration_s, MEMORY_SOURCE_SIZE)
        command = [*bench.child_command(__file__), "--peak-rss-of", str(video)]
        start = time.perf_counter()
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        peak_mb = float(output.split()[-1])
        results[duration_s] = peak_mb
        bench.add(
            Row(
                "memory",
                f"detection peak RSS, {duration_s / 60:g}-minute video",
                peak_mb,
                "MB",
                note=f"{duration_s / (time.perf_counter() - start):.0f}x real time incl. start-up",
            )
        )
    bench.extra["peak_rss_mb"] = results


def peak_rss_of(args: argparse.Namespace) -> None:
    """Child process of the memory section: detect on one video, print the peak RSS in MB."""
    detector = Detector.load(existing_model_dir(args), device=args.device)
    detector(args.peak_rss_of)
    print(own_peak_rss_mb())


if __name__ == "__main__":
    section_or_child_main(__doc__, measure, peak_rss_of)
