"""Training samples from ground truth, a per-video frame cache, and the clip dataset.

A training sample is one window of one video with a label and its IoU (method.md §2). The
frames behind the windows are decoded once per video into a memory-mapped ``.npy`` file (the
frame cache), so a run decodes each video once instead of once per sample, and DataLoader
workers read only the 16 frames a clip needs. At 171x128 pixels and 25 fps a cached video
takes 171 x 128 x 3 x 25 x 60 bytes = 98.5 MB per video-minute (86x64: 24.8 MB).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scnn.clips import InputConvention, gather_clips, normalize_clips
from scnn.errors import ScnnError, VideoError
from scnn.fileio import atomic_write
from scnn.records import GroundTruth
from scnn.video import FPS, VIDEO_SUFFIXES, read_frames
from scnn.windows import LabelConfig, WindowConfig, label_windows, window_grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """Which videos train and validate a model, and how background windows are balanced."""

    train_subset: str = "training"  # subset of the annotations that trains (all if no subsets)
    val_subset: str = "validation"  # held-out subset for the validation of each stage; "": none
    background_ratio: float = 1.0  # background windows per positive (binary) or per class
    # the localization stage's own background_ratio (beyond S-CNN, docs/accuracy.md); 0: the same
    localization_background_ratio: float = 0.0
    val_samples: int = 1000  # at most this many validation windows per stage (evenly spaced)


@dataclass(frozen=True, eq=False)
class Samples:
    """Training samples, column by column: window ``i`` of video ``videos[video[i]]``.

    ``label`` is the stage's target (0/1 for action vs background, or 0..K); ``iou`` is the
    window's IoU with its matched instance (1 for trimmed clips, unused for background).
    """

    videos: tuple[str, ...]  # frame-cache keys
    video: np.ndarray  # (N,) int64 index into videos
    start_frame: np.ndarray  # (N,) int64, 1-based
    length_frames: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) int64
    iou: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.label)

    def take(self, index: np.ndarray) -> Samples:
        """The samples at ``index``, in that order."""
        return Samples(
            self.videos,
            self.video[index],
            self.start_frame[index],
            self.length_frames[index],
            self.label[index],
            self.iou[index],
        )


class FrameCache:
    """Decoded frames of each video at one size, stored once as ``<root>/<key>.<W>x<H>.npy``.

    A file is written atomically after the whole video decoded, so an interrupted run never
    leaves a truncated cache entry; later runs (and workers) memory-map it. An entry that is
    unreadable or of the wrong shape anyway (copied half, written by another tool) is decoded
    again, never trusted.
    """

    def __init__(self, root: str | Path, frame_size: tuple[int, int], fps: float = FPS):
        self.root = Path(root)
        self.frame_size = frame_size
        self.fps = fps

    def path(self, key: str) -> Path:
        width, height = self.frame_size
        return self.root / f"{key}.{width}x{height}.npy"

    def frames(self, key: str, video_path: str | Path) -> np.ndarray:
        """The video's (T, H, W, 3) uint8 frames, memory-mapped; decoded on first use."""
        cached = self.path(key)
        if cached.exists():
            frames = self._load(cached)
            if frames is not None:
                return frames
            log.warning("%s: damaged frame-cache entry, decoding the video again", cached)
        frames = read_frames(video_path, fps=self.fps, size=self.frame_size)
        with atomic_write(cached, "wb") as handle:
            np.save(handle, frames)
        return np.load(cached, mmap_mode="r")

    def _load(self, cached: Path) -> np.ndarray | None:
        """The memory-mapped entry, or None when it is not a whole (T, H, W, 3) uint8 array."""
        width, height = self.frame_size
        try:
            frames = np.load(cached, mmap_mode="r")
        except (ValueError, OSError, EOFError):  # truncated data or header, not an .npy file
            return None
        if frames.dtype != np.uint8 or frames.shape[1:] != (height, width, 3):
            return None
        return frames


def cache_videos(
    cache: FrameCache, video_paths: Mapping[str, Path], progress: bool = True
) -> dict[str, int]:
    """Decode every video not yet cached; return each video's number of frames."""
    num_frames = {}
    for key, path in tqdm(
        video_paths.items(), desc="frame cache", unit="video", disable=not progress
    ):
        num_frames[key] = len(cache.frames(key, path))
    return num_frames


def window_samples(
    gt: GroundTruth,
    num_frames: Mapping[str, int],
    *,
    binary: bool,
    windows: WindowConfig,
    labels: LabelConfig,
    background_ratio: float,
    rng: np.random.Generator,
    fps: float = FPS,
) -> Samples:
    """Label the window grid of every video in ``num_frames`` and balance the background.

    ``binary`` labels windows action (1) vs background (0), as the proposal network learns;
    otherwise by class 1..K with 0 for background. All positives are kept; background windows
    are drawn without replacement: ``background_ratio`` per positive when binary, per average
    class otherwise (method.md §2). Ambiguous intervals are neither positive nor background
    evidence, so they are ignored here as the authors' lists do.
    """
    class_index = {name: k + 1 for k, name in enumerate(gt.classes)}
    by_video: dict[str, list] = {video: [] for video in num_frames}
    for instance in gt.instances:
        if instance.video in by_video:
            by_video[instance.video].append(instance)
    videos = tuple(num_frames)
    columns: dict[str, list[np.ndarray]] = {
        "video": [],
        "start": [],
        "length": [],
        "label": [],
        "iou": [],
    }
    for v, video in enumerate(videos):
        grid = window_grid(num_frames[video], windows)
        instances = by_video[video]
        segments = np.array([(i.start_s, i.end_s) for i in instances], np.float64).reshape(-1, 2)
        classes = np.array([class_index[i.label] for i in instances], np.int64)
        window_labels = label_windows(grid, segments, classes, fps=fps, config=labels)
        used = window_labels.label >= 0
        columns["video"].append(np.full(int(used.sum()), v, np.int64))
        columns["start"].append(grid.start_frame[used])
        columns["length"].append(grid.length_frames[used])
        columns["label"].append(window_labels.label[used])
        columns["iou"].append(window_labels.iou[used].astype(np.float32))
    merged = {
        name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()
    }
    samples = Samples(
        videos,
        merged["video"].astype(np.int64),
        merged["start"].astype(np.int64),
        merged["length"].astype(np.int64),
        merged["label"].astype(np.int64),
        merged["iou"].astype(np.float32),
    )
    positive = np.flatnonzero(samples.label > 0)
    background = np.flatnonzero(samples.label == 0)
    per = 1 if binary else max(len(gt.classes), 1)
    num_background = min(len(background), round(background_ratio * len(positive) / per))
    kept_background = np.sort(rng.choice(background, size=num_background, replace=False))
    samples = samples.take(np.concatenate([positive, kept_background]))
    log.info(
        "%d videos: %d positive and %d of %d background windows",
        len(videos),
        len(positive),
        num_background,
        len(background),
    )
    if binary:
        return Samples(
            samples.videos,
            samples.video,
            samples.start_frame,
            samples.length_frames,
            (samples.label > 0).astype(np.int64),
            samples.iou,
        )
    return samples


def trimmed_clip_paths(root: str | Path, classes: Sequence[str]) -> dict[str, tuple[Path, int]]:
    """Trimmed clips laid out as ``<root>/<class>/<clip>.<ext>``: key → (path, class 1..K).

    Folders of other classes are left out and counted in one line: UCF101 holds 101 classes,
    of which THUMOS14 trains on its 20 (method.md §6). No folder of any class is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise ScnnError("trimmed-clip folder not found", root)
    class_index = {name: k + 1 for k, name in enumerate(classes)}
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    others = [folder.name for folder in folders if folder.name not in class_index]
    if len(others) == len(folders):
        raise ScnnError(f"no folder is named after one of the {len(classes)} classes", root)
    if others:
        log.info(
            "%s: %d of %d folders are not among the %d classes, left out (%s)",
            root,
            len(others),
            len(folders),
            len(classes),
            ", ".join(others[:3]) + (", …" if len(others) > 3 else ""),
        )
    clips = {}
    for folder in (folder for folder in folders if folder.name in class_index):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in VIDEO_SUFFIXES:
                clips[f"trimmed/{folder.name}/{path.stem}"] = (path, class_index[folder.name])
    return clips


def trimmed_samples(
    clips: Mapping[str, int], num_frames: Mapping[str, int], *, binary: bool, clip_frames: int
) -> Samples:
    """One positive sample per trimmed clip (``clips``: key → class 1..K): its frames 1…L with
    L the largest multiple of ``clip_frames`` in the clip, so the 16 sampled frames span it.
    Clips shorter than ``clip_frames`` frames cannot make a window and are an error."""
    keys = tuple(clips)
    for key in keys:
        if num_frames[key] < clip_frames:
            raise VideoError(
                f"trimmed clip has {num_frames[key]} frames, fewer than {clip_frames}", key
            )
    lengths = np.array([num_frames[k] // clip_frames * clip_frames for k in keys], np.int64)
    classes = np.array([clips[k] for k in keys], np.int64)
    return Samples(
        keys,
        np.arange(len(keys), dtype=np.int64),
        np.ones(len(keys), np.int64),
        lengths,
        np.ones(len(keys), np.int64) if binary else classes,
        np.ones(len(keys), np.float32),
    )


def concat_samples(parts: Sequence[Samples]) -> Samples:
    """Samples of several sets as one (video indices renumbered)."""
    offsets = np.cumsum([0] + [len(p.videos) for p in parts])
    return Samples(
        tuple(v for p in parts for v in p.videos),
        np.concatenate([p.video + offset for p, offset in zip(parts, offsets, strict=False)]),
        np.concatenate([p.start_frame for p in parts]),
        np.concatenate([p.length_frames for p in parts]),
        np.concatenate([p.label for p in parts]),
        np.concatenate([p.iou for p in parts]),
    )


class ClipDataset(torch.utils.data.Dataset):
    """Clips of ``samples`` as ``(clip (3, F, S, S) float32, label int64, iou float32)``.

    In training the index is a *draw position* p = 0, 1, 2, …, not a sample: epoch
    p // N visits the samples in a permutation seeded by (seed, epoch), and the random crop and
    mirror of draw p come from a generator seeded by (seed, p). So the clips a run sees are a
    function of the seed and the step alone, and a resumed run sees exactly the clips an
    uninterrupted one would. In evaluation the index is the sample and the crop is central.

    ``convention``: the network's input; its mean cube, if it has one, is cropped and mirrored
    with each training clip: C3D's Caffe data layer subtracts the cube from the whole frames,
    then crops and mirrors. ``mirror``: training's random horizontal mirror (ClipConfig).
    """

    def __init__(
        self,
        samples: Samples,
        cache: FrameCache,
        convention: InputConvention,
        *,
        train: bool,
        seed: int = 0,
        mirror: bool = True,
    ):
        self.samples = samples
        self.cache_paths = tuple(cache.path(key) for key in samples.videos)
        self.convention = convention
        self.train = train
        self.seed = seed
        self.mirror = mirror
        self._frames: dict[int, np.ndarray] = {}
        self._permutation: tuple[int, np.ndarray] | None = None

    def __getstate__(self) -> dict:
        # Memory maps are reopened in each worker rather than pickled (which would copy them).
        return {**self.__dict__, "_frames": {}}

    def __len__(self) -> int:
        return len(self.samples)

    def sample_of(self, position: int) -> int:
        """The row of ``samples`` that training draw ``position`` takes."""
        epoch, offset = divmod(position, len(self.samples))
        if self._permutation is None or self._permutation[0] != epoch:
            order = np.random.default_rng((self.seed, epoch)).permutation(len(self.samples))
            self._permutation = (epoch, order)
        return int(self._permutation[1][offset])

    def _crop_rng(self, index: int) -> np.random.Generator | None:
        """The generator of draw ``index``'s random crop and mirror (None in evaluation)."""
        return np.random.default_rng((self.seed, 1 << 32, index)) if self.train else None

    def _mean_crop(self, index: int) -> torch.Tensor:
        """The mean cube cropped and mirrored as the clip of ``index``: gathered as a clip of
        frames 1…clip_frames with the same random draws."""
        first, length = np.ones(1), np.full(1, self.convention.clip_frames)
        return gather_clips(
            self.convention.mean_cube,
            first,
            length,
            self.convention,
            self.train,
            self._crop_rng(index),
            mirror=self.mirror,
        )

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """A batch ``(clips (B, 3, F, S, S), labels (B,), ious (B,))``: each clip gathered as
        uint8, then the batch normalised in one pass, with no stacking afterwards (a DataLoader
        calls this with a batch's indices; give it ``collate_fn=ClipDataset.collate``). A
        training batch of 16 small clips loads in ~2 ms instead of ~6 ms one by one."""
        rows = [self.sample_of(i) if self.train else i for i in indices]
        gathered, means = [], []
        for index, i in zip(indices, rows, strict=True):
            v = int(self.samples.video[i])
            if v not in self._frames:
                self._frames[v] = np.load(self.cache_paths[v], mmap_mode="r")
            gathered.append(
                gather_clips(
                    self._frames[v],
                    self.samples.start_frame[i : i + 1],
                    self.samples.length_frames[i : i + 1],
                    self.convention,
                    train=self.train,
                    rng=self._crop_rng(index),
                    mirror=self.mirror,
                )
            )
            if self.train and self.convention.mean_cube is not None:
                means.append(self._mean_crop(index))
        mean_crops = torch.cat(means) if means else None
        return (
            normalize_clips(torch.cat(gathered), self.convention, mean_crops=mean_crops),
            torch.from_numpy(self.samples.label[rows]),
            torch.from_numpy(self.samples.iou[rows]),
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, float]:
        clips, labels, ious = self.__getitems__([index])
        return clips[0], int(labels[0]), float(ious[0])

    @staticmethod
    def collate(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The DataLoader's ``collate_fn``: :meth:`__getitems__` already made the batch."""
        return batch
