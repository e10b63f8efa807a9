"""The records that flow between modules: ground truth, detections and scored windows.

Times are seconds, labels are class names; frames (in ScoredWindows) are 1-based at 25 fps, as
the authors'. Nothing here knows about files: scnn.formats reads and writes these records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

AMBIGUOUS = "Ambiguous"  # THUMOS14's label for intervals that count neither way


@dataclass(frozen=True)
class Instance:
    """One ground-truth action instance (or an Ambiguous interval) in one video."""

    video: str
    start_s: float
    end_s: float
    label: str


@dataclass(frozen=True)
class Detection:
    """One detected action: a segment, its class and a confidence score."""

    video: str
    start_s: float
    end_s: float
    label: str
    score: float


@dataclass(frozen=True)
class GroundTruth:
    """A ground-truth set: the class list (its order gives the 1..K indices), the instances,
    the Ambiguous intervals, and, where the format carries them, each video's duration and
    subset. ``videos`` lists every annotated video, also those without instances.
    """

    classes: tuple[str, ...]
    instances: tuple[Instance, ...]
    ambiguous: tuple[Instance, ...] = ()
    videos: tuple[str, ...] = ()
    durations_s: Mapping[str, float] = field(default_factory=dict)
    subsets: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredWindows:
    """Windows scored by the localization network, as columns (one row per window).

    ``label_index`` is 0 for background and 1..K for ``classes[label_index - 1]``; ``score``
    is the softmax probability of that label. Frames are 1-based at 25 fps, as the authors'.
    A model with a boundary network gives each window the seconds its start and end move
    by (``start_offset_s``, ``end_offset_s``); without one they are None: the grid's own.
    """

    videos: np.ndarray
    window_frames: np.ndarray
    start_frame: np.ndarray
    end_frame: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    label_index: np.ndarray
    score: np.ndarray
    classes: tuple[str, ...]
    start_offset_s: np.ndarray | None = None
    end_offset_s: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def of_frames(
        cls,
        video: str,
        window_frames: np.ndarray,
        start_frame: np.ndarray,
        end_frame: np.ndarray,
        fps: float,
        label_index: np.ndarray,
        score: np.ndarray,
        classes: tuple[str, ...],
        offsets: np.ndarray | None = None,
    ) -> ScoredWindows:
        """The windows of one video placed in frames at ``fps``, their times made from them.
        ``offsets`` (N, 2), a boundary network's, are fractions of each window's length
        (``window_frames / fps``); None: no boundary network."""
        start_frame = np.asarray(start_frame, np.int64)
        end_frame = np.asarray(end_frame, np.int64)
        window_frames = np.asarray(window_frames, np.int64)
        moves_s = None
        if offsets is not None:
            moves_s = np.asarray(offsets, np.float64) * (window_frames / fps)[:, None]
        return cls(
            videos=np.full(len(score), video, dtype=object),
            window_frames=window_frames,
            start_frame=start_frame,
            end_frame=end_frame,
            start_s=start_frame / fps,
            end_s=end_frame / fps,
            label_index=np.asarray(label_index, np.int64),
            score=np.asarray(score, np.float64),
            classes=classes,
            start_offset_s=None if moves_s is None else moves_s[:, 0].copy(),
            end_offset_s=None if moves_s is None else moves_s[:, 1].copy(),
        )
