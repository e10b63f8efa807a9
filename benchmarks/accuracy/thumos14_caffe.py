"""The imported authors' model on THUMOS14 test videos, window by window against the authors'.

For a user who has the THUMOS14 test videos and has run `scnn import-caffe`: scores every
video that the authors' windows CSV names (the windows passing the proposal network, with
their localization class and score), then reports

- the proposal agreement: windows kept by both, by the authors only, by scnn only;
- on windows kept by both, the share with the same localization class and the distribution
  of |score difference|;
- the paper's table (S-CNN post-processing, "scnn" protocol at IoU 0.1…0.5) from scnn's own
  windows, next to the same table from the authors' windows.

Exact equality is not expected: the authors decoded JPEG frames and resized them with OpenCV;
scnn decodes the videos with FFmpeg and resizes with its scaler.

    python3 benchmarks/accuracy/thumos14_caffe.py --model MODEL_DIR --videos THUMOS14_TEST_VIDEOS \\
        --theirs scnn_c3d_test_windows.csv.gz --ground-truth annotations/test \\
        --windows ours.csv.gz
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from scnn.batch import detect_videos
from scnn.bundled_data import resolve_ground_truth
from scnn.detect import Detector
from scnn.evaluate import evaluate
from scnn.formats import load_detections, load_ground_truth, write_detections
from scnn.formats.windows_csv import concat_windows, read_windows_csv, write_windows_csv
from scnn.postprocess import postprocess, window_length_prior
from scnn.records import ScoredWindows

IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
PAPER_MAP = (0.47719, 0.43535, 0.36276, 0.28702, 0.18970)


def score_videos(model: Path, videos: Path, names: list[str], device: str) -> ScoredWindows:
    """scnn's windows on the named videos found in ``videos`` (any video suffix)."""
    detector = Detector.load(model, device=device)
    files = {p.stem: p for p in videos.iterdir() if p.is_file()}
    missing = [name for name in names if name not in files]
    if missing:
        print(f"{len(missing)} of {len(names)} videos not found, e.g. {missing[0]}")
    result = detect_videos(detector, [files[n] for n in names if n in files])
    return concat_windows(result.windows, detector.classes)


def _keys(windows: ScoredWindows) -> dict[tuple[str, int, int], int]:
    rows = zip(windows.videos, windows.start_frame, windows.window_frames, strict=True)
    return {(str(v), int(s), int(n)): row for row, (v, s, n) in enumerate(rows)}


QUANTILES = (0.5, 0.9, 0.99, 1.0)


def _quantiles(values: np.ndarray) -> str:
    median, p90, p99, top = np.quantile(values, QUANTILES) if len(values) else [np.nan] * 4
    return f"median {median:.4f}, 90 % {p90:.4f}, 99 % {p99:.4f}, max {top:.4f}"


def compare(ours: ScoredWindows, theirs: ScoredWindows) -> None:
    """Print the proposal agreement, the class agreement and the score differences."""
    ours_rows, their_rows = _keys(ours), _keys(theirs)
    both = sorted(set(ours_rows) & set(their_rows))
    only_theirs = len(set(their_rows) - set(ours_rows))
    only_ours = len(set(ours_rows) - set(their_rows))
    print(f"windows kept by the proposal network: both {len(both)}, ", end="")
    print(f"authors only {only_theirs}, scnn only {only_ours}")
    if not both:
        return
    mine = np.array([ours_rows[k] for k in both])
    yours = np.array([their_rows[k] for k in both])
    same = ours.label_index[mine] == theirs.label_index[yours]
    difference = np.abs(ours.score[mine] - theirs.score[yours])
    print(f"same localization class: {same.mean():.1%} of {len(both)} windows")
    print(f"|score difference|, same class: {_quantiles(difference[same])}")
    print(f"|score difference|, all: {_quantiles(difference)}")


def table(windows: ScoredWindows, ground_truth: Path, prior_from: Path) -> list[float]:
    """mAP at IoU 0.1…0.5: prior, NMS at IoU − 0.1, submission rounding, "scnn" protocol."""
    test = load_ground_truth(ground_truth)
    prior = window_length_prior(load_ground_truth(prior_from).instances, test.classes)
    maps = []
    with tempfile.TemporaryDirectory() as folder:
        submission = Path(folder) / "det.txt"
        for iou in IOU_THRESHOLDS:
            write_detections(
                submission, postprocess(windows, round(iou - 0.1, 1), prior), test.classes
            )
            detections = load_detections(submission, classes=test.classes)
            result = evaluate(test, detections, "scnn", [iou])
            maps.append(float(np.mean(result.average_precision[0])))
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="scnn import-caffe's output")
    parser.add_argument("--videos", type=Path, required=True, help="THUMOS14 test videos")
    parser.add_argument("--theirs", type=Path, required=True, help="the authors' windows CSV")
    parser.add_argument("--ground-truth", type=Path, required=True, help="annotations/test")
    parser.add_argument("--prior-from", default="thumos14-val", help="(bundled val annotations)")
    parser.add_argument(
        "--windows",
        type=Path,
        required=True,
        help="scnn's windows CSV: written, or read if it exists",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    classes = load_ground_truth(args.ground_truth).classes
    theirs = read_windows_csv(args.theirs, classes)
    if args.windows.exists():
        ours = read_windows_csv(args.windows, classes)
    else:
        names = list(dict.fromkeys(str(v) for v in theirs.videos))
        ours = score_videos(args.model, args.videos, names, args.device)
        write_windows_csv(args.windows, ours)
    compare(ours, theirs)
    prior_from = resolve_ground_truth(args.prior_from)
    print(f"{'mAP, scnn protocol':<22}" + "".join(f"{iou:>8.1f}" for iou in IOU_THRESHOLDS))
    print(f"{'paper':<22}" + "".join(f"{v:8.4f}" for v in PAPER_MAP))
    for name, windows in (("authors' windows", theirs), ("scnn's windows", ours)):
        print(
            f"{name:<22}"
            + "".join(f"{v:8.4f}" for v in table(windows, args.ground_truth, prior_from))
        )


if __name__ == "__main__":
    main()
