"""One trainer for the three S-CNN networks (method.md §2–3), and the loop every stage trains in.

The proposal, classification and localization networks differ only in data, output size and
loss, so one :func:`train` runs any of them, as its :class:`~scnn.stages.Stage` record says
(stages.py). The loop reads top to bottom in :func:`run_stage`: a stage set up as a
:class:`StageTraining` (this module's :func:`_setup`, or boundary_training.py's for the
boundary stages), steps, checkpoints and validation, reported to a
:class:`~scnn.training_log.TrainingLog`.

A stage writes, under the job's output folder (training_job.py writes the rest)::

    <stage>/checkpoint.pt         last checkpoint (model, optimiser, schedule, RNG, step)
    <stage>/weights.safetensors   the trained network
    <stage>/metrics.json          its validation metrics
    <stage>/log.jsonl             training metrics, one line per logging step
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scnn import distributed
from scnn.checkpoint import load_checkpoint, save_checkpoint, sigint_flag
from scnn.clips import InputConvention
from scnn.config import TrainConfig
from scnn.dataset import ClipDataset, FrameCache, Samples
from scnn.distributed import SINGLE, DrawPositions, World
from scnn.errors import ScnnError
from scnn.fileio import atomic_write_bytes, atomic_write_text
from scnn.loss import overlap_loss
from scnn.model import Network, build_network
from scnn.modelfile import load_state, state_bytes
from scnn.pretrained import (
    load_pretrained,
    trained_stages,
    training_convention,
)
from scnn.runtime import resolve_device, use_bf16
from scnn.stages import (
    Stage,
    TrainingData,
    stage_samples,
)
from scnn.training_log import TRAIN_LOG, TrainingLog

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.safetensors"
METRICS = "metrics.json"


def training_device(config: TrainConfig, world: World) -> torch.device:
    """The device this process trains on: ``config.device`` (runtime.resolve_device: "auto"
    is CUDA when available), with several processes the GPU of this one
    (distributed.local_device)."""
    return distributed.local_device(resolve_device(config.device), world)


def training_memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last_3d if config.channels_last else torch.contiguous_format


def training_autocast(config: TrainConfig, device: torch.device) -> torch.autocast:
    """bf16 autocast where the config asks for it and the device computes bf16 natively."""
    bf16 = use_bf16("auto" if config.amp else "fp32", device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@dataclass(eq=False)
class StageTraining:
    """A stage set up to train: what :func:`run_stage`'s loop uses. :func:`train` makes one
    for each S-CNN stage, boundary_training.py for each boundary stage."""

    config: TrainConfig  # as the stage sees it: its steps and clips per step (the logs')
    module: torch.nn.Module  # what checkpoints hold: the network, unwrapped (no DDP, no compile)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    start_step: int  # the last finished step: 0, or the checkpoint's when resuming
    # each step's input to ``loss``, from the step after ``start_step`` to the last: a batch
    # of clips, or the step's 0-based index for a stage that draws its clips itself
    batches: Iterable[Any]
    loss: Callable[[Any], torch.Tensor]
    trained: Callable[[], Network]  # the network to save, once trained
    validation: Callable[[Network], dict[str, float]]  # the trained network's metrics

    def save_checkpoint(self, stage_dir: Path, step: int) -> None:
        save_checkpoint(stage_dir / CHECKPOINT, step, self.module, self.optimizer, self.scheduler)


def resumed_step(
    stage_dir: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    resume: bool,
) -> int:
    """With ``resume`` and a checkpoint in ``stage_dir``, its state restored into the module,
    optimiser and schedule, and its step; else 0."""
    checkpoint = stage_dir / CHECKPOINT
    if not (resume and checkpoint.is_file()):
        return 0
    step = load_checkpoint(checkpoint, module, optimizer, scheduler)
    log.info("%s: resumed at step %d", stage_dir.name, step)
    return step


def _setup(
    stage: Stage,
    config: TrainConfig,
    data: TrainingData,
    out_dir: Path,
    *,
    device: torch.device,
    resume: bool,
    world: World,
) -> StageTraining:
    """The stage's network (initialised, or restored from its checkpoint with ``resume``), its
    optimiser and schedule, wrapped for several processes and torch.compile as the config says."""
    torch.manual_seed(config.seed)  # weight initialisation and dropout (train's own RNG fork)
    net = build_network(stage.num_outputs(len(data.classes)), config.model, config.clip)
    _initialise(net, stage, config, out_dir, data.classes)
    if world.size > 1 and device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net.to(device, memory_format=training_memory_format(config))
    optimizer = _optimizer(net, config)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer,
        step_size=max(1, round(config.steps * stage.lr_decay_every)),
        gamma=stage.lr_decay,
    )
    start_step = resumed_step(out_dir / stage.name, net, optimizer, scheduler, resume=resume)
    model = net
    if world.size > 1:
        torch.manual_seed(config.seed + (start_step + 1) * world.size + world.rank)  # dropout
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:  # every batch has the same shape (DrawPositions), so it compiles once
        model = torch.compile(model, mode=config.compile)
    model.train()
    lam = config.overlap_lambda if stage.overlap else 0.0  # 0 for a cross-entropy stage
    convention = training_convention(config)
    return StageTraining(
        config=config,
        module=net,
        optimizer=optimizer,
        scheduler=scheduler,
        start_step=start_step,
        batches=_loader(stage, config, data, convention, start_step, world, device),
        loss=_window_loss(model, config, lam, device),
        trained=lambda: net,
        validation=lambda network: validate(
            network,
            stage_samples(stage, config, data, train=False),
            data.cache,
            config,
            lam=lam,
            device=device,
            convention=convention,
        ),
    )


def _initialise(
    model: Network, stage: Stage, config: TrainConfig, out_dir: Path, classes: tuple[str, ...]
) -> None:
    """Start from the stage ``stage.init_from`` when this run trains it, else from
    ``config.init_from`` (pretrained.py), else from scratch."""
    if stage.init_from in {each.name for each in trained_stages(config)}:
        weights = out_dir / stage.init_from / WEIGHTS
        if not weights.is_file():
            raise ScnnError(
                f"train the {stage.init_from} stage first: its weights start "
                f"the {stage.name} stage",
                weights,
            )
        load_state(model, weights)
    elif config.init_from:
        load_pretrained(
            model,
            config.init_from,
            binary=stage.binary,
            options=config.model,
            clip=config.clip,
            classes=classes,
        )


def _optimizer(model: Network, config: TrainConfig) -> torch.optim.Optimizer:
    """The authors' SGD (or AdamW), with the new output layer fc8 at ``fc8_lr_mult`` × lr.

    Fused: one kernel updates every parameter, instead of a few tensor ops per parameter
    (CPU model, 2 threads: AdamW 1.3 → 0.3 ms and SGD 0.5 → 0.15 ms per step)."""
    head = [p for n, p in model.named_parameters() if n.startswith("fc8.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("fc8.")]
    groups = [
        {"params": body, "lr": config.lr},
        {"params": head, "lr": config.lr * config.fc8_lr_mult},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return torch.optim.SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        fused=True,
    )


def _loader(
    stage: Stage,
    config: TrainConfig,
    data: TrainingData,
    convention: InputConvention,
    start_step: int,
    world: World,
    device: torch.device,
) -> torch.utils.data.DataLoader:
    """The stage's training batches from the step after ``start_step`` to the last, this
    rank's share of each (distributed.DrawPositions)."""
    samples = stage_samples(stage, config, data, train=True)
    if len(samples) == 0:
        raise ScnnError(f"{stage.name}: no training windows (no instances in the training videos?)")
    positions = DrawPositions(start_step, config.steps, config.batch_size, world)
    return torch.utils.data.DataLoader(
        ClipDataset(
            samples,
            data.cache,
            convention,
            train=True,
            seed=config.seed,
            mirror=config.clip.mirror,
        ),
        batch_size=positions.rank_batch,
        sampler=positions,  # this rank's draw positions, see ClipDataset
        collate_fn=ClipDataset.collate,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps torch's global RNG untouched
    )


def _window_loss(
    model: torch.nn.Module, config: TrainConfig, lam: float, device: torch.device
) -> Callable[[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """The overlap loss (λ ``lam``) of ``model`` on a batch (clips, labels, IoUs)."""
    autocast = training_autocast(config, device)
    memory_format = training_memory_format(config)

    def loss(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        clips, labels, ious = batch
        clips = clips.to(device, non_blocking=True, memory_format=memory_format)
        labels, ious = labels.to(device), ious.to(device)
        with autocast:
            logits = model(clips)
        return overlap_loss(logits.float(), labels, ious, lam=lam, alpha=config.overlap_alpha)

    return loss


def train_step(training: StageTraining, batch: Any) -> float:
    """One optimiser step on ``batch`` (StageTraining.batches); returns its loss."""
    loss = training.loss(batch)
    training.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    training.optimizer.step()
    training.scheduler.step()
    return loss.item()


def _finish(
    name: str, stage_dir: Path, training: StageTraining, world: World, training_log: TrainingLog
) -> dict[str, float]:
    """After the last step: rank 0 writes the final checkpoint and the weights, validates and
    writes the metrics, while the other ranks wait; every rank returns the metrics."""
    if not world.is_main:
        distributed.barrier(world)  # rank 0 validates and writes the stage's files
        return read_metrics(stage_dir)
    training.save_checkpoint(stage_dir, training.config.steps)
    network = training.trained()
    atomic_write_bytes(stage_dir / WEIGHTS, state_bytes(network))
    metrics = training.validation(network)
    training_log.validation(metrics)
    atomic_write_text(stage_dir / METRICS, json.dumps(metrics, indent=1) + "\n")
    log.info("%s: validation %s", name, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    distributed.barrier(world)
    return metrics


def read_metrics(stage_dir: Path) -> dict[str, float]:
    return json.loads((stage_dir / METRICS).read_text(encoding="utf-8"))


def clear_stage_dir(stage_dir: Path, *, resume: bool, world: World) -> None:
    """Create the stage's folder; a fresh (not resumed) run removes an earlier run's files."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    if not resume and world.is_main:
        for stale in (CHECKPOINT, WEIGHTS, METRICS, TRAIN_LOG):
            (stage_dir / stale).unlink(missing_ok=True)


def run_stage(
    name: str,
    config: TrainConfig,
    out_dir: Path,
    setup: Callable[[torch.device], StageTraining],
    *,
    resume: bool,
    progress: bool,
    world: World,
    device: torch.device | None,
) -> dict[str, float]:
    """Train the stage ``setup`` sets up on the device, validate it, and return its metrics:
    the loop every stage trains in, writing the files of the module docstring under
    ``out_dir/name``.

    With ``resume``, a stage with weights is skipped and an unfinished one continues from its
    last checkpoint (``setup`` restores it, :func:`resumed_step`). A checkpoint every
    ``checkpoint_every`` steps; Ctrl-C writes one after the current step, then raises
    KeyboardInterrupt. ``device``: the one :func:`training_device` gave (None: resolve it
    here). ``setup`` and the loop draw from torch's RNG inside ``torch.random.fork_rng``: the
    caller's RNG state is restored after, as if training had drawn nothing. Rank 0 alone
    logs, checkpoints and validates.
    """
    stage_dir = out_dir / name
    if resume and (stage_dir / METRICS).is_file() and (stage_dir / WEIGHTS).is_file():
        log.info("%s: already trained, skipped", name)
        return read_metrics(stage_dir)
    clear_stage_dir(stage_dir, resume=resume, world=world)
    device = device or training_device(config, world)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        training = setup(device)
        logs = TrainingLog(
            stage_dir,
            name,
            training.config,
            world,
            device,
            training.optimizer,
            start_step=training.start_step,
            progress=progress,
        )
        with sigint_flag() as interrupted, logs:
            for step, batch in enumerate(training.batches, start=training.start_step + 1):
                loss = train_step(training, batch)
                stop = distributed.any_rank(interrupted[0], world, device)
                logs.maybe_log(step, loss)
                if (step % training.config.checkpoint_every == 0 or stop) and world.is_main:
                    training.save_checkpoint(stage_dir, step)
                if stop:
                    distributed.barrier(world)  # the checkpoint is complete before any leaves
                    raise KeyboardInterrupt
        return _finish(name, stage_dir, training, world, logs)


def train(
    stage: Stage,
    config: TrainConfig,
    data: TrainingData,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    world: World = SINGLE,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Train one S-CNN stage for ``config.steps`` steps, validate it, and return its metrics
    (:func:`run_stage`: ``resume``, Ctrl-C, ``device``).

    Validation reports window accuracy and loss on the validation subset; the localization
    stage's detection mAP needs the whole detector and is measured on the model directory by
    ``scnn detect`` + ``scnn evaluate`` (see the README).

    With several processes (``world``, inside :func:`distributed.process_group`) the model is
    wrapped in DistributedDataParallel and each rank draws its slice of every global batch
    (distributed.DrawPositions), so the weights match one process's up to float summation
    order. Batch norm becomes SyncBatchNorm on CUDA; on CPU (gloo) it keeps per-rank batch
    statistics. Dropout draws per rank.

    The weights' initialisation and dropout draw from torch's RNG seeded with ``config.seed``
    (dropout takes no generator).
    """
    out_dir = Path(out_dir)
    return run_stage(
        stage.name,
        config,
        out_dir,
        lambda device: _setup(
            stage, config, data, out_dir, device=device, resume=resume, world=world
        ),
        resume=resume,
        progress=progress,
        world=world,
        device=device,
    )


@torch.no_grad()
def validate(
    model: Network,
    samples: Samples,
    cache: FrameCache,
    config: TrainConfig,
    *,
    lam: float = 0.0,
    device: torch.device | str = "cpu",
    convention: InputConvention | None = None,
) -> dict[str, float]:
    """Window accuracy (argmax = label) and mean loss on ``samples``, centre crops, eval mode;
    ``convention``: the network's input (None: the one ``config.clip`` makes)."""
    device = torch.device(device)
    if len(samples) == 0:  # nothing validates (e.g. --config thumos14): no NaN in the JSON
        return {"windows": 0}
    loader = torch.utils.data.DataLoader(
        ClipDataset(samples, cache, convention or config.clip.convention(), train=False),
        batch_size=max(config.batch_size, 16),
        collate_fn=ClipDataset.collate,
        num_workers=config.workers,
    )
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for clips, labels, ious in loader:
        clips = clips.to(device, memory_format=training_memory_format(config))
        labels, ious = labels.to(device), ious.to(device)
        with training_autocast(config, device):
            logits = model(clips).float()
        loss_sum += overlap_loss(
            logits, labels, ious, lam=lam, alpha=config.overlap_alpha
        ).item() * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
    model.train(was_training)
    return {
        "accuracy": correct / len(samples),
        "loss": loss_sum / len(samples),
        "windows": len(samples),
    }
