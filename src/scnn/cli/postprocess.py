"""``scnn postprocess``: a windows CSV to detections (prior, per-class NMS)."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.bundled_data import resolve_ground_truth
from scnn.cli.common import (
    EXIT_OK,
    add_class_options,
    add_vote_option,
    class_table,
    finite,
    fraction,
    positive_int,
)
from scnn.postprocess import NMS_THRESHOLD


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn postprocess`` and its arguments."""
    parser = subparsers.add_parser(
        "postprocess",
        help="scored windows -> detections (window-length prior, per-class temporal NMS)",
        description="Turn a windows CSV (columns of scnn_c3d_test_windows.csv.gz, gzip or "
        "plain) into detections: drop background, weight scores by the window-length prior, "
        "greedy per-video per-class NMS, sort by score (method.md section 4).",
    )
    parser.add_argument("windows", type=Path, help="windows CSV (.csv or .csv.gz)")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        help="output file: .txt (THUMOS14 submission), .json (ActivityNet) or .csv",
    )
    add_class_options(parser)
    parser.add_argument(
        "--prior-from",
        type=resolve_ground_truth,
        default=None,
        metavar="GT",
        help="training annotations (THUMOS14 folder, .json or .csv, or thumos14-val: the "
        "bundled THUMOS14 validation set, the authors' source) for the window-length prior: a "
        "duration bin per window length in WINDOWS (the authors' bins for their 16..512 "
        "frames, else each length's duration) (default: no prior)",
    )
    parser.add_argument("--prior-subset", default=None, help="subset of --prior-from to use")
    parser.add_argument(
        "--nms",
        type=fraction,
        default=NMS_THRESHOLD,
        help="NMS IoU threshold: suppress IoU > this (default %(default)s, the authors' demo; "
        "their THUMOS14 table uses evaluation IoU - 0.1)",
    )
    parser.add_argument(
        "--top-k", type=positive_int, default=None, help="keep the best K per video (off)"
    )
    parser.add_argument(
        "--min-score", type=finite, default=None, help="drop weighted scores below this (off)"
    )
    add_vote_option(parser, "off")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Post-process the windows CSV into the detections file."""
    from scnn.postprocess import postprocess_files

    found, windows = postprocess_files(
        args.windows,
        args.out,
        class_table=class_table(args),
        prior_from=args.prior_from,
        prior_subset=args.prior_subset,
        nms_threshold=args.nms,
        top_k=args.top_k,
        min_score=args.min_score,
        vote_iou=args.vote_iou,
    )
    print(f"{found} detections from {windows} windows -> {args.out}")
    return EXIT_OK
