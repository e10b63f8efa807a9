"""``scnn evaluate``: mAP of a detections file against ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.bundled_data import resolve_ground_truth
from scnn.cli.common import EXIT_OK, add_class_options, class_table, fraction
from scnn.evaluate import PROTOCOLS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn evaluate`` and its arguments."""
    parser = subparsers.add_parser(
        "evaluate",
        help="mAP of detections against ground truth under a named protocol",
        description="Per-class AP and mAP per IoU threshold. Protocols: thumos14 (the official "
        "THUMOS14 kit), scnn (the S-CNN authors' updated kit, the paper's numbers), "
        "activitynet (the ActivityNet detection evaluator, stable tie order).",
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
    parser.add_argument("--protocol", required=True, choices=tuple(PROTOCOLS))
    parser.add_argument(
        "--iou",
        type=fraction,
        nargs="+",
        default=None,
        metavar="T",
        help="IoU thresholds (default: 0.1 0.2 0.3 0.4 0.5 for thumos14/scnn, "
        "0.5:0.05:0.95 for activitynet)",
    )
    parser.add_argument(
        "--subset",
        default=None,
        help="ground-truth subset (THUMOS14 file suffix, ActivityNet 'subset'; default: all)",
    )
    add_class_options(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--proposals",
        action="store_true",
        help="also report class-agnostic proposal recall and AR@AN (1, 5, 10, 50, 100 per video)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the results."""
    from scnn.evaluate import evaluate_files

    text = evaluate_files(
        args.gt,
        args.pred,
        args.protocol,
        args.iou,
        subset=args.subset,
        class_table=class_table(args),
        proposals=args.proposals,
        json_path=args.json,
    )
    print(text)
    return EXIT_OK
