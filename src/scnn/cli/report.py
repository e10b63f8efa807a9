"""``scnn report``: the HTML report of a detections file."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.bundled_data import resolve_ground_truth
from scnn.cli.common import EXIT_OK, add_class_options, class_table, fraction


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn report`` and its arguments."""
    parser = subparsers.add_parser(
        "report",
        help="an HTML report: video pages with clickable timelines, metrics, PR curves",
        description="Write a self-contained report folder (opens from file://, no network): "
        "index.html lists the videos and, with --gt, mAP per IoU threshold under the "
        "thumos14, scnn and activitynet protocols, per-class AP and a precision-recall "
        "picture; each video's page has a player, ground-truth and detection timelines per "
        "class (click to seek) and a score slider. Videos a browser cannot play are "
        "re-encoded to H.264 MP4 (25 fps, at most 360 pixels high, no audio).",
    )
    parser.add_argument("results", type=Path, help="detections: .json (ActivityNet), .csv, .txt")
    parser.add_argument(
        "--gt",
        type=resolve_ground_truth,
        default=None,
        help="ground truth (THUMOS14 folder, .json or .csv, or thumos14-val: the bundled "
        "THUMOS14 validation set): adds metrics and marks true and false positives",
    )
    parser.add_argument("--subset", default=None, help="ground-truth subset (default: all)")
    parser.add_argument(
        "--videos",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of <video>.<ext> files to play beside the timelines (default: none)",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="report folder")
    parser.add_argument(
        "--iou",
        type=fraction,
        default=0.5,
        help="IoU at which detections count as true positives on the pages (default 0.5)",
    )
    add_class_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the report folder."""
    from scnn.html_report import report_from_files

    index = report_from_files(
        args.out,
        args.results,
        gt=args.gt,
        subset=args.subset,
        videos_dir=args.videos,
        class_table=class_table(args),
        iou_threshold=args.iou,
    )
    print(f"HTML report: {index}")
    return EXIT_OK
