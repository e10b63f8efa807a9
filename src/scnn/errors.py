"""The project's own error type: one line that names the file and the problem.

Every error a user can cause with bad input (a file, an option, a model directory) is raised
as :class:`ScnnError` or a subclass, so the CLI can print it as one line instead of a
traceback from deep inside a library.
"""

from __future__ import annotations

from pathlib import Path


class ScnnError(Exception):
    """A problem with the user's input, named by file (and line, where there is one)."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class VideoError(ScnnError):
    """A video that cannot be opened or decoded."""


class AnnotationError(ScnnError):
    """A malformed annotation, detection or class-table file."""


class ModelError(ScnnError):
    """A model directory or checkpoint that is missing, inconsistent or unsafe."""
