"""The Python blocks of README.md and docs/*.md pass `ruff check` and `ruff format --check`
with the project's settings, as the code does."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks() -> list[tuple[str, str]]:
    """(page:line, code) of every ```python block."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return found


def test_there_are_blocks_to_check():
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize("where, code", python_blocks(), ids=[w for w, _ in python_blocks()])
@pytest.mark.parametrize("check", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_block_is_ruff_clean(where, code, check):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    done = subprocess.run(
        [ruff, *check, "--stdin-filename", "block.py", "-"],
        input=code,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"{where}:\n{done.stdout}{done.stderr}"
