"""The rates behind docs/thumos14.md's time estimate, measured through the recipe itself on a
replica of the downloads (tests/thumos14_replica.py): full-size C3D training clips/s of
``scnn train --config thumos14`` from the Sports-1M Caffe file at the authors' batch of 3,
and detection's real-time factor on one longer test video, with every window through both
networks and with the proposal network alone; then the whole recipe's time from them.

    python3 benchmarks/speed/thumos14_rates.py --steps 8 --video-s 30 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from thumos14_replica import (  # noqa: E402
    SPORTS1M_MEAN,
    SPORTS1M_WEIGHTS,
    THUMOS_SIZE,
    UCF101,
    VALIDATION,
    VALIDATION_ANNOTATIONS,
    write_replica,
)
from videos import write_video  # noqa: E402

from scnn.cli import EXIT_OK, main  # noqa: E402
from scnn.detect import Detector  # noqa: E402

STAGES = ("proposal", "classification", "localization")
STEPS_PER_STAGE = 30_000  # the authors' solvers
BATCH = 3  # clips per step, the authors'
TEST_VIDEOS_S = 46_186  # the 213 annotated test videos (tests/data/thumos14/videos_test.csv)
ALL_TEST_VIDEOS_S = 293_514  # all 1574 videos of TH14_test_set_mp4
# The authors' proposal network passed 79 475 of the 563 817 test windows (method.md §4–5).
PASS_FRACTION = 79_475 / 563_817


def training_rates(root: Path, steps: int) -> dict[str, float]:
    """Median clips/s of each stage's logged steps (the first step, warm-up, left out)."""
    command = ["--quiet", "train", "--config", "thumos14", "--videos", VALIDATION]
    command += ["--annotations", VALIDATION_ANNOTATIONS, "--trimmed", UCF101]
    command += ["--init-from", SPORTS1M_WEIGHTS, "--mean", SPORTS1M_MEAN, "--out", "runs/rates"]
    command += ["--steps", str(steps), "--batch-size", str(BATCH), "--workers", "1"]
    command += ["--set", "log_every=1"]
    if main(command) != EXIT_OK:
        raise SystemExit("training failed")
    rates = {}
    for stage in STAGES:
        lines = (root / "runs/rates" / stage / "log.jsonl").read_text().splitlines()
        rates[stage] = statistics.median(json.loads(line)["clips_per_s"] for line in lines[1:])
    return rates


def detection_seconds(model: Path, video: Path, threshold: float) -> tuple[float, int]:
    """Wall seconds of scoring ``video`` at this proposal threshold, and windows scored."""
    detector = Detector.load(model, proposal_threshold=threshold)
    start = time.perf_counter()
    windows = detector.score_windows(video)
    return time.perf_counter() - start, len(windows)


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per stage")
    parser.add_argument("--video-s", type=float, default=30.0, help="the test video's length")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_replica(root)
        os.chdir(root)
        rates = training_rates(root, args.steps)
        frames = round(args.video_s * 30)
        rng = np.random.default_rng(1)
        width, height = THUMOS_SIZE
        base = rng.integers(0, 256, (height, width + frames, 3), dtype=np.uint8)
        pictures = np.stack([base[:, k : k + width] for k in range(frames)])
        video = write_video(root / "video_test_long.mp4", pictures, 30)
        model = root / "runs/rates/model"
        every, windows = detection_seconds(model, video, 0.0)
        proposal_only, _ = detection_seconds(model, video, 1.0)
    clips_per_s = statistics.mean(rates.values())
    train_h = len(STAGES) * STEPS_PER_STAGE * BATCH / clips_per_s / 3600
    per_video_s = proposal_only + PASS_FRACTION * (every - proposal_only)
    factor = args.video_s / per_video_s
    print(f"training clips/s: {', '.join(f'{k} {v:.2f}' for k, v in rates.items())}")
    print(f"  3 x 30 000 steps x 3 clips: {train_h:.0f} h")
    print(
        f"detection of a {args.video_s:g} s video ({windows} windows): every window through "
        f"both networks {every:.1f} s ({args.video_s / every:.2f}x real time), proposal "
        f"network alone {proposal_only:.1f} s ({args.video_s / proposal_only:.2f}x)"
    )
    print(
        f"  at the authors' {PASS_FRACTION:.1%} pass fraction: {factor:.2f}x real time; "
        f"213 annotated test videos {TEST_VIDEOS_S / factor / 3600:.1f} h, "
        f"all 1574 {ALL_TEST_VIDEOS_S / factor / 3600:.1f} h"
    )


if __name__ == "__main__":
    main_benchmark()
