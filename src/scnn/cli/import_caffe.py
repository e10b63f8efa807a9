"""``scnn import-caffe``: the authors' Caffe models as a model directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.cli.common import EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn import-caffe`` and its arguments."""
    parser = subparsers.add_parser(
        "import-caffe",
        help="turn the S-CNN authors' released Caffe models into a model directory",
        description="Read the authors' C3D-v1.0 proposal and localization .caffemodel files "
        "and their mean file, and write a model directory that scnn detect runs as Caffe did "
        "(BGR frames minus the per-pixel mean cube, centre crop 112, Caffe's pooling).",
    )
    parser.add_argument(
        "--proposal", type=Path, required=True, help="SCNN_uniform16_binary_iter_30000"
    )
    parser.add_argument(
        "--localization",
        type=Path,
        required=True,
        help="SCNN_uniform16_cls20_with_overlap_loss_iter_30000",
    )
    parser.add_argument(
        "--mean", type=Path, required=True, help="train01_16_128_171_mean.binaryproto"
    )
    parser.add_argument(
        "--classes",
        default="thumos14",
        help="class table whose 'index' 1..K is fc8's order (default: thumos14, bundled)",
    )
    parser.add_argument(
        "--prior-from",
        default="thumos14-val",
        metavar="GT",
        help="ground truth the window-length prior is computed from "
        "(default: thumos14-val, the bundled THUMOS14 val annotations, as the authors)",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="model directory to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the model directory."""
    from scnn.caffe import import_caffe

    import_caffe(
        args.proposal,
        args.localization,
        args.mean,
        args.out,
        classes=args.classes,
        prior_from=args.prior_from,
    )
    print(f"model directory: {args.out}")
    return EXIT_OK
