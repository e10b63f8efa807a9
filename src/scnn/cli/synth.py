"""``scnn synth``: the synthetic untrimmed-video dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.cli.common import EXIT_OK
from scnn.video import FRAME_SIZE


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn synth`` and its arguments."""
    parser = subparsers.add_parser(
        "synth",
        help="generate the synthetic untrimmed-video dataset",
        description="Write OUT/videos/*.mp4 (H.264, 25 fps) and their ground truth "
        "(OUT/annotations.json, OUT/annotations/{train,val,test}.csv and THUMOS14 files in "
        "OUT/annotations/thumos14/). The same seed gives the same annotations.",
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--num-classes", type=int, default=6, help="action classes, 1..8 (default: 6)"
    )
    parser.add_argument("--train", type=int, default=24, help="training videos (default: 24)")
    parser.add_argument("--val", type=int, default=6, help="validation videos (default: 6)")
    parser.add_argument("--test", type=int, default=8, help="test videos (default: 8)")
    parser.add_argument(
        "--duration-s",
        type=float,
        nargs=2,
        default=(60.0, 120.0),
        metavar=("MIN", "MAX"),
        help="video duration range in seconds (default: 60 120)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=FRAME_SIZE,
        metavar=("W", "H"),
        help="frame size in pixels (default: {} {}, the frames scnn reads)".format(*FRAME_SIZE),
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Generate the dataset the arguments describe."""
    from scnn import synth

    config = synth.SynthConfig(
        num_classes=args.num_classes,
        train_videos=args.train,
        val_videos=args.val,
        test_videos=args.test,
        duration_range_s=tuple(args.duration_s),
        width=args.size[0],
        height=args.size[1],
        seed=args.seed,
    )
    gt = synth.generate(args.out, config, quiet=args.quiet)
    print(f"{args.out}: {len(gt.videos)} videos, {len(gt.instances)} action instances")
    return EXIT_OK
