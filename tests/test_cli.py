"""The scnn command's parser offers exactly the library's stages, precisions and protocols."""

import argparse

from scnn.cli import build_parser
from scnn.detect import PRECISIONS
from scnn.evaluate import PROTOCOLS
from scnn.stages import STAGES


def choices(command: str, option: str) -> tuple[str, ...]:
    """The choices of ``scnn COMMAND OPTION``."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = subparsers.choices[command]._actions
    return tuple(next(a for a in actions if option in a.option_strings).choices)


def test_choices_are_the_librarys_constants():
    assert choices("train", "--stage") == ("all", *(stage.name for stage in STAGES))
    assert choices("detect", "--precision") == PRECISIONS
    assert choices("evaluate", "--protocol") == tuple(PROTOCOLS)
