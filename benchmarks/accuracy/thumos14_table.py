"""The paper's THUMOS14 table from the S-CNN authors' own window outputs.

windows CSV → drop background → window-length prior from thumos14-val → per-video
per-class NMS at (IoU − 0.1) → THUMOS14 submission (.txt, rounded as the authors' files) →
evaluation at that IoU. Prints per-class AP and mAP under the S-CNN "updated" protocol (the
paper's numbers: 47.7 / 43.5 / 36.3 / 28.7 / 19.0) and, for comparison, the mAP of the same
files under the official THUMOS14 kit and the ActivityNet protocol. ``--windows res3d``: the
windows of the authors' second release (Res3D-18, C3D-v1.1) instead.

    python3 benchmarks/accuracy/thumos14_table.py [--windows res3d]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from scnn.bundled_data import resolve_ground_truth
from scnn.evaluate import PROTOCOLS, evaluate
from scnn.formats import load_detections, load_ground_truth, write_detections
from scnn.formats.windows_csv import read_windows_csv
from scnn.postprocess import postprocess, window_length_prior

THUMOS14 = Path(__file__).resolve().parents[2] / "tests/data/thumos14"
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
PAPER_MAP = (0.47719, 0.43535, 0.36276, 0.28702, 0.18970)
WINDOWS = {"c3d": "scnn_c3d_test_windows.csv.gz", "res3d": "scnn_res3d_test_windows.csv.gz"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", choices=WINDOWS, default="c3d")
    args = parser.parse_args()
    test = load_ground_truth(THUMOS14 / "annotations" / "test")
    val = load_ground_truth(resolve_ground_truth("thumos14-val"))
    windows = read_windows_csv(THUMOS14 / WINDOWS[args.windows], test.classes)
    prior = window_length_prior(val.instances, test.classes)
    ap = {name: np.zeros((len(IOU_THRESHOLDS), len(test.classes))) for name in PROTOCOLS}
    with tempfile.TemporaryDirectory() as folder:
        submission = Path(folder) / "det.txt"
        for t, iou in enumerate(IOU_THRESHOLDS):
            detections = postprocess(windows, nms_iou=round(iou - 0.1, 1), prior=prior)
            write_detections(submission, detections, test.classes)
            submitted = load_detections(submission, classes=test.classes)
            for name in PROTOCOLS:
                ap[name][t] = evaluate(test, submitted, name, [iou]).average_precision[0]
    print("Per-class AP, protocol scnn (NMS at IoU - 0.1, prior from thumos14-val)")
    print(f"{'class':<20}" + "".join(f"{iou:>8.1f}" for iou in IOU_THRESHOLDS))
    for c, name in enumerate(test.classes):
        print(f"{name:<20}" + "".join(f"{v:8.4f}" for v in ap["scnn"][:, c]))
    print()
    print(f"{'mAP':<20}" + "".join(f"{iou:>8.1f}" for iou in IOU_THRESHOLDS))
    if args.windows == "c3d":
        print(f"{'paper (scnn kit)':<20}" + "".join(f"{v:8.4f}" for v in PAPER_MAP))
    for name in PROTOCOLS:
        print(f"{name:<20}" + "".join(f"{v:8.4f}" for v in ap[name].mean(axis=1)))


if __name__ == "__main__":
    main()
