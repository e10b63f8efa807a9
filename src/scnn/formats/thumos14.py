"""THUMOS14: a ground-truth folder of ``<Class>_<subset>.txt`` files, and the submission text
file of detections (``video start end class score``), as the official kit reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from scnn.errors import AnnotationError
from scnn.fileio import atomic_write_text
from scnn.formats.parsing import (
    all_videos,
    detection,
    read_lines,
    resolve_label,
    segment,
    sorted_videos,
    split_ambiguous,
    strip_extension,
)
from scnn.records import AMBIGUOUS, Detection, GroundTruth, Instance

DEFAULT_SUBSET = "test"  # the subset a written folder's files carry when gt.subsets lacks one


def _subset(folder: Path, subset: str | None) -> str:
    subsets = sorted({p.stem.rsplit("_", 1)[1] for p in folder.glob("*_*.txt")})
    if subset is not None:
        if subset not in subsets:
            raise AnnotationError(f"no <Class>_{subset}.txt files (subsets: {subsets})", folder)
        return subset
    if len(subsets) != 1:
        raise AnnotationError(f"choose a subset, the folder holds {subsets or 'none'}", folder)
    return subsets[0]


def read_ground_truth(folder: Path, subset: str | None) -> GroundTruth:
    """A folder of ``<Class>_<subset>.txt`` files (``video start end``), as the kit reads it:
    the class list is the file names in sorted order (THUMOS14's 1..20 index)."""
    subset = _subset(folder, subset)
    suffix = f"_{subset}.txt"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
    classes = tuple(sorted(p.name[: -len(suffix)] for p in files if p.name != AMBIGUOUS + suffix))
    instances: list[Instance] = []
    for path in [folder / f"{name}{suffix}" for name in classes] + [folder / (AMBIGUOUS + suffix)]:
        if not path.exists():
            continue
        label = path.name[: -len(suffix)]
        for line, text in enumerate(read_lines(path), start=1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise AnnotationError(
                    f"expected 3 columns (video start end), got {len(fields)}", path, line
                )
            start_s, end_s = segment(fields[1], fields[2], path, line)
            instances.append(Instance(fields[0], start_s, end_s, label))
    real, ambiguous = split_ambiguous(instances)
    videos = sorted_videos(real, ambiguous)
    return GroundTruth(classes, real, ambiguous, videos, {}, {v: subset for v in videos})


def write_ground_truth(folder: Path, gt: GroundTruth) -> None:
    """One file per class (and Ambiguous) per subset, each ``video start end`` per line."""
    subsets = sorted({gt.subsets.get(v, DEFAULT_SUBSET) for v in all_videos(gt)})
    for subset in subsets or [DEFAULT_SUBSET]:
        for label in (*gt.classes, AMBIGUOUS):
            group = gt.ambiguous if label == AMBIGUOUS else gt.instances
            lines = [
                f"{i.video} {i.start_s!r} {i.end_s!r}\n"
                for i in group
                if i.label == label and gt.subsets.get(i.video, DEFAULT_SUBSET) == subset
            ]
            atomic_write_text(folder / f"{label}_{subset}.txt", "".join(lines))


def read_detections(
    path: Path, classes: Sequence[str] | None, class_table: Mapping[int, str] | None
) -> tuple[list[Detection], int]:
    """The submission format as the kit's ``textread('%s%f%f%d%f')`` reads it: whitespace
    (tabs or spaces) separated ``video start end class score``; a video extension is dropped.
    Also returns the count of rows skipped for a class id the table lacks."""
    detections, skipped = [], 0
    for line, text in enumerate(read_lines(path), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise AnnotationError(
                f"expected 5 columns (video start end class score), got {len(fields)}", path, line
            )
        label = resolve_label(fields[3], classes, class_table, path, line)
        if label is None:
            skipped += 1
            continue
        video = strip_extension(fields[0])
        detections.append(detection(video, (fields[1], fields[2], fields[4]), label, path, line))
    return detections, skipped


def write_detections(
    path: Path,
    detections: Sequence[Detection],
    classes: Sequence[str] | None,
    videos: Sequence[str],
) -> None:
    """``video start end class score``: times %.1f and scores to 5 significant digits, as the
    authors' files; the class is its 1..K index when ``classes`` is given, else its name."""
    index = {name: n for n, name in enumerate(classes or (), start=1)}
    lines = [
        f"{d.video} {d.start_s:.1f} {d.end_s:.1f} {index.get(d.label, d.label)} {d.score:.5g}\n"
        for d in detections
    ]
    atomic_write_text(path, "".join(lines))
