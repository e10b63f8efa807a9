"""Ground-truth instances, detections and class lists, and the file formats that carry them.

Times are seconds everywhere in this module; labels are class names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

AMBIGUOUS = "Ambiguous"


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
