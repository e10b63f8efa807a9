"""Two versions of the scnn package measured side by side by the same harness (``speed.py
--compare-src OTHER/src``): each section runs in fresh processes, in turns with this process's
scnn and with OTHER's (this, other, other, this, ...), so that the machine's slow and fast
moments fall on both; each row prints the median of each side's runs and their ratio. Each side
has a work folder of its own for this comparison, under --work: a model directory or frame
cache written by one version of scnn may not be readable by the other.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import atomic_write_text, forwarded_options, package_src

SIDES = ("this", "other")


def checked_src(src: Path) -> Path:
    """``src`` as an absolute path, or a one-line error if it holds no scnn package."""
    if not (src / "scnn" / "__init__.py").is_file():
        raise SystemExit(f"{src}: no scnn package in it (give a checkout's src folder)")
    return src.resolve()


def turns(rounds: int) -> list[str]:
    """The order of the runs: this, other, other, this, this, other, ..."""
    return [side for k in range(rounds) for side in (SIDES if k % 2 == 0 else SIDES[::-1])]


def section_rows(
    driver: Path, args: argparse.Namespace, section: str, src: Path, out: Path
) -> list[dict]:
    """The rows of one run of ``section`` in a fresh process whose scnn comes from ``src``."""
    command = [sys.executable, str(driver), *forwarded_options(args)]
    command += ["--sections", section, "--no-bounds", "--out", str(out)]
    path = os.pathsep.join(filter(None, (str(src), os.environ.get("PYTHONPATH"))))
    done = subprocess.run(
        command, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"section {section} with scnn from {src} failed:\n{done.stderr.strip()}")
    result = json.loads(out.read_text())
    if Path(result["scnn"]) != src:
        raise SystemExit(f"section {section} measured scnn from {result['scnn']}, not {src}")
    return result["rows"]


def ratio(runs: dict[str, list[float]]) -> float:
    """This side's median over the other side's."""
    return statistics.median(runs["this"]) / statistics.median(runs["other"])


def format_pair(stage: str, setting: str, unit: str, runs: dict[str, list[float]]) -> str:
    """One row: each side's median, the ratio this / other, and each side's range of runs."""
    this, other = runs["this"], runs["other"]
    text = (
        f"{stage:<12} {setting:<62} {statistics.median(this):>10.1f} "
        f"{statistics.median(other):>10.1f} {unit:<12} {ratio(runs):>5.2f}x"
    )
    if len(this) > 1:
        text += f"  (this {min(this):.1f}-{max(this):.1f}, other {min(other):.1f}-{max(other):.1f})"
    return text


def section_runs(
    driver: Path, args: argparse.Namespace, section: str, srcs: dict[str, Path], folder: Path
) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """Each figure of ``section`` (stage, setting, unit) with its values per side, from
    ``args.compare_rounds`` runs per side taken in turns, each side working in its own
    subfolder of ``folder``."""
    values: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for run, side in enumerate(turns(args.compare_rounds)):
        out = folder / f"{section}_{run}.json"
        side_args = argparse.Namespace(**{**vars(args), "work": str(folder / side)})
        for row in section_rows(driver, side_args, section, srcs[side], out):
            key = (row["stage"], row["setting"], row["unit"])
            values.setdefault(key, {side: [] for side in SIDES})[side].append(row["value"])
    return values


def compare(driver: Path, args: argparse.Namespace, sections: list[str]) -> None:
    """``sections`` measured with this process's scnn and with ``args.compare_src``'s: prints a
    row per figure (one that only one side has is named, without figures) and writes
    ``args.out``."""
    srcs = {"this": package_src(), "other": checked_src(args.compare_src)}
    print(
        f"# this: scnn from {srcs['this']}; other: scnn from {srcs['other']}; "
        f"{args.compare_rounds} run(s) each, in turns; ratio = this / other",
        flush=True,
    )
    print(f"{'stage':<12} {'setting':<62} {'this':>10} {'other':>10} {'unit':<12} ratio")
    pairs = []
    Path(args.work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="compare-", dir=args.work) as folder:
        for section in sections:
            for (stage, setting, unit), runs in section_runs(
                driver, args, section, srcs, Path(folder)
            ).items():
                if not (runs["this"] and runs["other"]):
                    only = "this" if runs["this"] else "other"
                    print(f"{stage:<12} {setting:<62} only measured by {only}", flush=True)
                    continue
                print(format_pair(stage, setting, unit, runs), flush=True)
                pairs.append(
                    {"stage": stage, "setting": setting, "unit": unit, "ratio": ratio(runs), **runs}
                )
    if args.out:
        summary = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "scnn": {side: str(src) for side, src in srcs.items()},
            "rows": pairs,
        }
        atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
