"""The repository stands on its own: no tracked file reaches outside it, bundled names resolve."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scnn.bundled_data import (
    CLASS_TABLES,
    GROUND_TRUTHS,
    resolve_class_table,
    resolve_ground_truth,
)
from scnn.formats import load_ground_truth, read_class_table

REPO = Path(__file__).resolve().parents[1]
# A relative path into a "shared" folder beside the repository (escaped: .ci/run greps for it).
SIBLING_PATH = re.compile(rb"\.\.[/\\]shared")
# Path(__file__)[.resolve()].parents[N] or .parent.parent…: how far up a file points.
PARENTS_INDEX = re.compile(rb"__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(rb"__file__\)(?:\.resolve\(\))?((?:\.parent\b)+)")


def tracked_files() -> list[Path]:
    """The files git tracks in this checkout (relative paths); skips outside a git checkout."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False)
    if listing.returncode != 0:
        pytest.skip("not a git checkout")
    return [Path(name) for name in listing.stdout.decode().split("\0") if name]


def paths_outside(relative: Path, text: bytes) -> list[str]:
    """What in ``text`` (the file at ``relative``) refers to a place outside the repository."""
    found = [m.group().decode() for m in SIBLING_PATH.finditer(text)]
    # parents[k] of a file at depth d (d = len(parts)) is inside the repository for k < d.
    depth = len(relative.parts)
    for match in PARENTS_INDEX.finditer(text):
        if int(match.group(1)) >= depth:
            found.append(match.group().decode())
    for match in PARENT_CHAIN.finditer(text):
        if match.group(1).count(b".parent") > depth:
            found.append(match.group().decode())
    return found


def test_the_outside_path_check_catches_what_it_should():
    depth_one = Path("tests/test_x.py")
    assert paths_outside(depth_one, b'ROOT = Path(__file__).resolve().parents[1] / "data"') == []
    climbing = b'Path(__file__).resolve().parents[2] / "' + b'shared"'  # split: not a real one
    assert paths_outside(depth_one, climbing) != []
    assert paths_outside(depth_one, b"Path(__file__).parent.parent.parent / 'x'") != []
    assert paths_outside(depth_one, b"Path(__file__).parent.parent / 'x'") == []
    assert paths_outside(depth_one, b"see ../" + b"shared/docs") != []
    assert paths_outside(depth_one, b"--out /shared/runs/t14") == []


def test_no_tracked_file_refers_outside_the_repository():
    this_file = Path(__file__).resolve().relative_to(REPO)  # its examples would match
    offenders = {}
    for relative in tracked_files():
        path = REPO / relative
        if path.is_file() and relative != this_file:
            found = paths_outside(relative, path.read_bytes())
            if found:
                offenders[str(relative)] = found
    assert offenders == {}


def test_bundled_names_resolve_to_the_shipped_files():
    assert set(CLASS_TABLES) == {"thumos14"} and set(GROUND_TRUTHS) == {"thumos14-val"}
    table = read_class_table(resolve_class_table("thumos14"))
    assert len(table) == 20 and table[1] == "BaseballPitch"
    val = load_ground_truth(resolve_ground_truth("thumos14-val"))
    assert len(val.instances) == 3007 and val.classes == tuple(table.values())


def test_other_names_are_paths(tmp_path):
    assert resolve_class_table(tmp_path / "classes.csv") == tmp_path / "classes.csv"
    assert resolve_ground_truth("thumos14-test") == Path("thumos14-test")
