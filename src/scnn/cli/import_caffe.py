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
        description="Read the authors' proposal and localization .caffemodel files and write a "
        "model directory that scnn detect runs as Caffe did. The release is told by the files: "
        "C3D-v1.0 (C3D: BGR frames minus the per-pixel mean cube of --mean, centre crop 112, "
        "Caffe's pooling) or C3D-v1.1 (Res3D-18: BGR frames minus 128, centre crop 112; no "
        "--mean). docs/caffe.md lists the files.",
    )
    parser.add_argument(
        "--proposal",
        type=Path,
        required=True,
        help="SCNN_uniform16_binary_iter_30000 (C3D-v1.0) or "
        "c3d_resnet18_sports1m_r2_iter_27384.caffemodel (C3D-v1.1)",
    )
    parser.add_argument(
        "--localization",
        type=Path,
        required=True,
        help="SCNN_uniform16_cls20_with_overlap_loss_iter_30000 (C3D-v1.0) or "
        "c3d_resnet18_sports1m_r2_iter_14704.caffemodel (C3D-v1.1)",
    )
    parser.add_argument(
        "--mean",
        type=Path,
        default=None,
        help="C3D-v1.0 only: train01_16_128_171_mean.binaryproto",
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
