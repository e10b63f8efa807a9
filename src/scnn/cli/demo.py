"""``scnn demo``: synthetic test videos, the bundled model, mAP and timelines."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    add_report_option,
    keep_cpu_allocations,
)
from scnn.errors import ScnnError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn demo`` and its arguments."""
    parser = subparsers.add_parser(
        "demo",
        help="synthetic test videos -> detections -> mAP under all protocols -> timelines",
        description="Generate a few synthetic test videos (a seed the bundled model never saw), "
        "detect with the bundled model, evaluate under the thumos14, scnn and activitynet "
        "protocols and write a report folder. With --train, first generate the synthetic "
        "dataset and train the three networks from scratch (on 2 cores, generating took 4.5 "
        "minutes and training 4 minutes with bf16: docs/synthetic.md, docs/training.md).",
    )
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("scnn-demo"), help="report folder (scnn-demo)"
    )
    parser.add_argument("--model", type=Path, default=None, help="model directory (bundled)")
    parser.add_argument("--videos", type=int, default=3, help="test videos to generate (3)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the test videos (2026)")
    parser.add_argument(
        "--train", action="store_true", help="train a model from scratch first (CPU default)"
    )
    add_report_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo (and, with --report, the HTML report of its folder's files)."""
    import torch

    from scnn import demo

    if args.train and args.model is not None:
        raise ScnnError("--train makes its own model; drop --model")
    keep_cpu_allocations(torch.device("cpu"))  # the demo detects on the CPU
    result = demo.run_demo(
        args.out,
        model=args.model,
        videos=args.videos,
        seed=args.seed,
        train=args.train,
        quiet=args.quiet,
    )
    print(result.summary())
    if args.report is not None:
        from scnn.html_report import report_from_files

        index = report_from_files(
            args.report,
            result.out / "detections.json",
            gt=result.out / "test_data" / "annotations.json",
            videos_dir=result.out / "test_data" / "videos",
        )
        print(f"HTML report: {index}")
    return EXIT_SOME_FAILED if result.failures else EXIT_OK
