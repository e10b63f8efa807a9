"""The README's commands: the lines of its ```sh blocks as argument lists, so that tests run
exactly what the page shows (tests/test_readme.py lists which test runs each)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks() -> list[str]:
    """The text of each ```sh block, in order, with backslash-continued lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return [block.replace("\\\n", " ") for block in blocks]


def readme_commands() -> list[list[str]]:
    """Every command of the README's blocks, in order: one per line, split at ``&&``, without
    comments."""
    commands = []
    for block in readme_blocks():
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while "&&" in words:
                cut = words.index("&&")
                commands.append(words[:cut])
                words = words[cut + 1 :]
            if words:
                commands.append(words)
    return commands


def readme_command(*prefix: str) -> list[str]:
    """The README command that starts with ``prefix`` (one, though it may be shown twice)."""
    (found,) = {tuple(c) for c in readme_commands() if tuple(c[: len(prefix)]) == prefix}
    return list(found)
