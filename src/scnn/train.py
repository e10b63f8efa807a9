"""One trainer for the three S-CNN networks (method.md §2–3).

The proposal, classification and localization networks differ only in data, output size and
loss, so one :func:`train` runs any of them, as its :class:`~scnn.stages.Stage` record says
(stages.py). The loop reads top to bottom in :func:`train`; setup, checkpointing and validation
are the functions it calls, and it reports to a :class:`~scnn.training_log.TrainingLog`.

A run writes, under its output folder::

    config.json                   the resolved config
    <stage>/checkpoint.pt         last checkpoint (model, optimiser, schedule, RNG, step)
    <stage>/weights.safetensors   the trained network
    <stage>/metrics.json          its validation metrics
    <stage>/log.jsonl             training metrics, one line per logging step
    model/                        the model directory for ``scnn detect`` (modelfile.py)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from scnn import distributed
from scnn.allocator import keep_large_allocations
from scnn.checkpoint import load_checkpoint, save_checkpoint, sigint_flag
from scnn.clips import InputConvention
from scnn.config import TrainConfig, config_dict, write_run_config
from scnn.dataset import ClipDataset, FrameCache, Samples
from scnn.distributed import SINGLE, DrawPositions, World
from scnn.errors import ScnnError
from scnn.fileio import atomic_write_bytes, atomic_write_text
from scnn.loss import overlap_loss
from scnn.model import Network, build_network
from scnn.modelfile import LoadedModel, load_state, save_model, state_bytes, training_prior
from scnn.precision import native_bf16
from scnn.pretrained import (
    check_follows_weights,
    copy_proposal,
    load_pretrained,
    started_from,
    trained_stages,
    training_convention,
)
from scnn.stages import (
    LOCALIZATION,
    PROPOSAL,
    STAGES,
    Stage,
    TrainingData,
    prepare_data,
    stage_samples,
)
from scnn.training_log import TRAIN_LOG, TrainingLog

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.safetensors"
METRICS = "metrics.json"
MODEL_DIR = "model"


def training_device(config: TrainConfig, world: World) -> torch.device:
    """The device this process trains on: ``config.device`` ("auto": CUDA when available),
    with several processes the GPU of this one (distributed.local_device)."""
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ScnnError(f"device '{config.device}' requested but CUDA is not available")
    return distributed.local_device(device, world)


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last_3d if config.channels_last else torch.contiguous_format


def _autocast(config: TrainConfig, device: torch.device) -> torch.autocast:
    """bf16 autocast where the config asks for it and the device computes bf16 natively."""
    return torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=config.amp and native_bf16(device)
    )


@dataclass(eq=False)
class _Run:
    """One stage's training, set up: what each step of the loop uses."""

    stage: Stage
    stage_dir: Path  # the stage's files (module docstring)
    config: TrainConfig
    world: World
    device: torch.device
    net: Network  # the network itself: its weights are what is saved
    model: torch.nn.Module  # what the loop calls: ``net``, maybe in DDP and torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    autocast: torch.autocast
    lam: float  # λ of the overlap loss; 0 for a cross-entropy stage
    start_step: int  # the last finished step: 0, or the checkpoint's when resuming
    convention: InputConvention  # the networks' input (pretrained.training_convention)


def _setup(
    stage: Stage,
    config: TrainConfig,
    data: TrainingData,
    out_dir: Path,
    *,
    device: torch.device,
    resume: bool,
    world: World,
) -> _Run:
    """The stage's network (initialised, or restored from its checkpoint with ``resume``), its
    optimiser and schedule, wrapped for several processes and torch.compile as the config says."""
    if device.type == "cpu":
        keep_large_allocations()
    torch.manual_seed(config.seed)  # weight initialisation and dropout
    net = build_network(stage.num_outputs(len(data.classes)), config.model, config.clip)
    _initialise(net, stage, config, out_dir, data.classes)
    if world.size > 1 and device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net.to(device, memory_format=_memory_format(config))
    optimizer = _optimizer(net, config)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer,
        step_size=max(1, round(config.steps * stage.lr_decay_every)),
        gamma=stage.lr_decay,
    )
    start_step = 0
    checkpoint = out_dir / stage.name / CHECKPOINT
    if resume and checkpoint.is_file():
        start_step = load_checkpoint(checkpoint, net, optimizer, scheduler)
        log.info("%s: resumed at step %d", stage.name, start_step)
    model = net
    if world.size > 1:
        torch.manual_seed(config.seed + (start_step + 1) * world.size + world.rank)  # dropout
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:  # every batch has the same shape (DrawPositions), so it compiles once
        model = torch.compile(model, mode=config.compile)
    model.train()
    return _Run(
        stage=stage,
        stage_dir=out_dir / stage.name,
        config=config,
        world=world,
        device=device,
        net=net,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        autocast=_autocast(config, device),
        lam=config.overlap_lambda if stage.overlap else 0.0,
        start_step=start_step,
        convention=training_convention(config),
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


def _loader(run: _Run, data: TrainingData) -> torch.utils.data.DataLoader:
    """The stage's training batches from the step after ``run.start_step`` to the last, this
    rank's share of each (distributed.DrawPositions)."""
    config = run.config
    samples = stage_samples(run.stage, config, data, train=True)
    if len(samples) == 0:
        raise ScnnError(
            f"{run.stage.name}: no training windows (no instances in the training videos?)"
        )
    positions = DrawPositions(run.start_step, config.steps, config.batch_size, run.world)
    return torch.utils.data.DataLoader(
        ClipDataset(
            samples,
            data.cache,
            run.convention,
            train=True,
            seed=config.seed,
            mirror=config.clip.mirror,
        ),
        batch_size=positions.rank_batch,
        sampler=positions,  # this rank's draw positions, see ClipDataset
        collate_fn=ClipDataset.collate,
        num_workers=config.workers,
        pin_memory=run.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps torch's global RNG untouched
    )


def train_step(run: _Run, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
    """One optimiser step on ``batch`` (clips, labels, IoUs); returns its loss."""
    clips, labels, ious = batch
    clips = clips.to(run.device, non_blocking=True, memory_format=_memory_format(run.config))
    labels, ious = labels.to(run.device), ious.to(run.device)
    with run.autocast:
        logits = run.model(clips)
    loss = overlap_loss(logits.float(), labels, ious, lam=run.lam, alpha=run.config.overlap_alpha)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    return loss.item()


def maybe_checkpoint(run: _Run, step: int, *, stop: bool) -> None:
    """Rank 0 saves a checkpoint every ``checkpoint_every`` steps, and before stopping early."""
    if (step % run.config.checkpoint_every == 0 or stop) and run.world.is_main:
        save_checkpoint(run.stage_dir / CHECKPOINT, step, run.net, run.optimizer, run.scheduler)


def _finish(run: _Run, data: TrainingData, training_log: TrainingLog) -> dict[str, float]:
    """After the last step: rank 0 writes the final checkpoint and the weights, validates and
    writes the metrics, while the other ranks wait; every rank returns the metrics."""
    if not run.world.is_main:
        distributed.barrier(run.world)  # rank 0 validates and writes the stage's files
        return _read_metrics(run.stage_dir)
    config, stage = run.config, run.stage
    save_checkpoint(run.stage_dir / CHECKPOINT, config.steps, run.net, run.optimizer, run.scheduler)
    atomic_write_bytes(run.stage_dir / WEIGHTS, state_bytes(run.net))
    val_samples = stage_samples(stage, config, data, train=False)
    metrics = validate(
        run.net,
        val_samples,
        data.cache,
        config,
        lam=run.lam,
        device=run.device,
        convention=run.convention,
    )
    training_log.validation(metrics)
    atomic_write_text(run.stage_dir / METRICS, json.dumps(metrics, indent=1) + "\n")
    log.info("%s: validation %s", stage.name, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    distributed.barrier(run.world)
    return metrics


def _read_metrics(stage_dir: Path) -> dict[str, float]:
    return json.loads((stage_dir / METRICS).read_text(encoding="utf-8"))


def _clear_stage_dir(stage_dir: Path, *, resume: bool, world: World) -> None:
    """Create the stage's folder; a fresh (not resumed) run removes an earlier run's files."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    if not resume and world.is_main:
        for stale in (CHECKPOINT, WEIGHTS, METRICS, TRAIN_LOG):
            (stage_dir / stale).unlink(missing_ok=True)


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
    """Train one stage for ``config.steps`` steps, validate it, and return its metrics.

    With ``resume``, a stage with weights is skipped and an unfinished one continues from its
    last checkpoint. Ctrl-C writes a checkpoint after the current step, then raises
    KeyboardInterrupt. Validation reports window accuracy and loss on the validation subset;
    the localization stage's detection mAP needs the whole detector and is measured on the
    model directory by ``scnn detect`` + ``scnn evaluate`` (see the README). ``device``: the
    one :func:`training_device` gave (None: resolve it here).

    With several processes (``world``, inside :func:`distributed.process_group`) the model is
    wrapped in DistributedDataParallel and each rank draws its slice of every global batch
    (distributed.DrawPositions), so the weights match one process's up to float summation
    order. Batch norm becomes SyncBatchNorm on CUDA; on CPU (gloo) it keeps per-rank batch
    statistics. Dropout draws per rank. Rank 0 alone logs, checkpoints and validates.
    """
    out_dir = Path(out_dir)
    stage_dir = out_dir / stage.name
    if resume and (stage_dir / METRICS).is_file() and (stage_dir / WEIGHTS).is_file():
        log.info("%s: already trained, skipped", stage.name)
        return _read_metrics(stage_dir)
    _clear_stage_dir(stage_dir, resume=resume, world=world)
    device = device or training_device(config, world)
    run = _setup(stage, config, data, out_dir, device=device, resume=resume, world=world)
    loader = _loader(run, data)
    logs = TrainingLog(
        stage_dir,
        stage.name,
        config,
        world,
        device,
        run.optimizer,
        start_step=run.start_step,
        progress=progress,
    )
    with sigint_flag() as interrupted, logs:
        for step, batch in enumerate(loader, start=run.start_step + 1):
            loss = train_step(run, batch)
            stop = distributed.any_rank(interrupted[0], world, device)
            logs.maybe_log(step, loss)
            maybe_checkpoint(run, step, stop=stop)
            if stop:
                distributed.barrier(world)  # the checkpoint is complete before any rank leaves
                raise KeyboardInterrupt
    return _finish(run, data, logs)


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
        clips = clips.to(device, memory_format=_memory_format(config))
        labels, ious = labels.to(device), ious.to(device)
        with _autocast(config, device):
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


def model_ready(out_dir: str | Path) -> bool:
    """Whether the proposal and localization stages of ``out_dir`` have both finished."""
    return all((Path(out_dir) / s.name / WEIGHTS).is_file() for s in (PROPOSAL, LOCALIZATION))


def write_model_dir(out_dir: str | Path, config: TrainConfig, data: TrainingData) -> Path:
    """Assemble ``out_dir/model`` from the trained proposal and localization networks, the
    window-length prior of the training instances, the config, every stage's metrics and the
    input convention the networks learnt on (pretrained.training_convention)."""
    out_dir = Path(out_dir)
    networks = {}
    for stage in (PROPOSAL, LOCALIZATION):
        network = build_network(stage.num_outputs(len(data.classes)), config.model, config.clip)
        weights = out_dir / stage.name / WEIGHTS
        if not weights.is_file():
            raise ScnnError(f"the {stage.name} stage is not trained yet", weights)
        load_state(network, weights)
        networks[stage.name] = network
    trained = [stage for stage in STAGES if (out_dir / stage.name / METRICS).is_file()]
    metrics = {stage.name: _read_metrics(out_dir / stage.name) for stage in trained}
    model = LoadedModel(
        proposal=networks[PROPOSAL.name],
        localization=networks[LOCALIZATION.name],
        classes=data.classes,
        prior=training_prior(data.train_gt, config.windows),
        windows=config.windows,
        convention=training_convention(config),
        clip=config.clip,
        options=config.model,
        proposal_threshold=config.proposal_threshold,
        use_prior=config.use_prior,
        config={**config_dict(config), "started_from": started_from(config, data.classes)},
        metrics=metrics,
        vote_iou=config.vote_iou or None,
    )
    model_dir = out_dir / MODEL_DIR
    save_model(model_dir, model)
    return model_dir


def run(
    config: TrainConfig,
    annotations: str | Path,
    videos_dir: str | Path,
    out_dir: str | Path,
    *,
    stage: str = "all",
    val_annotations: str | Path | None = None,
    trimmed_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    world: World = SINGLE,
) -> Path | None:
    """``scnn train``: save the config, decode the videos once, train the chosen stages in
    order (``stage``: one stage's name, or "all": every stage, or from an scnn model
    directory those of ``config.finetune_stages``, the model's proposal network copied when
    left out), and assemble ``out_dir/model`` once both networks detection needs are
    trained. Returns the model directory, or None before then.

    ``world``: this process among several started by torchrun (distributed.world_from_env);
    they share ``out_dir`` and join one process group for the run. On each machine local
    rank 0 decodes the videos into the frame cache while the other ranks wait."""
    out_dir = Path(out_dir)
    device = training_device(config, world)
    trained = trained_stages(config)  # checked before any video is decoded, as the input is
    check_follows_weights(config)
    training_convention(config)
    with distributed.process_group(world, distributed.backend_for(device)):
        write_run_config(out_dir, config, resume=resume, world=world)
        with distributed.local_rank_first(world):
            data = prepare_data(
                config,
                annotations,
                videos_dir,
                cache_dir or out_dir / "frame_cache",
                val_annotations=val_annotations,
                trimmed_dir=trimmed_dir,
                progress=progress and world.local_rank == 0,
            )
        if PROPOSAL not in trained and world.is_main:
            copy_proposal(config, out_dir / PROPOSAL.name / WEIGHTS)
        for each in STAGES:
            if stage == each.name or (stage == "all" and each in trained):
                train(
                    each,
                    config,
                    data,
                    out_dir,
                    resume=resume,
                    progress=progress,
                    world=world,
                    device=device,
                )
        if not model_ready(out_dir):
            return None
        if world.is_main:
            write_model_dir(out_dir, config, data)
        distributed.barrier(world)
    return out_dir / MODEL_DIR
