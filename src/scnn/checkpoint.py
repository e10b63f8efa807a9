"""A stage's checkpoint, and Ctrl-C turned into a flag so that the last one holds a finished step.

A checkpoint holds the network, the optimiser, the learning-rate schedule, the random state
and the step: everything a resumed run needs to continue where the last one stopped (with
deterministic kernels, to the same weights as one run).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import torch

from scnn.errors import ScnnError, load_refusal
from scnn.fileio import atomic_write


def save_checkpoint(
    path: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Tensors and plain values only, so loading needs no pickle (weights_only=True)."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> int:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its step. A file that
    is not a plain checkpoint (corrupt, or a pickle that would run code) is a ScnnError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ScnnError(f"cannot read checkpoint: {load_refusal(exc)}", path) from exc
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])


@contextlib.contextmanager
def sigint_flag() -> Iterator[list[bool]]:
    """Turn Ctrl-C into a flag the loop checks after each step, so the checkpoint it then
    writes holds a finished step. (Only possible in the main thread.)"""
    flag = [False]

    def handler(signum, frame):
        flag[0] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
