"""``scnn postprocess``: a windows CSV to detections (prior, per-class NMS)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from scnn.bundled_data import resolve_ground_truth
from scnn.cli.common import (
    EXIT_OK,
    add_class_options,
    add_device_option,
    add_precision_option,
    add_vote_option,
    class_table,
    count,
    finite,
    fraction,
    network_device,
    positive_int,
)
from scnn.errors import ScnnError
from scnn.postprocess import NMS_THRESHOLD

if TYPE_CHECKING:
    from scnn.detect import Detector


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn postprocess`` and its arguments."""
    parser = subparsers.add_parser(
        "postprocess",
        help="scored windows -> detections (window-length prior, per-class temporal NMS)",
        description="Turn a windows CSV (columns of scnn_c3d_test_windows.csv.gz, gzip or "
        "plain) into detections: drop background, weight scores by the window-length prior, "
        "greedy per-video per-class NMS, sort by score (method.md section 4). With --model and "
        "--videos, a model's boundary-clip network then moves each detection's boundaries, "
        "reading the videos again (docs/accuracy.md).",
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
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a model directory with a boundary-clip network (`scnn detect`'s): each "
        "detection's start and end moved by it, as `scnn detect` moves them; needs --videos "
        "(its classes serve when --classes and --prior-from are not given)",
    )
    parser.add_argument(
        "--videos",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --model: the folder holding the CSV's videos (<video>.mp4 and the like), "
        "read again around each detection's boundaries",
    )
    parser.add_argument(
        "--boundary-clips",
        type=count,
        default=None,
        metavar="ROUNDS",
        help="with --model: rounds of its boundary-clip network (default: the model's)",
    )
    add_precision_option(parser)
    add_device_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Post-process the windows CSV into the detections file."""
    from scnn.postprocess import postprocess_files

    detector = boundary_clips(args)
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
        refine=None if detector is None else detector.refine_in_folder(args.videos),
        classes=None if detector is None else detector.classes,
    )
    print(f"{found} detections from {windows} windows -> {args.out}")
    return EXIT_OK


def boundary_clips(args: argparse.Namespace) -> Detector | None:
    """The model whose boundary clips move the detections (None without --model)."""
    from scnn.detect import Detector

    if (args.model is None) != (args.videos is None):
        raise ScnnError("--model and --videos go together: boundary clips read the videos")
    if args.model is None:
        if args.boundary_clips is not None:
            raise ScnnError("--boundary-clips needs --model and --videos")
        return None
    device = network_device(args.device, None)
    detector = Detector.load(
        args.model,
        device=device,
        precision=args.precision,
        boundary_clip_rounds=args.boundary_clips,
    )
    if detector.boundary_clips is None and args.boundary_clips != 0:
        raise ScnnError(f"the model {args.model} has no boundary-clip network")
    return detector
