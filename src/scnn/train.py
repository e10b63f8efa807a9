"""One trainer for the three S-CNN networks (method.md §2–3).

The proposal, classification and localization networks differ only in data, output size and
loss, so a :class:`Stage` record describes each and one :func:`train` runs any of them (the
authors' three Caffe setups differ in the same few lines). Order: proposal, classification,
then localization initialised from the trained classification network.

A run writes, under its output folder::

    config.json                   the resolved config
    <stage>/checkpoint.pt         last checkpoint (model, optimiser, schedule, RNG, step)
    <stage>/weights.safetensors   the trained network
    <stage>/metrics.json          its validation metrics
    <stage>/log.jsonl             training metrics, one line per logging step
    model/                        the model directory for ``scnn detect`` (modelfile.py)
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scnn import distributed
from scnn.allocator import keep_large_allocations
from scnn.caffe import is_caffe_model, load_caffe_weights
from scnn.config import TrainConfig, config_dict, write_run_config
from scnn.dataset import (
    ClipDataset,
    FrameCache,
    Samples,
    cache_videos,
    concat_samples,
    trimmed_clip_paths,
    trimmed_samples,
    window_samples,
)
from scnn.distributed import SINGLE, DrawPositions, World
from scnn.errors import ScnnError
from scnn.fileio import atomic_write, atomic_write_bytes, atomic_write_text
from scnn.loss import overlap_loss
from scnn.model import C3D, copy_pretrained, load_sports1m_weights
from scnn.modelfile import (
    MODEL_JSON,
    build_network,
    load_model,
    load_state,
    save_model,
    state_bytes,
)
from scnn.precision import native_bf16
from scnn.records import GroundTruth
from scnn.video import video_files

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.safetensors"
METRICS = "metrics.json"
TRAIN_LOG = "log.jsonl"
MODEL_DIR = "model"


@dataclass(frozen=True)
class Stage:
    """What makes one network's training different from another's."""

    name: str
    binary: bool  # windows labelled action/background (2 outputs), else class 0..K (K+1)
    overlap: bool  # the loss adds the overlap term (λ from the config); else cross-entropy
    lr_decay: float  # the learning rate is multiplied by this ...
    lr_decay_every: float  # ... every this fraction of the stage's steps
    init_from: str | None  # stage whose trained weights start this one; None: Sports-1M/scratch

    def num_outputs(self, num_classes: int) -> int:
        return 2 if self.binary else num_classes + 1


# The authors' solvers: 30 k iterations; ×0.1 every 10 k, ×0.5 every 10 k, ×0.5 every 5 k.
PROPOSAL = Stage(
    "proposal", binary=True, overlap=False, lr_decay=0.1, lr_decay_every=1 / 3, init_from=None
)
CLASSIFICATION = Stage(
    "classification",
    binary=False,
    overlap=False,
    lr_decay=0.5,
    lr_decay_every=1 / 3,
    init_from=None,
)
LOCALIZATION = Stage(
    "localization",
    binary=False,
    overlap=True,
    lr_decay=0.5,
    lr_decay_every=1 / 6,
    init_from="classification",
)
STAGES = (PROPOSAL, CLASSIFICATION, LOCALIZATION)


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The decoded videos of a run and their ground truth; built once, shared by the stages."""

    classes: tuple[str, ...]
    train_gt: GroundTruth  # the training subset (the window-length prior is computed on it)
    train_frames: Mapping[str, int]  # frame-cache key → number of frames
    val_gt: GroundTruth
    val_frames: Mapping[str, int]
    trimmed: Mapping[str, int]  # trimmed clip key → class 1..K
    trimmed_frames: Mapping[str, int]
    cache: FrameCache


def prepare_data(
    config: TrainConfig,
    annotations: str | Path,
    videos_dir: str | Path,
    cache_dir: str | Path,
    *,
    val_annotations: str | Path | None = None,
    trimmed_dir: str | Path | None = None,
    progress: bool = True,
) -> TrainingData:
    """Load the ground truth and decode every training and validation video into the frame cache.

    Training videos are subset ``config.data.train_subset`` of ``annotations`` (ActivityNet
    JSON subsets, or THUMOS14 ``<Class>_<subset>.txt`` files); validation videos are subset
    ``config.data.val_subset`` of ``val_annotations`` (default: the same file).
    """
    from scnn.formats import load_ground_truth

    train_gt = load_ground_truth(annotations, config.data.train_subset)
    val_gt = load_ground_truth(
        val_annotations or annotations, config.data.val_subset, classes=train_gt.classes
    )
    if not train_gt.videos:
        raise ScnnError(f"no videos in subset '{config.data.train_subset}'", annotations)
    cache = FrameCache(cache_dir, config.clip.frame_size)
    train_frames = cache_videos(cache, video_files(videos_dir, train_gt.videos), progress)
    val_frames = cache_videos(cache, video_files(videos_dir, val_gt.videos), progress)
    clips = trimmed_clip_paths(trimmed_dir, train_gt.classes) if trimmed_dir else {}
    trimmed_frames = cache_videos(cache, {k: path for k, (path, _) in clips.items()}, progress)
    return TrainingData(
        classes=train_gt.classes,
        train_gt=train_gt,
        train_frames=train_frames,
        val_gt=val_gt,
        val_frames=val_frames,
        trimmed={k: label for k, (_, label) in clips.items()},
        trimmed_frames=trimmed_frames,
        cache=cache,
    )


def stage_samples(stage: Stage, config: TrainConfig, data: TrainingData, *, train: bool) -> Samples:
    """The labelled windows a stage trains on (plus trimmed clips) or validates on (at most
    ``config.data.val_samples``, evenly spaced so every video is represented)."""
    rng = np.random.default_rng((config.seed, STAGES.index(stage) if stage in STAGES else 0))
    samples = window_samples(
        data.train_gt if train else data.val_gt,
        data.train_frames if train else data.val_frames,
        binary=stage.binary,
        windows=config.windows,
        labels=config.labels,
        background_ratio=config.data.background_ratio,
        rng=rng,
    )
    if train and data.trimmed:
        trimmed = trimmed_samples(
            data.trimmed,
            data.trimmed_frames,
            binary=stage.binary,
            clip_frames=config.clip.clip_frames,
        )
        samples = concat_samples([samples, trimmed])
    if not train and len(samples) > config.data.val_samples:
        keep = np.linspace(0, len(samples) - 1, config.data.val_samples).round().astype(np.int64)
        samples = samples.take(keep)
    return samples


# --- the trainer -----------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ScnnError(f"device '{name}' requested but CUDA is not available")
    return device


def _optimizer(model: C3D, config: TrainConfig) -> torch.optim.Optimizer:
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


def _save_checkpoint(path: Path, step: int, model: C3D, optimizer, scheduler) -> None:
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


def _load_checkpoint(path: Path, model: C3D, optimizer, scheduler) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ScnnError(f"cannot read checkpoint: {exc}", path) from exc
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])


@contextlib.contextmanager
def _sigint_flag() -> Iterator[list[bool]]:
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


def _initialise(model: C3D, stage: Stage, config: TrainConfig, out_dir: Path) -> None:
    if stage.init_from is not None:
        weights = out_dir / stage.init_from / WEIGHTS
        if not weights.is_file():
            raise ScnnError(
                f"train the {stage.init_from} stage first: its weights start "
                f"the {stage.name} stage",
                weights,
            )
        load_state(model, weights)
    elif config.init_from:
        _load_pretrained(model, stage, config)


def _load_pretrained(model: C3D, stage: Stage, config: TrainConfig) -> None:
    """``init_from``, told by what it is. An scnn model directory: all but fc8 of its proposal
    network (proposal stage) or localization network (classification stage), built with the
    same network options. A C3D-v1.0 Caffe model (the Sports-1M C3D): conv1a … fc7-1. Else
    a torch.save-d state dict (the PyTorch port of the Sports-1M C3D): conv1 … fc7."""
    path = Path(config.init_from)
    if (path / MODEL_JSON).is_file():
        source = load_model(path)
        if replace(source.options, dropout=config.model.dropout) != config.model:
            raise ScnnError(
                f"the model was built with {source.options}, the config asks for {config.model}",
                path,
            )
        network = source.proposal if stage.binary else source.localization
        keys = [key for key in model.state_dict() if not key.startswith("fc8.")]
        copy_pretrained(model, network.state_dict(), keys, path)
    elif is_caffe_model(path):
        load_caffe_weights(model, path, fc8=False)
    else:
        load_sports1m_weights(model, path)


def train(
    stage: Stage,
    config: TrainConfig,
    data: TrainingData,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    world: World = SINGLE,
) -> dict[str, float]:
    """Train one stage for ``config.steps`` steps, validate it, and return its metrics.

    With ``resume``, a finished stage is skipped and an unfinished one continues from its
    last checkpoint. Ctrl-C writes a checkpoint after the current step, then raises
    KeyboardInterrupt. Validation reports window accuracy and loss on the validation subset;
    the localization stage's detection mAP needs the whole detector and is measured on the
    model directory by ``scnn detect`` + ``scnn evaluate`` (see the README).

    With several processes (``world``, inside :func:`distributed.process_group`) the model is
    wrapped in DistributedDataParallel and each rank draws its slice of every global batch
    (distributed.DrawPositions), so the weights match one process's up to float summation
    order. Batch norm becomes SyncBatchNorm on CUDA; on CPU (gloo) it keeps per-rank batch
    statistics. Dropout draws per rank. Rank 0 alone logs, checkpoints and validates.
    """
    out_dir = Path(out_dir)
    stage_dir = out_dir / stage.name
    if resume and (stage_dir / METRICS).is_file():
        log.info("%s: already trained, skipped", stage.name)
        return json.loads((stage_dir / METRICS).read_text(encoding="utf-8"))
    stage_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = stage_dir / CHECKPOINT
    if not resume and world.is_main:
        for stale in (CHECKPOINT, WEIGHTS, METRICS, TRAIN_LOG):
            (stage_dir / stale).unlink(missing_ok=True)

    device = distributed.local_device(resolve_device(config.device), world)
    if device.type == "cpu":
        keep_large_allocations()
    memory_format = torch.channels_last_3d if config.channels_last else torch.contiguous_format
    torch.manual_seed(config.seed)  # weight initialisation and dropout
    model = build_network(stage.num_outputs(len(data.classes)), config.model, config.clip)
    _initialise(model, stage, config, out_dir)
    if world.size > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device, memory_format=memory_format)
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer,
        step_size=max(1, round(config.steps * stage.lr_decay_every)),
        gamma=stage.lr_decay,
    )
    start_step = 0
    if resume and checkpoint.is_file():
        start_step = _load_checkpoint(checkpoint, model, optimizer, scheduler)
        log.info("%s: resumed at step %d", stage.name, start_step)
    net = model  # the network itself; ``model`` is what the loop calls
    if world.size > 1:
        torch.manual_seed(config.seed + (start_step + 1) * world.size + world.rank)  # dropout
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )

    if config.compile:  # every batch has the same shape (DrawPositions), so it compiles once
        model = torch.compile(model, mode=config.compile)
    samples = stage_samples(stage, config, data, train=True)
    if len(samples) == 0:
        raise ScnnError(f"{stage.name}: no training windows (no instances in the training videos?)")
    batch = config.batch_size
    positions = DrawPositions(start_step, config.steps, batch, world)
    loader = torch.utils.data.DataLoader(
        ClipDataset(samples, data.cache, config.clip, train=True, seed=config.seed),
        batch_size=positions.rank_batch,
        sampler=positions,  # this rank's draw positions, see ClipDataset
        collate_fn=ClipDataset.collate,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps torch's global RNG untouched
    )
    lam = config.overlap_lambda if stage.overlap else 0.0
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=config.amp and native_bf16(device)
    )
    board = _tensorboard(stage_dir) if world.is_main else None
    bar = tqdm(
        total=config.steps,
        initial=start_step,
        desc=stage.name,
        unit="step",
        disable=not (progress and world.is_main),
    )
    losses: list[float] = []
    tick = time.perf_counter()
    model.train()
    with _sigint_flag() as interrupted, contextlib.ExitStack() as files:
        jsonl = None
        if world.is_main:
            jsonl = files.enter_context(open(stage_dir / TRAIN_LOG, "a", encoding="utf-8"))
        for step, (clips, labels, ious) in enumerate(loader, start=start_step + 1):
            clips = clips.to(device, non_blocking=True, memory_format=memory_format)
            labels, ious = labels.to(device), ious.to(device)
            with autocast:
                logits = model(clips)
            loss = overlap_loss(logits.float(), labels, ious, lam=lam, alpha=config.overlap_alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

            losses.append(loss.item())
            bar.update()
            stop = distributed.any_rank(interrupted[0], world, device)
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - tick
                record = {
                    "step": step,
                    "loss": distributed.mean_over_ranks(float(np.mean(losses)), world, device),
                    "lr": optimizer.param_groups[0]["lr"],
                    "clips_per_s": len(losses) * batch / elapsed,
                }
                if jsonl is not None:
                    jsonl.write(json.dumps(record) + "\n")
                    jsonl.flush()
                if board is not None:
                    for key in ("loss", "lr", "clips_per_s"):
                        board.add_scalar(f"{stage.name}/{key}", record[key], step)
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}", clips_s=f"{record['clips_per_s']:.1f}"
                )
                losses, tick = [], time.perf_counter()
            if (step % config.checkpoint_every == 0 or stop) and world.is_main:
                _save_checkpoint(checkpoint, step, net, optimizer, scheduler)
            if stop:
                bar.close()
                distributed.barrier(world)  # the checkpoint is complete before any rank leaves
                raise KeyboardInterrupt
    bar.close()
    if not world.is_main:
        distributed.barrier(world)  # rank 0 validates and writes the stage's files
        return json.loads((stage_dir / METRICS).read_text(encoding="utf-8"))
    _save_checkpoint(checkpoint, config.steps, net, optimizer, scheduler)
    atomic_write_bytes(stage_dir / WEIGHTS, state_bytes(net))

    metrics = validate(
        net,
        stage_samples(stage, config, data, train=False),
        data.cache,
        config,
        lam=lam,
        device=device,
    )
    if board is not None:
        for key, value in metrics.items():
            board.add_scalar(f"{stage.name}/val_{key}", value, config.steps)
        board.close()
    atomic_write_text(stage_dir / METRICS, json.dumps(metrics, indent=1) + "\n")
    log.info("%s: validation %s", stage.name, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    distributed.barrier(world)
    return metrics


def _tensorboard(stage_dir: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(stage_dir / "tensorboard"))


@torch.no_grad()
def validate(
    model: C3D,
    samples: Samples,
    cache: FrameCache,
    config: TrainConfig,
    *,
    lam: float = 0.0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Window accuracy (argmax = label) and mean loss on ``samples``, centre crops, eval mode."""
    device = torch.device(device)
    if len(samples) == 0:
        return {"accuracy": float("nan"), "loss": float("nan"), "windows": 0}
    memory_format = torch.channels_last_3d if config.channels_last else torch.contiguous_format
    loader = torch.utils.data.DataLoader(
        ClipDataset(samples, cache, config.clip, train=False),
        batch_size=max(config.batch_size, 16),
        collate_fn=ClipDataset.collate,
        num_workers=config.workers,
    )
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for clips, labels, ious in loader:
        clips = clips.to(device, memory_format=memory_format)
        labels, ious = labels.to(device), ious.to(device)
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=config.amp and native_bf16(device)
        ):
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
    window-length prior of the training instances, the config and every stage's metrics."""
    from scnn.postprocess import window_length_prior

    out_dir = Path(out_dir)
    networks = {}
    for stage in (PROPOSAL, LOCALIZATION):
        network = build_network(stage.num_outputs(len(data.classes)), config.model, config.clip)
        weights = out_dir / stage.name / WEIGHTS
        if not weights.is_file():
            raise ScnnError(f"the {stage.name} stage is not trained yet", weights)
        load_state(network, weights)
        networks[stage.name] = network
    metrics = {
        stage.name: json.loads((out_dir / stage.name / METRICS).read_text(encoding="utf-8"))
        for stage in STAGES
        if (out_dir / stage.name / METRICS).is_file()
    }
    model_dir = out_dir / MODEL_DIR
    save_model(
        model_dir,
        proposal=networks[PROPOSAL.name],
        localization=networks[LOCALIZATION.name],
        classes=data.classes,
        prior=window_length_prior(
            data.train_gt.instances, data.classes, config.windows.lengths_frames
        ),
        options=config.model,
        windows=config.windows,
        clip=config.clip,
        config=config_dict(config),
        metrics=metrics,
        use_prior=config.use_prior,
    )
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
    order (``stage`` = "all" or one stage's name), and assemble ``out_dir/model`` once both
    networks detection needs are trained. Returns the model directory, or None before then.

    ``world``: this process among several started by torchrun (distributed.world_from_env);
    they share ``out_dir`` and join one process group for the run. On each machine local
    rank 0 decodes the videos into the frame cache while the other ranks wait."""
    out_dir = Path(out_dir)
    device = distributed.local_device(resolve_device(config.device), world)
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
        for each in STAGES:
            if stage in ("all", each.name):
                train(each, config, data, out_dir, resume=resume, progress=progress, world=world)
        if not model_ready(out_dir):
            return None
        if world.is_main:
            write_model_dir(out_dir, config, data)
        distributed.barrier(world)
    return out_dir / MODEL_DIR
