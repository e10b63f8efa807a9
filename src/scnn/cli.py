"""The ``scnn`` command. Thin: each subcommand parses, validates and calls one library function.

Exit codes: 0 success; 1 an input or processing error (one line on stderr naming the file);
2 a bad command line; 3 a batch finished but some items failed (listed at the end);
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from scnn.errors import ScnnError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130


def _set_threads(threads: int | None) -> None:
    """Fix torch's intra-op thread count: oversubscribing a 2-core machine costs 10x."""
    import torch

    if threads:
        torch.set_num_threads(threads)


# Each entry adds one subcommand's parser; the parser sets ``run`` to the function to call.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scnn",
        description="Segment-CNN temporal action localization: find and label actions in "
        "long, untrimmed videos.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
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
    except KeyboardInterrupt:
        print("scnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
