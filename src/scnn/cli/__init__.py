"""The ``scnn`` command. Thin: each subcommand (a module here) parses, validates and calls one
library function.

Exit codes: 0 success; 1 an input or processing error (one line on stderr naming the file);
2 a bad command line; 3 a batch finished but some items failed (listed at the end);
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys

from scnn import __version__
from scnn.cli import (
    demo,
    detect,
    diagnose,
    evaluate,
    features,
    import_caffe,
    postprocess,
    report,
    synth,
    train,
)
from scnn.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, positive_int
from scnn.errors import ScnnError

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "build_parser", "main"]

# The subcommands in the order ``scnn --help`` lists them; each module has add_parser and run.
SUBCOMMANDS = (
    synth,
    train,
    postprocess,
    evaluate,
    diagnose,
    detect,
    features,
    demo,
    report,
    import_caffe,
)


def _set_threads(threads: int | None) -> None:
    """Fix torch's intra-op thread count: oversubscribing a 2-core machine costs 10x. Under
    torchrun the processes of one machine share its cores (2 cores, 2 processes: 1 each)."""
    import torch

    from scnn.distributed import threads_per_process, world_from_env

    world = world_from_env()
    if not threads and world is not None:
        threads = threads_per_process(world)
    if threads:
        torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; ``--quiet`` and ``--threads`` also after one."""
    parser = argparse.ArgumentParser(
        prog="scnn",
        description="Segment-CNN temporal action localization: find and label actions in "
        "long, untrimmed videos.",
    )
    parser.add_argument("--version", action="version", version=f"scnn {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: torch's choice)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(subparsers)
    for subparser in subparsers.choices.values():  # also accepted after the subcommand
        subparser.add_argument(
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="no progress bars, warnings only",
        )
        subparser.add_argument(
            "--threads",
            type=positive_int,
            default=argparse.SUPPRESS,
            help="torch CPU threads (default: torch's choice)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``scnn ARGV``; every error a user can cause is one line on stderr and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    _set_threads(args.threads)
    try:
        return args.run(args) or EXIT_OK
    except ScnnError as exc:
        print(f"scnn: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # e.g. an output path that is a folder, a full disk
        target = exc.filename2 or exc.filename
        where = f"{target}: " if target else ""
        print(f"scnn: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("scnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
