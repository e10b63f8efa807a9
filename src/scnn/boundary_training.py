"""Two stages of ``scnn train`` beyond S-CNN, trained after localization when the config
says ``boundaries = true``: the boundary network (only when ``boundary_steps`` ≥ 1) and the
boundary-clip network (docs/accuracy.md, "Learned boundaries"). Each is C3D with two
outputs, fine-tuned from the run's localization network, whose fc8 gives way to the two
outputs (zeros at first).

The boundary network gives the offsets of an action's start and end from its window's,
divided by the window's length (what detection moves a window by, postprocess.py). Each step
takes WINDOW_BATCH windows of the localization stage, under the overlap loss through the
localization network's own fc8 so that the body keeps what it knows, and SEGMENT_BATCH
segments drawn around the training instances (:func:`jittered_segments`); smooth-L1 on the
offsets of the positive windows and of the segments.

The boundary-clip network looks at one boundary at a time (boundary_clips.py): a clip around
an instance's start or end spanning about ``scale`` of the instance (:func:`boundary_samples`);
its outputs are the start's and the end's offset from the clip's centre divided by the
clip's length, and the loss (smooth-L1) is on the output of the clip's boundary.

Both use AdamW (the body at BODY_LR, the new head at HEAD_LR, cosine to 0), bf16 where the
config asks for it, no mirroring (a mirrored clip swaps start and end). A stage writes what
train.py's stages write (checkpoint, weights, metrics, log) under its folder; its metrics
are the mean absolute offset error on the validation videos.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scnn.boundary_clips import SCALE
from scnn.config import TrainConfig
from scnn.dataset import ClipDataset, Samples
from scnn.distributed import SINGLE
from scnn.errors import ScnnError
from scnn.loss import overlap_loss
from scnn.model import Network, build_network
from scnn.modelfile import load_state
from scnn.pretrained import training_convention
from scnn.records import GroundTruth
from scnn.stages import LOCALIZATION, TrainingData, stage_samples
from scnn.train import (
    WEIGHTS,
    StageTraining,
    resumed_step,
    run_stage,
    training_autocast,
    training_memory_format,
)
from scnn.video import FPS
from scnn.windows import Windows, temporal_iou

BOUNDARIES = "boundaries"  # the stages' folders
BOUNDARY_CLIPS = "boundary_clips"
BOUNDARY_STAGES = (BOUNDARIES, BOUNDARY_CLIPS)

BODY_LR = 1e-4  # the fine-tuned body, cosine to 0
HEAD_LR = 1e-3  # the new two-output head
SMOOTH_L1_BETA = 0.1  # offsets are fractions of the window or clip: 0.1 is a tenth of it
WINDOW_BATCH = 16  # windows of the localization stage per boundary step
SEGMENT_BATCH = 16  # segments around instances per boundary step
SEGMENTS = 6000  # segments drawn once per run
SEGMENT_SPREAD = 0.5  # a segment's length: the instance's × e^U(−0.5, 0.5)
SEGMENT_SHIFT = 0.3  # its centre: the instance's moved by U(−0.3, 0.3) of the instance
MIN_SEGMENT_IOU = 0.4  # a segment overlaps its instance at least this much
CLIP_BATCH = 32  # boundary clips per step
CLIPS = 12000  # boundary clips drawn once per run
CLIP_SPREAD = 0.4  # a clip's length: SCALE of the instance × e^U(−0.4, 0.4)
CLIP_SHIFT = 0.35  # the boundary up to this share of the clip off its centre


def boundary_stages(config: TrainConfig) -> tuple[str, ...]:
    """The boundary stages ``config`` trains, in order: none without ``boundaries``, the
    boundary network only with ``boundary_steps``."""
    if not config.boundaries:
        return ()
    return BOUNDARY_STAGES if config.boundary_steps else (BOUNDARY_CLIPS,)


# --- the samples: what each network learns from, with its targets ---------------------------


def placed_segments_s(start_frame: np.ndarray, length_frames: np.ndarray) -> np.ndarray:
    """Samples placed at ``start_frame`` for ``length_frames`` as ``(N, 2)`` seconds, as grid
    windows (Windows.segments_s)."""
    return Windows(length_frames, start_frame, start_frame + length_frames - 1).segments_s(FPS)


def instance_segments(gt: GroundTruth, video: str) -> np.ndarray:
    """``(M, 2)`` seconds: the instances of ``video``."""
    found = [(i.start_s, i.end_s) for i in gt.instances if i.video == video]
    return np.array(found, np.float64).reshape(-1, 2)


def segment_offsets(segments_s: np.ndarray, instances_s: np.ndarray) -> np.ndarray:
    """Each segment's offsets to its best-tIoU instance, (start, end) / the segment's length
    (as a window's: ``length_frames / fps``, one frame more than end − start)."""
    if len(instances_s) == 0:
        return np.zeros((len(segments_s), 2))
    best = temporal_iou(segments_s, instances_s).argmax(axis=1)
    lengths_s = segments_s[:, 1] - segments_s[:, 0] + 1 / FPS
    return (instances_s[best] - segments_s) / lengths_s[:, None]


def sample_offsets(samples: Samples, gt: GroundTruth) -> np.ndarray:
    """``(N, 2)``: every sample's offsets to its best-tIoU instance (0 in a video without)."""
    offsets = np.zeros((len(samples), 2), np.float32)
    for v, video in enumerate(samples.videos):
        rows = np.flatnonzero(samples.video == v)
        segments = placed_segments_s(samples.start_frame[rows], samples.length_frames[rows])
        offsets[rows] = segment_offsets(segments, instance_segments(gt, video))
    return offsets


def _samples(videos: tuple[str, ...], video: list, start: list, length: list) -> Samples:
    """Positive samples (label 1, IoU 1) of the given places."""
    ones = np.ones(len(start))
    return Samples(
        videos, np.array(video), np.array(start), np.array(length), ones.astype(np.int64),
        ones.astype(np.float32),
    )  # fmt: skip


def jittered_segments(
    gt: GroundTruth,
    num_frames: Mapping[str, int],
    count: int,
    rng: np.random.Generator,
) -> tuple[Samples, np.ndarray]:
    """``count`` segments around random instances of the videos in ``num_frames`` (any length
    and place within SEGMENT_SPREAD and SEGMENT_SHIFT, inside the video, tIoU ≥
    MIN_SEGMENT_IOU with the instance), and each one's offsets to that instance."""
    videos = tuple(num_frames)
    instances = [i for i in gt.instances if i.video in num_frames]
    if not instances:
        raise ScnnError(f"{BOUNDARIES}: no instances in the training videos")
    video, start, length, offsets = [], [], [], []
    while len(start) < count:
        instance = instances[rng.integers(len(instances))]
        first, last = instance.start_s * FPS, instance.end_s * FPS
        span = last - first
        frames = int(round(max(16.0, span * np.exp(rng.uniform(-SEGMENT_SPREAD, SEGMENT_SPREAD)))))
        shift = rng.uniform(-SEGMENT_SHIFT, SEGMENT_SHIFT) * span
        begin = int(round((first + last) / 2 - frames / 2 + shift))
        if begin < 1 or begin + frames - 1 > num_frames[instance.video]:
            continue
        segment = placed_segments_s(np.array([begin]), np.array([frames]))
        instance_s = np.array([[instance.start_s, instance.end_s]])
        if temporal_iou(segment, instance_s)[0, 0] < MIN_SEGMENT_IOU:
            continue
        video.append(videos.index(instance.video))
        start.append(begin)
        length.append(frames)
        offsets.append(segment_offsets(segment, instance_s)[0])
    return _samples(videos, video, start, length), np.array(offsets, np.float32)


def boundary_samples(
    gt: GroundTruth,
    num_frames: Mapping[str, int],
    count: int,
    scale: float,
    rng: np.random.Generator,
) -> tuple[Samples, np.ndarray, np.ndarray]:
    """``count`` clips each around the start or the end of a random instance of the videos in
    ``num_frames``: ``scale`` of the instance × e^U(±CLIP_SPREAD) long (at least 16 frames),
    the boundary up to CLIP_SHIFT of the clip off its centre, inside the video. Returns the
    clips, which boundary each holds (0 start, 1 end) and its offset from the clip's centre
    as a fraction of the clip's length (boundary_clips.py's output)."""
    videos = tuple(num_frames)
    instances = [i for i in gt.instances if i.video in num_frames]
    if not instances:
        raise ScnnError(f"{BOUNDARY_CLIPS}: no instances in the training videos")
    video, start, length, which, offset = [], [], [], [], []
    while len(start) < count:
        instance = instances[rng.integers(len(instances))]
        first, last = instance.start_s * FPS, instance.end_s * FPS
        end = int(rng.integers(2))
        boundary = (first, last)[end]
        spread = np.exp(rng.uniform(-CLIP_SPREAD, CLIP_SPREAD))
        frames = int(round(max(16.0, scale * (last - first) * spread)))
        centre = boundary + rng.uniform(-CLIP_SHIFT, CLIP_SHIFT) * frames
        begin = int(round(centre - frames / 2))
        if begin < 1 or begin + frames - 1 > num_frames[instance.video]:
            continue
        video.append(videos.index(instance.video))
        start.append(begin)
        length.append(frames)
        which.append(end)
        offset.append((boundary - (begin + (frames - 1) / 2)) / frames)
    return (
        _samples(videos, video, start, length),
        np.array(which, np.int64),
        np.array(offset, np.float32),
    )


# --- what both stages share: their module, setup and outputs --------------------------------


class _WithHead(torch.nn.Module):
    """The localization network and the new two-output head on its fc7: what a stage trains
    and checkpoints; saved as one two-output C3D (the head as its fc8)."""

    def __init__(self, body: Network):
        super().__init__()
        self.body = body
        self.head = torch.nn.Linear(body.fc7.out_features, 2)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def network(self, config: TrainConfig) -> Network:
        """A copy of the body (of ``config``'s architecture) with the head as its fc8."""
        network = build_network(2, config.model, config.clip)
        state = {k: v for k, v in self.body.state_dict().items() if not k.startswith("fc8.")}
        state.update({f"fc8.{k}": v for k, v in self.head.state_dict().items()})
        network.load_state_dict(state)
        return network


# A step: (the stage's module, the step's 0-based index) → its loss.
Step = Callable[[_WithHead, int], torch.Tensor]


def _run_stage(
    name: str,
    steps: int,
    clips_per_step: int,
    config: TrainConfig,
    data: TrainingData,
    out_dir: Path,
    step_loss: Callable[[torch.device, torch.autocast], Step],
    validation: Callable[[Network, torch.device], dict[str, float]],
    *,
    resume: bool,
    progress: bool,
    device: torch.device | None,
) -> dict[str, float]:
    """Train a stage for ``steps`` steps from the run's localization network in train.py's
    loop (``resume``, Ctrl-C), then save its two-output network and validate it."""
    localization = out_dir / LOCALIZATION.name / WEIGHTS
    if not localization.is_file():  # before run_stage clears an earlier run's files
        raise ScnnError(
            f"train the localization stage first: its weights start {name}", localization
        )

    def setup(device: torch.device) -> StageTraining:
        torch.manual_seed(config.seed)  # dropout's draws (the head starts at zeros)
        body = build_network(len(data.classes) + 1, config.model, config.clip)
        load_state(body, localization)
        module = _WithHead(body).to(device, memory_format=training_memory_format(config))
        optimizer = torch.optim.AdamW(
            [
                {"params": module.body.parameters(), "lr": BODY_LR},
                {"params": module.head.parameters(), "lr": HEAD_LR},
            ],
            weight_decay=config.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps))
        )
        start_step = resumed_step(out_dir / name, module, optimizer, schedule, resume=resume)
        module.train()
        loss_of = step_loss(device, training_autocast(config, device))
        return StageTraining(
            # the logs' view of this stage: its steps, the clips in each
            config=dataclasses.replace(config, steps=steps, batch_size=clips_per_step),
            module=module,
            optimizer=optimizer,
            scheduler=schedule,
            start_step=start_step,
            batches=range(start_step, steps),  # the steps' indices: each step draws its clips
            loss=functools.partial(loss_of, module),
            trained=lambda: module.network(config).to(device).eval(),
            validation=functools.partial(validation, device=device),
        )

    return run_stage(
        name, config, out_dir, setup, resume=resume, progress=progress, world=SINGLE, device=device
    )


def _clips(dataset: ClipDataset, positions: range) -> tuple[np.ndarray, tuple[torch.Tensor, ...]]:
    """The samples drawn at ``positions`` (rows of the dataset's samples) and their batch."""
    rows = np.array([dataset.sample_of(p) for p in positions])
    return rows, dataset.__getitems__(list(positions))


@torch.no_grad()
def _outputs(
    network: Network, dataset: ClipDataset, config: TrainConfig, device: torch.device
) -> np.ndarray:
    """``(N, 2)``: ``network``'s outputs on every sample of ``dataset`` (centre crops)."""
    outputs = []
    batch = max(config.batch_size, 16)
    for first in range(0, len(dataset), batch):
        clips = dataset.__getitems__(list(range(first, min(first + batch, len(dataset)))))[0]
        clips = clips.to(device, memory_format=training_memory_format(config))
        with training_autocast(config, device):
            outputs.append(network(clips).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 2), np.float32)


# --- the two stages ---------------------------------------------------------------------------


def train_boundaries(
    config: TrainConfig,
    data: TrainingData,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    device: torch.device | None = None,
) -> dict[str, float]:
    """The boundary network (module docstring), ``config.boundary_steps`` steps; metrics: the
    mean absolute error of its offsets (fraction of the window) on the validation videos'
    positive windows, and their number."""
    convention = training_convention(config)
    windows = stage_samples(LOCALIZATION, config, data, train=True)
    window_targets = torch.from_numpy(sample_offsets(windows, data.train_gt))
    segments, segment_targets = jittered_segments(
        data.train_gt, data.train_frames, SEGMENTS, np.random.default_rng((config.seed, 7))
    )
    window_clips = ClipDataset(
        windows, data.cache, convention, train=True, seed=config.seed, mirror=False
    )
    segment_clips = ClipDataset(
        segments, data.cache, convention, train=True, seed=config.seed + 100, mirror=False
    )
    memory_format = training_memory_format(config)

    def step_loss(device: torch.device, autocast: torch.autocast) -> Step:
        def loss_of(module: _WithHead, step: int) -> torch.Tensor:
            rows, (clips, labels, ious) = _clips(
                window_clips, range(step * WINDOW_BATCH, (step + 1) * WINDOW_BATCH)
            )
            segment_rows, (jittered, *_) = _clips(
                segment_clips, range(step * SEGMENT_BATCH, (step + 1) * SEGMENT_BATCH)
            )
            labels, ious = labels.to(device), ious.to(device)
            with autocast:  # each batch apart: batch norm normalises each by itself
                features = module.body.activations(
                    clips.to(device, memory_format=memory_format), "fc7"
                )
                logits = module.body.fc8(features)
                segment_features = module.body.activations(
                    jittered.to(device, memory_format=memory_format), "fc7"
                )
                offsets = module.head(torch.cat([features, segment_features])).float()
            positive = torch.cat([labels > 0, torch.ones(SEGMENT_BATCH, dtype=torch.bool)])
            wanted = torch.cat(
                [window_targets[rows], torch.from_numpy(segment_targets[segment_rows])]
            )
            positive, wanted = positive.to(device), wanted.to(device)
            regression = F.smooth_l1_loss(
                offsets[positive], wanted[positive], beta=SMOOTH_L1_BETA, reduction="sum"
            ) / int(positive.sum())
            return (
                overlap_loss(logits.float(), labels, ious, alpha=config.overlap_alpha) + regression
            )

        return loss_of

    def validation(network: Network, device: torch.device) -> dict[str, float]:
        samples = stage_samples(LOCALIZATION, config, data, train=False)
        samples = samples.take(np.flatnonzero(samples.label > 0))
        if len(samples) == 0:
            return {"windows": 0}
        dataset = ClipDataset(samples, data.cache, convention, train=False)
        errors = np.abs(
            _outputs(network, dataset, config, device) - sample_offsets(samples, data.val_gt)
        )
        return {"offset_error": float(errors.mean()), "windows": len(samples)}

    return _run_stage(
        BOUNDARIES, config.boundary_steps, WINDOW_BATCH + SEGMENT_BATCH, config, data,
        Path(out_dir), step_loss, validation, resume=resume, progress=progress, device=device,
    )  # fmt: skip


def train_boundary_clips(
    config: TrainConfig,
    data: TrainingData,
    out_dir: str | Path,
    *,
    scale: float = SCALE,
    resume: bool = False,
    progress: bool = True,
    device: torch.device | None = None,
) -> dict[str, float]:
    """The boundary-clip network (module docstring), ``config.boundary_clip_steps`` steps,
    clips spanning about ``scale`` of their instance; metrics: the mean absolute error of the
    clip's boundary's offset (fraction of the clip) on up to ``config.data.val_samples`` clips
    drawn so around the validation instances, and their number."""
    convention = training_convention(config)
    samples, which, wanted = boundary_samples(
        data.train_gt, data.train_frames, CLIPS, scale, np.random.default_rng((config.seed, 11))
    )
    dataset = ClipDataset(
        samples, data.cache, convention, train=True, seed=config.seed, mirror=False
    )
    memory_format = training_memory_format(config)

    def step_loss(device: torch.device, autocast: torch.autocast) -> Step:
        def loss_of(module: _WithHead, step: int) -> torch.Tensor:
            rows, (clips, *_) = _clips(dataset, range(step * CLIP_BATCH, (step + 1) * CLIP_BATCH))
            with autocast:
                features = module.body.activations(
                    clips.to(device, memory_format=memory_format), "fc7"
                )
                offsets = module.head(features).float()
            chosen = offsets[torch.arange(len(rows)), torch.from_numpy(which[rows]).to(device)]
            return F.smooth_l1_loss(
                chosen, torch.from_numpy(wanted[rows]).to(device), beta=SMOOTH_L1_BETA
            )

        return loss_of

    def validation(network: Network, device: torch.device) -> dict[str, float]:
        instances = [i for i in data.val_gt.instances if i.video in data.val_frames]
        if not instances:
            return {"clips": 0}
        val, val_which, val_wanted = boundary_samples(
            data.val_gt, data.val_frames, config.data.val_samples, scale,
            np.random.default_rng((config.seed, 13)),
        )  # fmt: skip
        outputs = _outputs(
            network, ClipDataset(val, data.cache, convention, train=False), config, device
        )
        errors = np.abs(outputs[np.arange(len(val)), val_which] - val_wanted)
        return {"offset_error": float(errors.mean()), "clips": len(val)}

    return _run_stage(
        BOUNDARY_CLIPS, config.boundary_clip_steps, CLIP_BATCH, config, data, Path(out_dir),
        step_loss, validation, resume=resume, progress=progress, device=device,
    )  # fmt: skip
