"""``scnn diagnose``: DETAD's error analysis of a detections file."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.bundled_data import resolve_ground_truth
from scnn.cli.common import EXIT_OK, add_class_options, class_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn diagnose`` and its arguments."""
    parser = subparsers.add_parser(
        "diagnose",
        help="where detections go wrong: DETAD's error types, mAP gains, missed instances",
        description="Match detections as the activitynet protocol does at one tIoU and give "
        "each false positive one type (double_detection, wrong_label, localization, "
        "confusion, background), the mAP gained if each type were removed, missed instances "
        "by length and by instances per video, and the wrong labels' confusion matrix "
        "(DETAD, Alwassel et al., ECCV 2018). Writes OUT/diagnosis.json and pictures.",
    )
    parser.add_argument(
        "--gt",
        type=resolve_ground_truth,
        required=True,
        help="ground truth: THUMOS14 annotation folder, ActivityNet .json or .csv, or "
        "thumos14-val (the bundled THUMOS14 validation set)",
    )
    parser.add_argument(
        "--pred", type=Path, required=True, help="detections: THUMOS14 .txt, .json or .csv"
    )
    parser.add_argument(
        "--iou", type=float, default=0.5, help="tIoU of a true positive (default 0.5)"
    )
    parser.add_argument(
        "--subset",
        default=None,
        help="ground-truth subset (THUMOS14 file suffix, ActivityNet 'subset'; default: all)",
    )
    add_class_options(parser)
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        help="folder for diagnosis.json, false_positives.png, false_negatives.png and "
        "wrong_labels.png",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Diagnose, write OUT's files and print the summary."""
    from scnn.diagnose import diagnose_files, format_diagnosis

    diagnosis = diagnose_files(
        args.gt,
        args.pred,
        args.out,
        iou=args.iou,
        subset=args.subset,
        class_table=class_table(args),
    )
    print(format_diagnosis(diagnosis))
    print(f"diagnosis: {args.out / 'diagnosis.json'}")
    return EXIT_OK
