"""Temporal geometry: intersection over union, the multi-scale window grid, window labels.

Segments are ``(start, end)`` pairs in any one unit (seconds or frames), as rows of an
``(N, 2)`` array. Windows are counted in frames at 25 fps, numbered from 1 as in the
authors' code (docs: method.md §1); a window's time in seconds is ``start_frame / fps`` to
``end_frame / fps``, the authors' convention (so a 16-frame window spans 0.6 s, not 0.64 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scnn.errors import ScnnError
from scnn.video import FPS

WINDOW_LENGTHS_FRAMES = (16, 32, 64, 128, 256, 512)  # frames at 25 fps: 0.64 s ... 20.48 s
WINDOW_OVERLAP = 0.75  # fraction of a window shared with the next one: stride = L/4


def temporal_iou(segments_a: np.ndarray, segments_b: np.ndarray) -> np.ndarray:
    """Pairwise temporal IoU of ``(N, 2)`` and ``(M, 2)`` segments, as an ``(N, M)`` array.

    IoU = intersection / union, and 0 when the segments do not overlap or only touch.
    For two overlapping 1-D segments the union equals the hull (max end − min start), so this
    one function is both the ActivityNet form and the THUMOS14 kit's
    ``intervaloverlapvalseconds`` form; the two only differ in what callers do with
    reversed segments (start > end), which callers must order first.
    """
    a = np.asarray(segments_a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(segments_b, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0])
    inter = np.clip(inter, 0.0, None)
    union = (a[:, None, 1] - a[:, None, 0]) + (b[None, :, 1] - b[None, :, 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


@dataclass(frozen=True)
class WindowConfig:
    """Window lengths (frames) and the overlap of consecutive windows of one length."""

    lengths_frames: tuple[int, ...] = WINDOW_LENGTHS_FRAMES
    overlap: float = WINDOW_OVERLAP

    def __post_init__(self) -> None:
        for length in self.lengths_frames:
            stride = length * (1.0 - self.overlap)
            if length < 1 or stride < 1 or stride != int(stride):
                raise ScnnError(
                    f"window length {length} frames with overlap {self.overlap} does not give "
                    "a whole, positive stride in frames"
                )

    def stride_frames(self, length_frames: int) -> int:
        """Frames between the starts of consecutive windows of this length (L/4 by default)."""
        return int(length_frames * (1.0 - self.overlap))


@dataclass(frozen=True, eq=False)
class Windows:
    """The windows of one video, column by column (N windows).

    ``start_frame`` and ``end_frame`` are 1-based and inclusive: ``end = start + L - 1``.
    """

    length_frames: np.ndarray  # (N,) int64
    start_frame: np.ndarray  # (N,) int64
    end_frame: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.length_frames)

    def segments_s(self, fps: float) -> np.ndarray:
        """``(N, 2)`` seconds: ``start_frame / fps`` and ``end_frame / fps``."""
        return np.stack([self.start_frame / fps, self.end_frame / fps], axis=1)


def window_grid(num_frames: int, config: WindowConfig = WindowConfig()) -> Windows:
    """All windows of a ``num_frames``-frame video, ordered by length, then start.

    For each length L the windows start at frames 1, 1 + L/4, 1 + 2·L/4, … and a window
    exists only while it ends inside the video (``end_frame <= num_frames``): no padding and
    no extra window aligned to the last frame. A video shorter than every L gets none.
    A 3268-frame video gives 814/405/201/99/48/22 windows for L = 16…512 (method.md §1).
    """
    return windows_ending_between(0, num_frames, config)


def windows_ending_between(
    after_frame: int, last_frame: int, config: WindowConfig = WindowConfig()
) -> Windows:
    """The windows of :func:`window_grid` that end after frame ``after_frame`` and by frame
    ``last_frame``, in its order: what a stream's latest frames complete, computed without
    the grid of the frames before them (which grows with the stream)."""
    lengths, starts = [], []
    for length in config.lengths_frames:
        stride = config.stride_frames(length)
        first = first_start_after(after_frame, length, stride)
        start = np.arange(first, last_frame - length + 2, stride, dtype=np.int64)
        starts.append(start)
        lengths.append(np.full(len(start), length, dtype=np.int64))
    length_frames = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    start_frame = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    return Windows(length_frames, start_frame, start_frame + length_frames - 1)


def first_start_after(frame: int, length: int, stride: int) -> int:
    """The start of the first window of this length (starts 1 + k·stride) to end after
    ``frame``."""
    return 1 + max(0, -(-(frame - length + 1) // stride)) * stride


@dataclass(frozen=True)
class LabelConfig:
    """IoU thresholds that turn windows into training samples (method.md §2)."""

    positive_iou: float = 0.7  # IoU > this with an instance → positive
    best_match_iou: float = 0.5  # an instance's best window is positive when its IoU > this
    background_iou: float = 0.3  # IoU < this with every instance → background


@dataclass(frozen=True, eq=False)
class WindowLabels:
    """Per-window training labels, aligned with a :class:`Windows`.

    ``label``: 1..K the class of the matched instance, 0 background, -1 unused (in between).
    ``iou``: IoU with the matched instance for positives; the largest IoU with any instance
    for background and unused windows (0 when the video has no instance).
    """

    label: np.ndarray  # (N,) int64
    iou: np.ndarray  # (N,) float64


def label_windows(
    windows: Windows,
    instance_segments_s: np.ndarray,
    instance_labels: np.ndarray,
    fps: float = FPS,
    config: LabelConfig = LabelConfig(),
) -> WindowLabels:
    """Label every window as positive (class 1..K), background (0) or unused (-1).

    Positive: IoU > ``positive_iou`` with some instance, matched to the instance of highest
    IoU (the first one on an exact tie). Also positive: the best window of an instance (the
    window of highest IoU with it, every window on an exact tie) when that IoU is
    > ``best_match_iou``; a window that is best for several instances and not already positive
    takes the one it overlaps most. Background: IoU < ``background_iou`` with every instance.
    All comparisons are strict, so an IoU exactly at a threshold is on the "unused" side.
    ``instance_segments_s`` is ``(M, 2)`` seconds; ``instance_labels`` is ``(M,)`` in 1..K.
    """
    num_windows = len(windows)
    segments = np.asarray(instance_segments_s, dtype=np.float64).reshape(-1, 2)
    classes = np.asarray(instance_labels, dtype=np.int64).reshape(-1)
    if len(segments) != len(classes):
        raise ValueError(f"{len(segments)} instance segments but {len(classes)} instance labels")
    if len(segments) == 0 or num_windows == 0:
        return WindowLabels(np.zeros(num_windows, np.int64), np.zeros(num_windows, np.float64))

    iou = temporal_iou(windows.segments_s(fps), segments)  # (N windows, M instances)
    best_instance = iou.argmax(axis=1)
    best_iou = iou[np.arange(num_windows), best_instance]

    label = np.full(num_windows, -1, dtype=np.int64)
    matched_iou = best_iou.copy()
    label[best_iou < config.background_iou] = 0
    positive = best_iou > config.positive_iou
    label[positive] = classes[best_instance[positive]]

    # An instance's best window(s): positive even below positive_iou, if above best_match_iou.
    instance_best = iou.max(axis=0)
    is_best = (iou == instance_best[None, :]) & (instance_best[None, :] > config.best_match_iou)
    rescued = is_best.any(axis=1) & ~positive
    if rescued.any():
        rescued_iou = np.where(is_best[rescued], iou[rescued], -1.0)
        instance = rescued_iou.argmax(axis=1)
        label[rescued] = classes[instance]
        matched_iou[rescued] = rescued_iou[np.arange(len(instance)), instance]
    return WindowLabels(label, matched_iou)
