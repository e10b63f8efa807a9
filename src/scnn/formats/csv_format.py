"""CSV with a header: ground truth ``video,start,end,label`` and detections
``video,start,end,label,score`` (further columns are allowed and ignored)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from scnn.errors import AnnotationError
from scnn.fileio import atomic_write_text
from scnn.formats.parsing import (
    csv_records,
    detection,
    first_seen,
    read_lines,
    resolve_label,
    segment,
    sorted_videos,
    split_ambiguous,
)
from scnn.records import Detection, GroundTruth, Instance


def _csv_rows(path: Path, with_score: bool) -> list[tuple[int, list[str]]]:
    """Data rows (with line numbers) of a ``video,start,end,label[,score]`` CSV."""
    rows = [(n, row) for n, row in csv_records(read_lines(path), path) if row]
    if not rows:
        return []
    expected = ["video", "start", "end", "label"] + (["score"] if with_score else [])
    header = [cell.strip() for cell in rows[0][1]]
    if header[: len(expected)] != expected:
        raise AnnotationError(f"header must start with {','.join(expected)}", path, 1)
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise AnnotationError(f"expected {len(header)} columns, got {len(row)}", path, line)
    return rows[1:]


def read_ground_truth(path: Path, subset: str | None) -> GroundTruth:
    """The instances of a ground-truth CSV; it has no subsets, so ``subset`` is unused. The
    class list is the labels in order of first appearance."""
    instances = []
    for line, row in _csv_rows(path, with_score=False):
        start_s, end_s = segment(row[1], row[2], path, line)
        instances.append(Instance(row[0], start_s, end_s, row[3]))
    real, ambiguous = split_ambiguous(instances)
    return GroundTruth(
        first_seen(i.label for i in real), real, ambiguous, sorted_videos(real, ambiguous)
    )


def write_ground_truth(path: Path, gt: GroundTruth) -> None:
    """The instances, then the Ambiguous intervals; times as Python's repr (exact round trip)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "start", "end", "label"])
    for i in (*gt.instances, *gt.ambiguous):
        writer.writerow([i.video, repr(i.start_s), repr(i.end_s), i.label])
    atomic_write_text(path, buffer.getvalue())


def read_detections(
    path: Path, classes: Sequence[str] | None, class_table: Mapping[int, str] | None
) -> tuple[list[Detection], int]:
    """The detections of a CSV, and the count of rows skipped for a class id the table lacks."""
    detections, skipped = [], 0
    for line, row in _csv_rows(path, with_score=True):
        label = resolve_label(row[3], classes, class_table, path, line)
        if label is None:
            skipped += 1
            continue
        detections.append(detection(row[0], (row[1], row[2], row[4]), label, path, line))
    return detections, skipped


def write_detections(
    path: Path,
    detections: Sequence[Detection],
    classes: Sequence[str] | None,
    videos: Sequence[str],
) -> None:
    """One row per detection, labels as names; numbers as Python's repr (exact round trip)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "start", "end", "label", "score"])
    for d in detections:
        writer.writerow([d.video, repr(d.start_s), repr(d.end_s), d.label, repr(d.score)])
    atomic_write_text(path, buffer.getvalue())
