"""The torch.compile modes scnn accepts, checked up front: a typo in a config or on the command
line is then one clear error, not a traceback from inside torch at the first batch. And how
detection compiles its networks."""

from __future__ import annotations

import torch

from scnn.errors import ScnnError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_mode(mode: str) -> None:
    """Raise ScnnError unless ``mode`` is "" (no compiling) or one of COMPILE_MODES."""
    if mode and mode not in COMPILE_MODES:
        raise ScnnError(f"compile mode '{mode}' is not one of {', '.join(COMPILE_MODES)}")


def compiled(network: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``network`` compiled in ``mode`` for the one input shape it is given (its caller keeps
    one, so it compiles once), or itself for mode ""."""
    return torch.compile(network, mode=mode, dynamic=False) if mode else network
