"""What several subcommands share: exit codes, the class-table options, the torchrun world."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from scnn.bundled_data import resolve_class_table

if TYPE_CHECKING:  # torch is imported only by the commands that use it
    import torch

    from scnn.distributed import World

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130

# The bundled model's description (scnn.detect.BUNDLED_MODEL, read without importing torch).
BUNDLED_MODEL_JSON = Path(__file__).parents[1] / "models" / "default" / "model.json"


def positive_int(text: str) -> int:
    """An option's whole number >= 1 (argparse type)."""
    return _whole(text, 1)


def count(text: str) -> int:
    """An option's whole number >= 0 (argparse type)."""
    return _whole(text, 0)


def _whole(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= {low}")
    return value


def fraction(text: str) -> float:
    """An option's number in [0, 1]: an IoU, a threshold, a probability (argparse type)."""
    value = finite(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def finite(text: str) -> float:
    """An option's number, not NaN nor infinite (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def add_class_options(parser: argparse.ArgumentParser) -> None:
    """``--classes`` and ``--class-ids``: how numeric class ids in files become names."""
    parser.add_argument(
        "--classes",
        type=resolve_class_table,
        default=None,
        help="class table: CSV with a header and a 'name' column, or thumos14 (the bundled "
        "THUMOS14 table: index,name,thumos14_id)",
    )
    parser.add_argument(
        "--class-ids",
        default="index",
        metavar="COLUMN",
        help="the class table's column the files' numeric class ids come from "
        "(default: index, the 1..K order; thumos14_id for official THUMOS14 submissions)",
    )


def add_report_option(parser: argparse.ArgumentParser) -> None:
    """``--report DIR``: the HTML report folder written beside the results."""
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write an HTML report folder (video pages with clickable timelines)",
    )


def add_vote_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--vote-iou``: boundary voting after NMS (postprocess.vote_boundaries); ``default``
    says what happens without it."""
    parser.add_argument(
        "--vote-iou",
        type=float,
        default=None,
        metavar="IOU",
        help="beyond S-CNN: move each detection's boundaries to the confidence-weighted mean "
        "of the same-class windows with IoU >= this with it (docs/accuracy.md); 0: off, the "
        f"windows' own boundaries (default: {default})",
    )


def class_table(args: argparse.Namespace) -> dict[int, str] | None:
    """The class table ``--classes`` names, keyed by the ``--class-ids`` column (None: none)."""
    from scnn.formats import read_class_table

    if args.classes is None:
        return None
    return read_class_table(args.classes, args.class_ids)


def torchrun_world() -> World | None:
    """This process's place when started by torchrun (None otherwise); only rank 0 logs."""
    from scnn.distributed import world_from_env

    world = world_from_env()
    if world is not None and not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    return world


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """``--precision``: the networks' number format (scnn.runtime.PRECISIONS)."""
    from scnn.runtime import PRECISIONS

    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="network precision (default auto: bf16 on CUDA and on CPUs with AVX512-BF16/AMX; "
        "fp32 is full fp32 on a GPU too, without TF32)",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``: where the networks run, by scnn.runtime's one rule."""
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (default: CUDA when available, else the CPU), cpu, cuda or cuda:N",
    )


def network_device(device: str, world: World | None) -> torch.device:
    """The device this process runs prediction's networks on (runtime.resolve_device): under
    torchrun, a CUDA device becomes the GPU of the process's local rank. cuDNN picks its
    fastest kernels for the fixed clip shapes. On a CPU it also sets the allocator
    (:func:`keep_cpu_allocations`): called before a model loads, every thread then shares
    the main malloc arena."""
    import torch

    from scnn.distributed import local_device
    from scnn.runtime import resolve_device

    torch.backends.cudnn.benchmark = True
    resolved = resolve_device(device)
    if world is not None:
        resolved = local_device(resolved, world)
    keep_cpu_allocations(resolved)
    return resolved


def keep_cpu_allocations(device: torch.device) -> None:
    """On a CPU, glibc's malloc set to keep the networks' large tensors in reused memory
    (scnn.allocator): process-wide, so the command sets it, never the library."""
    from scnn.allocator import keep_large_allocations

    if device.type == "cpu":
        keep_large_allocations()


def print_failures(failures: Mapping[str, str]) -> None:
    """One ``failed:`` line on stderr per item of a batch that failed."""
    for reason in failures.values():
        print(f"failed: {reason}", file=sys.stderr)


def note_bundled_model() -> None:
    """Say, on stderr, that the bundled model knows only synthetic motions, so that nobody
    takes its detections on real footage for S-CNN's. Logged at INFO: ``--quiet`` silences it,
    and under torchrun only rank 0 says it."""
    classes = json.loads(BUNDLED_MODEL_JSON.read_text())["classes"]
    logging.getLogger(__name__).info(
        "scnn: the bundled model knows only %d synthetic motions (%s); for real videos import "
        "the S-CNN authors' THUMOS14 model with `scnn import-caffe` and pass --model "
        "(README, path (a))",
        len(classes),
        ", ".join(classes),
    )
