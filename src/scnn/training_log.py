"""Where a training stage reports (train.py): the progress bar, and on rank 0 ``log.jsonl``
(one record per logging step: the mean loss since the last, the learning rate, clips/s) and
TensorBoard when it is installed."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scnn import distributed
from scnn.config import TrainConfig
from scnn.distributed import World

TRAIN_LOG = "log.jsonl"


class TrainingLog:
    """Where a stage reports: the progress bar, and on rank 0 log.jsonl and TensorBoard. Every
    ``log_every`` steps (and at the last) a record of the mean loss since the last one."""

    def __init__(
        self,
        stage_dir: Path,
        stage_name: str,
        config: TrainConfig,
        world: World,
        device: torch.device,
        optimizer: torch.optim.Optimizer,
        *,
        start_step: int,
        progress: bool,
    ):
        self.stage_dir, self.stage_name, self.config = stage_dir, stage_name, config
        self.world, self.device, self.optimizer = world, device, optimizer
        self.board = _tensorboard(stage_dir) if world.is_main else None
        self.bar = tqdm(
            total=config.steps,
            initial=start_step,
            desc=stage_name,
            unit="step",
            disable=not (progress and world.is_main),
        )
        self.losses: list[float] = []
        self.tick = time.perf_counter()

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()

    def maybe_log(self, step: int, loss: float) -> None:
        config = self.config
        self.losses.append(loss)
        self.bar.update()
        if step % config.log_every != 0 and step != config.steps:
            return
        elapsed = time.perf_counter() - self.tick
        loss = float(np.mean(self.losses))
        values = {
            "loss": distributed.mean_over_ranks(loss, self.world, self.device),
            "lr": self.optimizer.param_groups[0]["lr"],
            "clips_per_s": len(self.losses) * config.batch_size / elapsed,
        }
        if self.world.is_main:
            with open(self.stage_dir / TRAIN_LOG, "a", encoding="utf-8") as jsonl:
                jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self._scalars(values, step, "")
        self.bar.set_postfix(loss=f"{values['loss']:.4f}", clips_s=f"{values['clips_per_s']:.1f}")
        self.losses, self.tick = [], time.perf_counter()

    def validation(self, metrics: Mapping[str, float]) -> None:
        self._scalars(metrics, self.config.steps, "val_")
        if self.board is not None:
            self.board.close()

    def _scalars(self, values: Mapping[str, float], step: int, prefix: str) -> None:
        if self.board is not None:
            for key, value in values.items():
                self.board.add_scalar(f"{self.stage_name}/{prefix}{key}", value, step)


def _tensorboard(stage_dir: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(stage_dir / "tensorboard"))
