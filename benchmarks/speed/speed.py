"""Speed of every stage of scnn next to a straightforward baseline and the hardware bound.

Each figure is printed with a baseline measured in the same run (fp32, eager, contiguous
memory, frames decoded then clips cut serially, one window scale at a time) and with the
hardware bound: the stage's FLOPs divided by a matrix-multiply rate measured in the same run.
The model has random weights (speed does not depend on them); its proposal threshold is set so
that a quarter of the windows reach the localization network.

    python3 benchmarks/speed/speed.py --model cpu --threads 2            # the CPU default model
    python3 benchmarks/speed/speed.py --model faithful --device cuda --compile default
    python3 benchmarks/speed/speed.py --threads 2 --sections memory
    python3 benchmarks/speed/speed.py --model cpu --threads 2 --compare-src /tmp/before/src

Sections, one file each (speed_<section>.py, each also runnable on its own; the shared harness
is harness.py): matmul, decode, clips, networks, detect, train, memory (peak RSS of detection,
live detection and features with the bundled model, 10 minutes against 2 hours of video, each
in a fresh process). Videos and model directories are made once under --work and reused.

--compare-src OTHER/src measures each section (matmul aside) also with another checkout's scnn
package, e.g. of an older commit (git worktree add /tmp/before COMMIT), in fresh processes taken
in turns, and prints both figures and their ratio (compare.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import speed_clips
import speed_decode
import speed_detect
import speed_memory
import speed_networks
import speed_train
from compare import compare
from harness import matmul, parse_args, parser, run_sections

SECTIONS = {
    "matmul": matmul,
    "decode": speed_decode.measure,
    "clips": speed_clips.measure,
    "networks": speed_networks.measure,
    "detect": speed_detect.measure,
    "train": speed_train.measure,
    "memory": speed_memory.measure,
}
DEFAULT_SECTIONS = ("matmul", "decode", "clips", "networks", "detect", "train")


def main() -> None:
    command_line = parser(__doc__)
    command_line.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated, of {','.join(SECTIONS)}",
    )
    command_line.add_argument(
        "--compare-src",
        type=Path,
        default=None,
        help="another checkout's src folder: measure its scnn package too, side by side",
    )
    command_line.add_argument(
        "--compare-rounds", type=int, default=2, help="runs per side with --compare-src (2)"
    )
    command_line.add_argument("--no-bounds", action="store_true", help=argparse.SUPPRESS)
    args = parse_args(command_line)
    sections = args.sections.split(",")
    for section in sections:
        if section not in SECTIONS:
            raise SystemExit(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
    if args.compare_src:
        if args.compare_rounds < 1:
            command_line.error("--compare-rounds must be at least 1")
        compare(Path(__file__).resolve(), args, [s for s in sections if s != "matmul"])
        return
    if "matmul" not in sections and not args.no_bounds:
        sections.insert(0, "matmul")  # every bound needs it
    run_sections(args, [SECTIONS[section] for section in sections])


if __name__ == "__main__":
    main()
