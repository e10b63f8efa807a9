"""The file formats of ground truth and detections, and the entry points that pick one.

Ground truth: a THUMOS14 folder, ActivityNet ``.json``, ``.csv``, or MEXaction2's ViPER
``.xgtf`` files (a file or a folder of them). Detections: THUMOS14
``.txt``, ActivityNet ``.json``, ``.csv``, and (written only) ``.vtt`` / ``.srt`` subtitles.
Times are seconds; labels are class names. Each format has its module here; the windows CSV
is :mod:`scnn.formats.windows_csv`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from scnn.errors import AnnotationError
from scnn.formats import activitynet, csv_format, mexaction2, subtitles, thumos14
from scnn.formats.parsing import csv_records, read_lines, shown
from scnn.records import Detection, GroundTruth

DURATION_SLACK_S = 0.5  # annotations may overrun a rounded duration by this much unremarked

log = logging.getLogger(__name__)

DetectionReader = Callable[
    [Path, Sequence[str] | None, Mapping[int, str] | None], tuple[list[Detection], int]
]
DetectionWriter = Callable[[Path, Sequence[Detection], Sequence[str] | None, Sequence[str]], None]


def read_class_table(path: str | Path, id_column: str = "index") -> dict[int, str]:
    """Map the integer ids of ``id_column`` to the ``name`` column of a CSV with a header,
    like the bundled THUMOS14 table (``index,name,thumos14_id``, scnn.bundled_data)."""
    path = Path(path)
    rows = list(csv_records(read_lines(path), path))
    if not rows:
        raise AnnotationError("empty class table", path)
    header = [cell.strip() for cell in rows[0][1]]
    for column in ("name", id_column):
        if column not in header:
            raise AnnotationError(f"no column {column!r} (columns: {shown(header, 80)})", path, 1)
    id_at, name_at = header.index(id_column), header.index("name")
    table: dict[int, str] = {}
    for line, row in rows[1:]:
        if not row:
            continue
        if len(row) != len(header):
            raise AnnotationError(f"expected {len(header)} columns, got {len(row)}", path, line)
        try:
            class_id = int(row[id_at])
        except ValueError:
            message = f"class id is not an integer: {shown(row[id_at])}"
            raise AnnotationError(message, path, line) from None
        if class_id in table:
            raise AnnotationError(f"class id {class_id} listed twice", path, line)
        table[class_id] = row[name_at].strip()
    return table


# ---------------------------------------------------------------- ground truth


def _check_labels(gt: GroundTruth, path: Path) -> GroundTruth:
    known = set(gt.classes)
    for instance in gt.instances:
        if instance.label not in known:
            raise AnnotationError(
                f"unknown class {shown(instance.label)} in {shown(instance.video)}", path
            )
    return gt


def _warn_oddities(gt: GroundTruth, path: Path) -> None:
    """Count, in one warning each, instances the official kits keep but a user should hear
    about: duplicates, and instances ending after their video's stated duration."""
    duplicates = len(gt.instances) - len(set(gt.instances))
    beyond = sum(
        1
        for i in gt.instances
        if i.video in gt.durations_s and i.end_s > gt.durations_s[i.video] + DURATION_SLACK_S
    )
    if duplicates:
        log.warning("%s: kept %d duplicate instances", path, duplicates)
    if beyond:
        log.warning("%s: kept %d instances that end after their video's duration", path, beyond)


def load_ground_truth(
    path: str | Path, subset: str | None = None, classes: Sequence[str] | None = None
) -> GroundTruth:
    """Read ground truth: a folder is a THUMOS14 annotation folder (or holds MEXaction2
    ``.xgtf`` files), ``.json`` ActivityNet, ``.csv`` ``video,start,end,label``, ``.xgtf``
    MEXaction2. ``subset`` picks THUMOS14 files or ActivityNet videos.
    With ``classes``, the class list is that one and any other label is an error."""
    path = Path(path)
    if mexaction2.is_mexaction2(path):
        gt = mexaction2.read_ground_truth(path, subset)
    elif path.is_dir():
        gt = thumos14.read_ground_truth(path, subset)
    elif path.suffix.lower() == ".json":
        gt = activitynet.read_ground_truth(path, subset)
    elif path.suffix.lower() == ".csv":
        gt = csv_format.read_ground_truth(path, subset)
    elif not path.exists():
        raise AnnotationError("no such file or folder", path)
    else:
        raise AnnotationError("unknown ground-truth format (a folder, .json, .csv or .xgtf)", path)
    if classes is not None:
        gt = GroundTruth(
            tuple(classes), gt.instances, gt.ambiguous, gt.videos, gt.durations_s, gt.subsets
        )
    gt = _check_labels(gt, path)
    _warn_oddities(gt, path)
    log.info(
        "%s: %d instances of %d classes in %d videos, %d ambiguous intervals",
        path,
        len(gt.instances),
        len(gt.classes),
        len({i.video for i in gt.instances}),
        len(gt.ambiguous),
    )
    return gt


def write_ground_truth(path: str | Path, gt: GroundTruth) -> None:
    """Write ground truth in the format :func:`load_ground_truth` picks for ``path``; a
    THUMOS14 folder gets one file per class (and Ambiguous) per subset (default "test")."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        activitynet.write_ground_truth(path, gt)
    elif suffix == ".csv":
        csv_format.write_ground_truth(path, gt)
    elif suffix == "":
        thumos14.write_ground_truth(path, gt)
    else:
        raise AnnotationError("unknown ground-truth format (use a folder, .json or .csv)", path)


# ---------------------------------------------------------------- detections

DETECTION_READERS: dict[str, DetectionReader] = {
    ".txt": thumos14.read_detections,
    ".json": activitynet.read_detections,
    ".csv": csv_format.read_detections,
}


def load_detections(
    path: str | Path,
    classes: Sequence[str] | None = None,
    class_table: Mapping[int, str] | None = None,
) -> list[Detection]:
    """Read detections (``.txt`` THUMOS14 submission, ``.json`` ActivityNet results, ``.csv``).

    Classes may be names (checked against ``classes`` when given), 1..K indices into
    ``classes``, or ids of ``class_table`` (see :func:`read_class_table`). As the official
    kits, rows are kept as written: a reversed segment (start > end) or a negative time is
    counted in a warning, not refused, and a numeric id not in the table is skipped with a
    warning. An empty file gives no detections.
    """
    path = Path(path)
    reader = DETECTION_READERS.get(path.suffix.lower())
    if reader is None:
        raise AnnotationError(
            f"unknown detection format (use {', '.join(DETECTION_READERS)})", path
        )
    if not path.exists():
        raise AnnotationError("no such file", path)
    detections, skipped = reader(path, classes, class_table)
    if skipped:
        log.warning("%s: skipped %d rows whose class id is not a known class", path, skipped)
    reversed_rows = sum(d.start_s > d.end_s for d in detections)
    negative_rows = sum(min(d.start_s, d.end_s) < 0 for d in detections)
    if reversed_rows or negative_rows:
        log.warning(
            "%s: kept %d rows with start > end and %d with a negative time",
            path,
            reversed_rows,
            negative_rows,
        )
    return detections


# Output writers by file extension, each ``(path, detections, classes, videos)``; add formats
# here. ``videos`` names every video processed, also those without a detection.
WRITERS: dict[str, DetectionWriter] = {
    ".txt": thumos14.write_detections,
    ".json": activitynet.write_detections,
    ".csv": csv_format.write_detections,
    ".vtt": subtitles.write_webvtt,
    ".srt": subtitles.write_srt,
}
SUBTITLE_FORMATS = (".vtt", ".srt")  # one video per file


def get_writer(path: str | Path) -> DetectionWriter:
    """The detection writer for ``path``'s extension."""
    writer = WRITERS.get(Path(path).suffix.lower())
    if writer is None:
        raise AnnotationError(f"unknown output format (use {', '.join(WRITERS)})", path)
    return writer


def write_detections(
    path: str | Path,
    detections: Sequence[Detection],
    classes: Sequence[str] | None = None,
    videos: Sequence[str] = (),
) -> None:
    """Write detections in the format named by ``path``'s extension (see ``WRITERS``).

    ``videos``: the videos processed; the ActivityNet JSON lists those without a detection
    with an empty list (the other formats have no place for them)."""
    get_writer(path)(Path(path), detections, classes, videos)
