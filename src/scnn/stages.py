"""The three S-CNN stages and what each trains and validates on (method.md §2–3).

The proposal, classification and localization networks differ only in data, output size and
loss, so a :class:`Stage` record describes each (the authors' three Caffe setups differ in the
same few lines). Order: proposal, classification, then localization initialised from the
trained classification network. The videos of a run are decoded once (:func:`prepare_data`)
and each stage draws its labelled windows from them (:func:`stage_samples`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scnn.config import TrainConfig
from scnn.dataset import (
    FrameCache,
    Samples,
    cache_videos,
    concat_samples,
    trimmed_clip_paths,
    trimmed_samples,
    window_samples,
)
from scnn.errors import ScnnError
from scnn.formats import load_ground_truth
from scnn.records import GroundTruth
from scnn.video import video_files

log = logging.getLogger(__name__)


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
    ``config.data.val_subset`` of ``val_annotations`` (default: the same file), or none when
    it is "". Trimmed clips shorter than one clip are left out, each with a warning.
    """
    train_gt = load_ground_truth(annotations, config.data.train_subset)
    val_gt = GroundTruth(train_gt.classes, ())
    if config.data.val_subset:
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
    short = [key for key, frames in trimmed_frames.items() if frames < config.clip.clip_frames]
    for key in short:
        log.warning(
            "%s: %d frames at %g fps, fewer than a clip's %d: left out",
            clips[key][0],
            trimmed_frames[key],
            cache.fps,
            config.clip.clip_frames,
        )
        del clips[key], trimmed_frames[key]
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
    background_ratio = config.data.background_ratio
    if stage is LOCALIZATION and config.data.localization_background_ratio > 0:
        background_ratio = config.data.localization_background_ratio
    samples = window_samples(
        data.train_gt if train else data.val_gt,
        data.train_frames if train else data.val_frames,
        binary=stage.binary,
        windows=config.windows,
        labels=config.labels,
        background_ratio=background_ratio,
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
