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


# The parts of torch.load's refusal that advise how to load the file anyway, unsafely.
_LOAD_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def load_refusal(exc: Exception) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in one line: what the file
    holds (an unsupported GLOBAL, an operand), without torch's advice to load it unsafely."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    facts = [line for line in lines if not line.startswith(_LOAD_ADVICE)]
    if facts:
        return facts[0].removeprefix("WeightsUnpickler error: ")
    return "not only tensors and plain values" if lines else type(exc).__name__
