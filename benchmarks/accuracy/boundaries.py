"""Learned boundaries beside S-CNN's window grid: a boundary network and a boundary-clip
network, measured.

    nice -n 10 python3 benchmarks/accuracy/boundaries.py --threads 1 --part train --seed 0
    nice -n 10 python3 benchmarks/accuracy/boundaries.py --threads 1 --part score --sets fresh
    python3 benchmarks/accuracy/boundaries.py --threads 1 --part speed
    python3 benchmarks/accuracy/boundaries.py --part model --seed 0 --out models/with-boundaries

Both are C3D with two outputs, fine-tuned from the bundled model's localization network,
whose fc8 gives way to the two outputs (zeros at first); the class scores stay the bundled
network's.

The boundary network gives the offsets of an action's start and end from its window's,
divided by the window's length (TURN-TAP's and R-C3D's parametrisation). STEPS steps, each of
BATCH windows of the localization stage (positives and background: the overlap loss, as that
stage trains, so the body keeps what it knows) and JITTER segments drawn around the training
instances (any length and place with tIoU ≥ 0.4; the regression only), smooth-L1 on the
offsets of the positives and the segments. At detection every window labelled with an action
is moved by its offsets before NMS and boundary voting; "refined once" then moves each kept
detection by the offsets of its own segment.

The boundary-clip network looks at one boundary at a time: a clip centred on a detection's
start (or end) spanning CLIP_SCALE of the detection, so that its 16 frames are twice as dense
as the window's; its outputs are the start's and the end's offset from the clip's centre,
divided by the clip's length. CLIP_STEPS steps of CLIP_BATCH clips around the training
instances' boundaries (scale and place jittered), smooth-L1 on the output of the clip's
boundary. At detection it moves each kept detection's start and end, once or twice.

``train``: one training seed's two networks (seeds change the samples drawn, the clips'
crops and order, and dropout). ``score``: each variant on the test sets, mean ± std over the
seeds, then the diagnosis at tIoU 0.5 summed, and how far the boundary network's offsets
are off. ``speed``: ``scnn detect``'s wall time on the first video of each fresh set with the
bundled model alone, with the boundary network run on the windows the localization network
labels with an action, and with the boundary clips on top, alternated in one run.
``model``: the bundled model with a seed's boundary network (trained unless there) as a model
directory at --out, which ``scnn detect --model`` runs with it (the boundary clips are not
part of a model).

Layout under --work (benchmarks/accuracy/accuracy.py's, shared with it)::

    train/data/, train/frame_cache/      the training set (scnn synth's defaults, data seed 0)
    boundaries/seed<S>.safetensors       a seed's boundary network
    boundaries/clips-seed<S>.safetensors a seed's boundary-clip network
    logits/<network>/test<T>.npy         outputs on every window of test set T
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from accuracy import (  # noqa: E402
    DEV_SEEDS,
    NMS_IOU,
    bundled_cache_name,
    cached_logits,
    metrics,
    table,
    test_grid,
)
from offline_detection import VideoGrid, scored_windows, softmax, window_logits  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from scnn.clips import assemble_clips  # noqa: E402
from scnn.config import TrainConfig, load_config  # noqa: E402
from scnn.dataset import ClipDataset, Samples  # noqa: E402
from scnn.detect import BUNDLED_MODEL, Detector  # noqa: E402
from scnn.fileio import atomic_write  # noqa: E402
from scnn.loss import overlap_loss  # noqa: E402
from scnn.model import build_network  # noqa: E402
from scnn.modelfile import LoadedModel, load_model, load_state, save_model  # noqa: E402
from scnn.pipeline import inference_network  # noqa: E402
from scnn.postprocess import postprocess  # noqa: E402
from scnn.records import Detection, GroundTruth  # noqa: E402
from scnn.stages import LOCALIZATION, TrainingData, prepare_data, stage_samples  # noqa: E402
from scnn.synth import SynthConfig, generate  # noqa: E402
from scnn.video import FPS, num_frames, probe, video_files  # noqa: E402
from scnn.windows import temporal_iou  # noqa: E402

# The boundary network was chosen on 2201-2202 and scored once on 2601-2603; the boundary-clip
# network, chosen on 2201-2202 after that, was scored once on 2701-2703.
SETS = {"dev": DEV_SEEDS[1:3], "first": (2601, 2602, 2603), "fresh": (2701, 2702, 2703)}
TRAIN_SEEDS = (0, 1, 2)
STEPS = 600
BATCH = 16  # windows of the localization stage per step
JITTER = 16  # segments around instances per step
SEGMENTS = 6000  # segments drawn once per seed
MIN_SEGMENT_IOU = 0.4
LR = 1e-4  # the body, cosine to 0; the new head 1e-3
HEAD_LR = 1e-3
SMOOTH_L1_BETA = 0.1  # offsets are fractions of the window: 0.1 is a tenth of it
VOTE_IOU = 0.4  # the bundled model's
VARIANTS = (
    "the bundled model (voting 0.4)",
    "windows moved, then voting 0.4",
    "and refined once",
    "windows moved, voting 0.4, boundary clips",
    "the same, boundary clips twice",
)
CLIP_STEPS = 500
CLIP_BATCH = 32
CLIP_SEGMENTS = 12000
CLIP_SCALE = 0.5  # a boundary clip spans this share of its detection, centred on the boundary
CLIP_SCALE_SPREAD = 0.4  # in training: CLIP_SCALE × e^U(−0.4, 0.4) of the instance
CLIP_SHIFT = 0.35  # in training: the boundary up to this share of the clip off its centre
SPEED_ROUNDS = 5
LAYOUT = torch.channels_last_3d


def boundary_network(model: LoadedModel) -> torch.nn.Module:
    """C3D with two outputs in the localization network's architecture."""
    return build_network(2, model.options, model.clip)


def targets(segments_s: np.ndarray, lengths_s: np.ndarray, instances_s: np.ndarray) -> np.ndarray:
    """Each segment's offsets to its best-tIoU instance (start, end) / its length (frames /
    fps, as a window's)."""
    if len(instances_s) == 0:
        return np.zeros((len(segments_s), 2))
    best = temporal_iou(segments_s, instances_s).argmax(axis=1)
    return (instances_s[best] - segments_s) / lengths_s[:, None]


def window_segments_s(start_frame: np.ndarray, length_frames: np.ndarray) -> np.ndarray:
    """Windows as seconds, the authors' ``frame / fps`` convention (scnn.windows)."""
    return np.stack([start_frame, start_frame + length_frames - 1], axis=1) / FPS


def instance_segments(gt: GroundTruth, video: str) -> np.ndarray:
    """``(M, 2)`` seconds: the instances of ``video``."""
    return np.array(
        [(i.start_s, i.end_s) for i in gt.instances if i.video == video], np.float64
    ).reshape(-1, 2)


def sample_offsets(samples: Samples, gt: GroundTruth) -> np.ndarray:
    """The regression target of every sample (offsets to its best-tIoU instance)."""
    offsets = np.zeros((len(samples), 2), np.float32)
    for v, video in enumerate(samples.videos):
        rows = np.flatnonzero(samples.video == v)
        segments = window_segments_s(samples.start_frame[rows], samples.length_frames[rows])
        lengths_s = samples.length_frames[rows] / FPS
        offsets[rows] = targets(segments, lengths_s, instance_segments(gt, video))
    return offsets


def jittered_segments(
    gt: GroundTruth,
    num_frames: Mapping[str, int],
    videos: tuple[str, ...],
    rng: np.random.Generator,
) -> tuple[Samples, np.ndarray]:
    """SEGMENTS segments around random instances: length × e^U(−½, ½), centre moved by
    U(−0.3, 0.3) of the instance's length, kept inside the video with tIoU ≥ MIN_SEGMENT_IOU."""
    instances = [i for i in gt.instances if i.video in videos]
    video, start, length, offsets = [], [], [], []
    while len(start) < SEGMENTS:
        instance = instances[rng.integers(len(instances))]
        first, last = instance.start_s * FPS, instance.end_s * FPS
        span = last - first
        frames = int(round(max(16.0, span * np.exp(rng.uniform(-0.5, 0.5)))))
        begin = int(round((first + last) / 2 - frames / 2 + rng.uniform(-0.3, 0.3) * span))
        if begin < 1 or begin + frames - 1 > num_frames[instance.video]:
            continue
        segment = window_segments_s(np.array([begin]), np.array([frames]))
        if temporal_iou(segment, [[instance.start_s, instance.end_s]])[0, 0] < MIN_SEGMENT_IOU:
            continue
        video.append(videos.index(instance.video))
        start.append(begin)
        length.append(frames)
        instance_s = np.array([[instance.start_s, instance.end_s]])
        offsets.append(targets(segment, np.array([frames / FPS]), instance_s)[0])
    samples = Samples(
        videos,
        np.array(video),
        np.array(start),
        np.array(length),
        np.ones(len(start), np.int64),
        np.ones(len(start), np.float32),
    )
    return samples, np.array(offsets, np.float32)


def fine_tuning_setup(work: Path, seed: int) -> tuple[TrainConfig, LoadedModel, TrainingData]:
    """The CPU config for ``seed``, the bundled model and the training set (made and decoded
    unless there); torch's RNG seeded first, for dropout."""
    data_dir = work / "train" / "data"
    if not (data_dir / "annotations.json").is_file():
        generate(data_dir, SynthConfig(), quiet=True)
    torch.manual_seed(seed)
    config = load_config("synthetic_cpu", {"seed": seed})
    model = load_model(BUNDLED_MODEL)
    data = prepare_data(
        config,
        data_dir / "annotations.json",
        data_dir / "videos",
        work / "train" / "frame_cache",
        progress=False,
    )
    return config, model, data


def new_head(model: LoadedModel, config: TrainConfig, steps: int):
    """The bundled localization network in training mode, a two-output head on its fc7 (zeros),
    and AdamW over both (LR and HEAD_LR, cosine to 0 over ``steps``)."""
    net = model.localization.train()
    head = torch.nn.Linear(net.fc7.out_features, 2)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    optimizer = torch.optim.AdamW(
        [{"params": net.parameters(), "lr": LR}, {"params": head.parameters(), "lr": HEAD_LR}],
        weight_decay=config.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 0.5 * (1 + np.cos(np.pi * k / steps))
    )
    return net, head, optimizer, schedule


def save_with_head(net: torch.nn.Module, head: torch.nn.Linear, out: Path) -> None:
    """``net`` with ``head`` as its fc8: a two-output C3D (boundary_network) in safetensors."""
    net.fc8 = head
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))


def train_boundaries(work: Path, seed: int) -> Path:
    """A seed's boundary network, trained unless there."""
    out = work / "boundaries" / f"seed{seed}.safetensors"
    if out.is_file():
        return out
    config, model, data = fine_tuning_setup(work, seed)
    windows = stage_samples(LOCALIZATION, config, data, train=True)
    window_offsets = sample_offsets(windows, data.train_gt)
    segments, segment_offsets = jittered_segments(
        data.train_gt, data.train_frames, windows.videos, np.random.default_rng((seed, 7))
    )
    window_clips = ClipDataset(
        windows, data.cache, model.convention, train=True, seed=seed, mirror=False
    )
    segment_clips = ClipDataset(
        segments, data.cache, model.convention, train=True, seed=seed + 100, mirror=False
    )
    net, head, optimizer, schedule = new_head(model, config, STEPS)
    start = time.perf_counter()
    for step in range(STEPS):
        positions = range(step * BATCH, (step + 1) * BATCH)
        rows = np.array([window_clips._sample_of(p) for p in positions])
        clips, labels, ious = window_clips.__getitems__(list(positions))
        jitter_positions = range(step * JITTER, (step + 1) * JITTER)
        jitter_rows = np.array([segment_clips._sample_of(p) for p in jitter_positions])
        jitter_clips = segment_clips.__getitems__(list(jitter_positions))[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):  # each batch normalised alone
            features = net.activations(clips.contiguous(memory_format=LAYOUT), "fc7")
            logits = net.fc8(features)
            jitter_features = net.activations(jitter_clips.contiguous(memory_format=LAYOUT), "fc7")
            offsets = head(torch.cat([features, jitter_features])).float()
        positive = torch.cat([labels > 0, torch.ones(JITTER, dtype=torch.bool)])
        wanted = torch.from_numpy(
            np.concatenate([window_offsets[rows], segment_offsets[jitter_rows]])
        )
        regression = F.smooth_l1_loss(
            offsets[positive], wanted[positive], beta=SMOOTH_L1_BETA, reduction="sum"
        ) / int(positive.sum())
        loss = overlap_loss(logits.float(), labels, ious, alpha=config.overlap_alpha) + regression
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(f"[boundaries] seed {seed} step {step}: regression {regression.item():.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    save_with_head(net, head, out)
    print(f"[boundaries] seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return out


def boundary_clips(
    gt: GroundTruth, num_frames: Mapping[str, int], videos: tuple[str, ...], rng
) -> tuple[Samples, np.ndarray, np.ndarray]:
    """CLIP_SEGMENTS clips each around the start or the end of a random instance: the
    clips, which boundary (0 start, 1 end) and its offset from the clip's centre / its length."""
    instances = list(gt.instances)
    video, start, length, which, offset = [], [], [], [], []
    while len(start) < CLIP_SEGMENTS:
        instance = instances[rng.integers(len(instances))]
        first, last = instance.start_s * FPS, instance.end_s * FPS
        end = rng.integers(2)
        boundary = (first, last)[end]
        spread = np.exp(rng.uniform(-CLIP_SCALE_SPREAD, CLIP_SCALE_SPREAD))
        frames = int(round(max(16.0, CLIP_SCALE * (last - first) * spread)))
        centre = boundary + rng.uniform(-CLIP_SHIFT, CLIP_SHIFT) * frames
        begin = int(round(centre - frames / 2))
        if begin < 1 or begin + frames - 1 > num_frames[instance.video]:
            continue
        video.append(videos.index(instance.video))
        start.append(begin)
        length.append(frames)
        which.append(end)
        offset.append((boundary - (begin + (frames - 1) / 2)) / frames)
    samples = Samples(
        videos,
        np.array(video),
        np.array(start),
        np.array(length),
        np.ones(len(start), np.int64),
        np.ones(len(start), np.float32),
    )
    return samples, np.array(which), np.array(offset, np.float32)


def train_clip_network(work: Path, seed: int) -> Path:
    """A seed's boundary-clip network, trained unless there: C3D with two outputs, a start's
    and an end's offset from the centre of a clip around it / the clip's length, fine-tuned
    from the bundled localization network on :func:`boundary_clips` (smooth-L1 on the output
    of the clip's boundary)."""
    out = work / "boundaries" / f"clips-seed{seed}.safetensors"
    if out.is_file():
        return out
    config, model, data = fine_tuning_setup(work, seed)
    videos = tuple(data.train_frames)
    samples, which, wanted = boundary_clips(
        data.train_gt, data.train_frames, videos, np.random.default_rng((seed, 11))
    )
    clips_of = ClipDataset(
        samples, data.cache, model.convention, train=True, seed=seed, mirror=False
    )
    net, head, optimizer, schedule = new_head(model, config, CLIP_STEPS)
    start = time.perf_counter()
    for step in range(CLIP_STEPS):
        positions = list(range(step * CLIP_BATCH, (step + 1) * CLIP_BATCH))
        rows = np.array([clips_of._sample_of(p) for p in positions])
        clips = clips_of.__getitems__(positions)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            offsets = head(net.activations(clips.contiguous(memory_format=LAYOUT), "fc7")).float()
        chosen = offsets[torch.arange(CLIP_BATCH), torch.from_numpy(which[rows])]
        loss = F.smooth_l1_loss(chosen, torch.from_numpy(wanted[rows]), beta=SMOOTH_L1_BETA)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(f"[boundaries] clips seed {seed} step {step}: loss {loss.item():.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    save_with_head(net, head, out)
    print(f"[boundaries] clips seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return out


def detections(
    grid: VideoGrid, logits: np.ndarray, offsets: np.ndarray | None, classes
) -> list[Detection]:
    """The bundled model's detections (NMS, voting at VOTE_IOU) with each window moved by its
    offsets first (None: the windows' own boundaries)."""
    windows = scored_windows(grid, softmax(logits), classes)
    if offsets is not None:
        length = grid.window_frames / grid.fps
        windows = dataclasses.replace(
            windows,
            start_s=windows.start_s + offsets[:, 0] * length,
            end_s=windows.end_s + offsets[:, 1] * length,
        )
    return postprocess(windows, NMS_IOU, vote_iou=VOTE_IOU)


@torch.no_grad()
def refined(
    found: list[Detection], network, frames: Mapping[str, np.ndarray], model: LoadedModel
) -> list[Detection]:
    """Each detection's segment moved by the boundary network's offsets for that segment."""
    if not found:
        return found
    network.eval()
    start = np.array([max(1, round(d.start_s * FPS)) for d in found], np.int64)
    length = np.array([max(16, round((d.end_s - d.start_s) * FPS)) for d in found], np.int64)
    offsets = np.zeros((len(found), 2))
    for video in {d.video for d in found}:
        rows = np.array([i for i, d in enumerate(found) if d.video == video])
        count = len(frames[video])
        frames_used = np.minimum(length[rows], count)
        first = np.clip(start[rows], 1, count - frames_used + 1)
        start[rows], length[rows] = first, frames_used
        clips = assemble_clips(frames[video], first, frames_used, model.convention, False)
        offsets[rows] = network(clips).double().numpy()
    segments = window_segments_s(start, length) + offsets * (length / FPS)[:, None]
    return [
        dataclasses.replace(d, start_s=float(a), end_s=float(b))
        for d, (a, b) in zip(found, segments, strict=True)
    ]


@torch.no_grad()
def clip_refined(
    found: list[Detection], network, frames: Mapping[str, np.ndarray], model: LoadedModel
) -> list[Detection]:
    """Each detection's start and end moved by the boundary-clip network, each from a clip
    centred on it spanning CLIP_SCALE of the detection."""
    if not found:
        return found
    network.eval()
    segments = np.array([(d.start_s, d.end_s) for d in found])
    frames_used = np.round(CLIP_SCALE * (segments[:, 1] - segments[:, 0]) * FPS)
    frames_used = np.maximum(16, frames_used).astype(np.int64)
    moved_s = segments.copy()
    for end in (0, 1):
        first = np.round(segments[:, end] * FPS - (frames_used - 1) / 2).astype(np.int64)
        for video in {d.video for d in found}:
            rows = np.array([i for i, d in enumerate(found) if d.video == video])
            count = len(frames[video])
            length = np.minimum(frames_used[rows], count)
            begin = np.clip(first[rows], 1, count - length + 1)
            clips = assemble_clips(frames[video], begin, length, model.convention, False)
            offset = network(clips).double().numpy()[:, end]
            moved_s[rows, end] = (begin + (length - 1) / 2 + offset * length) / FPS
    return [
        dataclasses.replace(d, start_s=float(a), end_s=float(b))
        for d, (a, b) in zip(found, moved_s, strict=True)
    ]


def action_offsets(
    name: str, network, test: int, work: Path, model: LoadedModel, grid: VideoGrid, logits
) -> np.ndarray:
    """The boundary network's offsets for the windows the localization network labels with an
    action (0 for the others, which detection drops), computed once."""
    path = work / "logits" / name / f"test{test}.npy"
    if not path.is_file():
        print(f"[boundaries] {name} on test set {test}", flush=True)
        action = np.flatnonzero(logits.argmax(axis=1) > 0)
        config = TrainConfig(clip=model.clip, windows=model.windows)
        frames = test_grid(test, work, model.classes, config)[2]
        part = VideoGrid(
            grid.videos[action],
            grid.window_frames[action],
            grid.start_frame[action],
            grid.end_frame[action],
            grid.fps,
        )
        offsets = np.zeros((len(grid), 2), np.float32)
        offsets[action] = window_logits(network, part, frames, model.clip, torch.device("cpu"))
        with atomic_write(path, "wb") as handle:
            np.save(handle, offsets)
    return np.load(path)


def offset_errors(
    gt: GroundTruth, grid: VideoGrid, logits: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the windows labelled with an action at tIoU ≥ 0.5 with an instance: the offsets'
    errors (fractions of the window), and each window's tIoU before and after moving."""
    errors, before, after = [], [], []
    lengths_s = grid.window_frames / grid.fps
    for video in dict.fromkeys(grid.videos):
        instances = instance_segments(gt, video)
        rows = np.flatnonzero((grid.videos == video) & (logits.argmax(axis=1) > 0))
        if len(instances) == 0 or len(rows) == 0:
            continue
        windows = window_segments_s(grid.start_frame[rows], grid.window_frames[rows])
        iou = temporal_iou(windows, instances).max(axis=1)
        rows, windows, iou = rows[iou >= 0.5], windows[iou >= 0.5], iou[iou >= 0.5]
        wanted = targets(windows, lengths_s[rows], instances)
        errors.append(np.abs(offsets[rows] - wanted))
        moved_s = windows + offsets[rows] * lengths_s[rows, None]
        best = temporal_iou(windows, instances).argmax(axis=1)
        after.append(np.diag(temporal_iou(moved_s, instances[best])))
        before.append(iou)
    return np.concatenate(errors), np.concatenate(before), np.concatenate(after)


def score_part(work: Path, sets: Sequence[int], seeds: Sequence[int]) -> None:
    model = load_model(BUNDLED_MODEL)
    config = TrainConfig(clip=model.clip, windows=model.windows)
    classes = model.classes
    rows: dict[str, list] = {}
    for seed in seeds:
        network = boundary_network(model)
        load_state(network, train_boundaries(work, seed))
        clip_network = boundary_network(model)
        load_state(clip_network, train_clip_network(work, seed))
        per_set, errors = [], []
        for test in sets:
            gt, grid, logits = cached_logits(
                f"{bundled_cache_name()}/localization",
                model.localization,
                test,
                work,
                classes,
                config,
            )
            name = f"boundaries-seed{seed}"
            offsets = action_offsets(name, network, test, work, model, grid, logits)
            frames = test_grid(test, work, classes, config)[2]
            errors.append(offset_errors(gt, grid, logits, offsets))
            moved_found = detections(grid, logits, offsets, classes)
            clipped = clip_refined(moved_found, clip_network, frames, model)
            per_set.append([
                metrics(gt, detections(grid, logits, None, classes)),
                metrics(gt, moved_found),
                metrics(gt, refined(moved_found, network, frames, model)),
                metrics(gt, clipped),
                metrics(gt, clip_refined(clipped, clip_network, frames, model)),
            ])  # fmt: skip
        error, before, after = (np.concatenate(parts) for parts in zip(*errors, strict=True))
        print(f"seed {seed}: {len(error)} windows labelled with an action at tIoU ≥ 0.5; "
              f"offset error per end median {np.median(error):.3f}, mean {error.mean():.3f} of "
              f"the window; mean tIoU {before.mean():.3f}, moved {after.mean():.3f}")  # fmt: skip
        for k, name in enumerate(VARIANTS):
            found = [row[k] for row in per_set]
            mean = {key: np.mean([m[key] for m, _ in found]) for key in found[0][0]}
            rows.setdefault(name, []).append((mean, sum(c for _, c in found)))
    print(f"\nBoundary networks of training seeds {list(seeds)} on test sets {list(sets)}; "
          "mean ± std over the seeds (each seed's mAP the mean over the sets):\n")  # fmt: skip
    print(table(rows))


class WithBoundaries(torch.nn.Module):
    """The localization network's outputs, with the boundary network run on the clips it labels
    with an action (what detection with the head costs)."""

    def __init__(self, localization: torch.nn.Module, boundaries: torch.nn.Module):
        super().__init__()
        self.localization = localization
        self.boundaries = boundaries

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        logits = self.localization(clips)
        action = logits.argmax(dim=1) > 0
        if action.any():
            self.boundaries(clips[action])
        return logits


def speed_part(work: Path, seed: int) -> None:
    model = load_model(BUNDLED_MODEL)
    config = TrainConfig(clip=model.clip, windows=model.windows)
    network = boundary_network(model)
    load_state(network, train_boundaries(work, seed))
    clip_network = boundary_network(model)
    load_state(clip_network, train_clip_network(work, seed))
    videos = []  # (path, its decoded frames for the boundary clips)
    for test in SETS["fresh"]:
        gt, _, frames = test_grid(test, work, model.classes, config)
        name = gt.videos[0]
        videos.append((video_files(work / f"test{test}" / "data" / "videos", [name])[name], frames))
    plain = Detector(model)
    with_head = Detector(model)
    with_head.networks.localization = WithBoundaries(
        with_head.networks.localization,
        inference_network(network.eval(), with_head.device, with_head.bf16),
    )
    runs = {
        "the bundled model": (plain, 0),
        "with the boundary network": (with_head, 0),
        "and boundary clips twice (fp32; frames already decoded)": (with_head, 2),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(SPEED_ROUNDS):
        for name, (detector, clip_rounds) in runs.items():
            start = time.perf_counter()
            for video, frames in videos:
                found = detector.detections(detector.score_windows(video, background=False))
                for _round in range(clip_rounds):
                    found = clip_refined(found, clip_network, frames, model)
            seconds[name].append(time.perf_counter() - start)
    duration_s = sum(num_frames(probe(v)) for v, _ in videos) / model.fps
    print(f"\nscnn detect on {len(videos)} videos ({duration_s:.0f} s), best of "
          f"{SPEED_ROUNDS} alternated rounds:\n")  # fmt: skip
    print("| | wall s | x real time |\n|---|---|---|")
    for name, times in seconds.items():
        print(f"| {name} | {min(times):.1f} | {duration_s / min(times):.1f} |")


def model_part(work: Path, seed: int, out: Path) -> None:
    """The bundled model with ``seed``'s boundary network, as the model directory ``out``."""
    model = load_model(BUNDLED_MODEL)
    network = boundary_network(model)
    load_state(network, train_boundaries(work, seed))
    save_model(out, dataclasses.replace(model, boundaries=network.eval()))
    print(f"wrote {out}: the bundled model with the boundary network of seed {seed}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs") / "accuracy")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--part", choices=("train", "score", "speed", "model"), default="score")
    parser.add_argument("--seed", type=int, action="append", help="training seeds (default 0 1 2)")
    parser.add_argument("--sets", choices=tuple(SETS), default="fresh")
    parser.add_argument("--out", type=Path, help="--part model: the model directory to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seed or list(TRAIN_SEEDS)
    if args.part == "train":
        for seed in seeds:
            train_boundaries(args.work, seed)
            train_clip_network(args.work, seed)
    elif args.part == "score":
        score_part(args.work, SETS[args.sets], seeds)
    elif args.part == "speed":
        speed_part(args.work, seeds[0])
    elif args.out is None:
        parser.error("--part model needs --out")
    else:
        model_part(args.work, seeds[0], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
