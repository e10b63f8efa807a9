"""Time `evaluate` on 1 000 000 detections against the THUMOS14 test ground truth.

Target: under 10 s per protocol, all of its thresholds together. The detections are
made on the spot: 30 % are jittered copies of ground-truth instances (so matching has work to
do), 70 % random segments with random classes; scores have 3 decimals, so ties are common.

    python3 benchmarks/speed/evaluate_speed.py [--count N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scnn.evaluate import PROTOCOLS, evaluate
from scnn.formats import load_ground_truth
from scnn.records import Detection

THUMOS14_TEST = Path(__file__).resolve().parents[2] / "tests/data/thumos14/annotations/test"
NEAR_GROUND_TRUTH_FRACTION = 0.3
MAX_RANDOM_START_S = 600.0


def make_detections(gt, count: int, seed: int = 0) -> list[Detection]:
    rng = np.random.default_rng(seed)
    near = int(count * NEAR_GROUND_TRUTH_FRACTION)
    source = rng.integers(0, len(gt.instances), near)
    starts = np.array([gt.instances[i].start_s for i in source]) + rng.normal(0, 1.0, near)
    ends = np.array([gt.instances[i].end_s for i in source]) + rng.normal(0, 1.0, near)
    videos = [gt.instances[i].video for i in source]
    labels = [gt.instances[i].label for i in source]
    far = count - near
    video_names = sorted({i.video for i in gt.instances})
    random_starts = rng.uniform(0, MAX_RANDOM_START_S, far)
    starts = np.concatenate([starts, random_starts])
    ends = np.concatenate([ends, random_starts + rng.uniform(0.5, 20.0, far)])
    videos += [video_names[i] for i in rng.integers(0, len(video_names), far)]
    labels += [gt.classes[i] for i in rng.integers(0, len(gt.classes), far)]
    scores = np.round(rng.uniform(0, 1, count), 3)
    return [
        Detection(v, float(s), float(e), c, float(p))
        for v, s, e, c, p in zip(videos, starts, ends, labels, scores, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    gt = load_ground_truth(THUMOS14_TEST)
    detections = make_detections(gt, args.count)
    print(f"{len(detections)} detections, {len(gt.instances)} instances")
    # CPU seconds beside wall seconds: on a shared machine the wall clock counts other jobs too
    print(f"{'protocol':<12} {'thresholds':>10} {'seconds':>8} {'cpu s':>8} {'mAP@first':>10}")
    for name, protocol in PROTOCOLS.items():
        began, began_cpu = time.perf_counter(), time.process_time()
        result = evaluate(gt, detections, name)
        seconds = time.perf_counter() - began
        cpu_seconds = time.process_time() - began_cpu
        print(
            f"{name:<12} {len(protocol.iou_thresholds):>10} {seconds:>8.2f} "
            f"{cpu_seconds:>8.2f} {result.mean_ap[0]:>10.4f}"
        )


if __name__ == "__main__":
    main()
