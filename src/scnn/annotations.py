"""Ground-truth instances, detections and class lists, and the file formats that carry them.

Times are seconds everywhere in this module; labels are class names.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scnn.errors import AnnotationError
from scnn.fileio import atomic_write_text
from scnn.subtitles import write_srt, write_webvtt
from scnn.video import VIDEO_SUFFIXES

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


THUMOS14_DEFAULT_SUBSET = "test"
DURATION_SLACK_S = 0.5  # annotations may overrun a rounded duration by this much unremarked

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- small parsing helpers


def _read_lines(path: Path) -> list[str]:
    """All lines of a UTF-8 text file; a BOM and CRLF or CR line ends are accepted. Only those
    end a line (not str.splitlines' form feeds and separators), so line numbers match an
    editor's."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().split("\n")  # universal newlines: CRLF and CR read as LF
        if lines[-1] == "":
            lines.pop()
        return lines
    except OSError as exc:
        raise AnnotationError(f"cannot read file ({exc.strerror})", path) from exc
    except UnicodeDecodeError as exc:
        raise AnnotationError("not a UTF-8 text file", path) from exc


def _csv_records(lines: Iterable[str], path: Path) -> Iterator[tuple[int, list[str]]]:
    """CSV rows with the line each ends on; a malformed row is an AnnotationError there."""
    reader = csv.reader(lines)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise AnnotationError(f"malformed CSV ({exc})", path, reader.line_num) from None
        yield reader.line_num, row


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, shortened: error messages stay one readable line whatever the file holds."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _number(text: str, what: str, path: Path, line: int | None) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise AnnotationError(f"{what} is not a number: {_shown(text)}", path, line) from None
    except OverflowError:  # a JSON integer beyond float's range
        raise AnnotationError(f"{what} is out of range: {_shown(text)}", path, line) from None
    if not math.isfinite(value):
        raise AnnotationError(f"{what} is not finite: {_shown(text)}", path, line)
    return value


def _segment(start: str, end: str, path: Path, line: int | None) -> tuple[float, float]:
    """A ground-truth segment: finite, non-negative, start < end (strict, unlike predictions)."""
    start_s = _number(start, "start", path, line)
    end_s = _number(end, "end", path, line)
    if start_s < 0:
        raise AnnotationError(f"negative start time {start_s}", path, line)
    if start_s >= end_s:
        raise AnnotationError(f"start {start_s} is not before end {end_s}", path, line)
    return start_s, end_s


def _strip_extension(video: str) -> str:
    """A submitted video name without its video suffix, as the official kits strip ".mpeg"
    (TH14evaldet.m) and ".mp4" (the S-CNN kit); the other suffixes are stripped alike."""
    for extension in VIDEO_SUFFIXES:
        if video.lower().endswith(extension):
            return video[: -len(extension)]
    return video


def _first_seen(labels) -> tuple[str, ...]:
    return tuple(dict.fromkeys(label for label in labels if label != AMBIGUOUS))


def _split_ambiguous(
    instances: list[Instance],
) -> tuple[tuple[Instance, ...], tuple[Instance, ...]]:
    real = tuple(i for i in instances if i.label != AMBIGUOUS)
    ambiguous = tuple(i for i in instances if i.label == AMBIGUOUS)
    return real, ambiguous


def _videos(*groups) -> tuple[str, ...]:
    return tuple(sorted({i.video for group in groups for i in group}))


# ---------------------------------------------------------------- class tables


def read_class_table(path: str | Path, id_column: str = "index") -> dict[int, str]:
    """Map the integer ids of ``id_column`` to the ``name`` column of a CSV with a header,
    like the bundled THUMOS14 table (``index,name,thumos14_id``, scnn.bundled_data)."""
    path = Path(path)
    rows = list(_csv_records(_read_lines(path), path))
    if not rows:
        raise AnnotationError("empty class table", path)
    header = [cell.strip() for cell in rows[0][1]]
    for column in ("name", id_column):
        if column not in header:
            raise AnnotationError(f"no column {column!r} (columns: {_shown(header, 80)})", path, 1)
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
            message = f"class id is not an integer: {_shown(row[id_at])}"
            raise AnnotationError(message, path, line) from None
        if class_id in table:
            raise AnnotationError(f"class id {class_id} listed twice", path, line)
        table[class_id] = row[name_at].strip()
    return table


# ---------------------------------------------------------------- THUMOS14 folders


def _thumos14_subset(folder: Path, subset: str | None) -> str:
    subsets = sorted({p.stem.rsplit("_", 1)[1] for p in folder.glob("*_*.txt")})
    if subset is not None:
        if subset not in subsets:
            raise AnnotationError(f"no <Class>_{subset}.txt files (subsets: {subsets})", folder)
        return subset
    if len(subsets) != 1:
        raise AnnotationError(f"choose a subset, the folder holds {subsets or 'none'}", folder)
    return subsets[0]


def _read_thumos14_folder(folder: Path, subset: str | None) -> GroundTruth:
    """A folder of ``<Class>_<subset>.txt`` files (``video start end``), as the kit reads it:
    the class list is the file names in sorted order (THUMOS14's 1..20 index)."""
    subset = _thumos14_subset(folder, subset)
    suffix = f"_{subset}.txt"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
    classes = tuple(sorted(p.name[: -len(suffix)] for p in files if p.name != AMBIGUOUS + suffix))
    instances: list[Instance] = []
    for path in [folder / f"{name}{suffix}" for name in classes] + [folder / (AMBIGUOUS + suffix)]:
        if not path.exists():
            continue
        label = path.name[: -len(suffix)]
        for line, text in enumerate(_read_lines(path), start=1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise AnnotationError(
                    f"expected 3 columns (video start end), got {len(fields)}", path, line
                )
            start_s, end_s = _segment(fields[1], fields[2], path, line)
            instances.append(Instance(fields[0], start_s, end_s, label))
    real, ambiguous = _split_ambiguous(instances)
    videos = _videos(real, ambiguous)
    return GroundTruth(classes, real, ambiguous, videos, {}, {v: subset for v in videos})


def _write_thumos14_folder(folder: Path, gt: GroundTruth) -> None:
    subsets = sorted({gt.subsets.get(v, THUMOS14_DEFAULT_SUBSET) for v in _all_videos(gt)})
    for subset in subsets or [THUMOS14_DEFAULT_SUBSET]:
        for label in (*gt.classes, AMBIGUOUS):
            group = gt.ambiguous if label == AMBIGUOUS else gt.instances
            lines = [
                f"{i.video} {i.start_s!r} {i.end_s!r}\n"
                for i in group
                if i.label == label and gt.subsets.get(i.video, THUMOS14_DEFAULT_SUBSET) == subset
            ]
            atomic_write_text(folder / f"{label}_{subset}.txt", "".join(lines))


def _all_videos(gt: GroundTruth) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*gt.videos, *(i.video for i in (*gt.instances, *gt.ambiguous)))))


# ---------------------------------------------------------------- ActivityNet JSON


def _load_json(path: Path, key: str) -> dict:
    try:
        data = json.loads("\n".join(_read_lines(path)) or "{}")
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"invalid JSON ({exc.msg})", path, exc.lineno) from None
    except RecursionError:
        raise AnnotationError("invalid JSON (nested too deeply)", path) from None
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise AnnotationError(f"no {key!r} object at the top level", path)
    return data[key]


def _json_segment(entry, path: Path, where: str) -> tuple[str, str]:
    segment = entry.get("segment") if isinstance(entry, dict) else None
    if not isinstance(segment, list) or len(segment) != 2:
        raise AnnotationError(f"{where}: 'segment' must be [start, end]", path)
    return segment[0], segment[1]


def _json_label(entry: dict, path: Path, where: str) -> str:
    label = entry.get("label")
    if not isinstance(label, str | int) or isinstance(label, bool):
        raise AnnotationError(f"{where}: 'label' must be a class name, got {_shown(label)}", path)
    return str(label)


def _json_list(value, path: Path, where: str) -> list:
    if not isinstance(value, list):
        raise AnnotationError(f"{where}: expected a list, got {type(value).__name__}", path)
    return value


def _read_activitynet_gt(path: Path, subset: str | None) -> GroundTruth:
    database = _load_json(path, "database")
    instances: list[Instance] = []
    durations: dict[str, float] = {}
    subsets: dict[str, str] = {}
    for video, entry in database.items():
        if not isinstance(entry, dict):
            raise AnnotationError(f"{video}: expected an object, got {type(entry).__name__}", path)
        if not isinstance(entry.get("subset", ""), str):
            raise AnnotationError(f"{video}: 'subset' must be a string", path)
        if subset is not None and entry.get("subset") != subset:
            continue
        if "subset" in entry:
            subsets[video] = entry["subset"]
        if "duration" in entry:
            durations[video] = _number(entry["duration"], f"{video}: duration", path, None)
        annotations = _json_list(entry.get("annotations", []), path, f"{video}: 'annotations'")
        for n, annotation in enumerate(annotations):
            where = f"{video} annotation {n}"
            start, end = _json_segment(annotation, path, where)
            try:
                start_s, end_s = _segment(start, end, path, None)
            except AnnotationError as exc:
                raise AnnotationError(f"{where}: {exc.message}", path) from None
            label = _json_label(annotation, path, where)
            instances.append(Instance(video, start_s, end_s, label))
    real, ambiguous = _split_ambiguous(instances)
    videos = tuple(v for v in database if subset is None or v in subsets)
    return GroundTruth(
        _first_seen(i.label for i in real), real, ambiguous, videos, durations, subsets
    )


def _write_activitynet_gt(path: Path, gt: GroundTruth) -> None:
    database: dict[str, dict] = {}
    for video in _all_videos(gt):
        entry: dict = {"annotations": []}
        if video in gt.subsets:
            entry["subset"] = gt.subsets[video]
        if video in gt.durations_s:
            entry["duration"] = gt.durations_s[video]
        database[video] = entry
    for i in (*gt.instances, *gt.ambiguous):
        database[i.video]["annotations"].append({"segment": [i.start_s, i.end_s], "label": i.label})
    taxonomy = [
        {"nodeId": n, "nodeName": name, "parentId": None, "parentName": None}
        for n, name in enumerate(gt.classes, start=1)
    ]
    data = {"version": "scnn", "taxonomy": taxonomy, "database": database}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


# ---------------------------------------------------------------- CSV


def _csv_rows(path: Path, with_score: bool) -> list[tuple[int, list[str]]]:
    """Data rows (with line numbers) of a ``video,start,end,label[,score]`` CSV."""
    rows = [(n, row) for n, row in _csv_records(_read_lines(path), path) if row]
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


def _read_csv_gt(path: Path, subset: str | None) -> GroundTruth:
    instances = []
    for line, row in _csv_rows(path, with_score=False):
        start_s, end_s = _segment(row[1], row[2], path, line)
        instances.append(Instance(row[0], start_s, end_s, row[3]))
    real, ambiguous = _split_ambiguous(instances)
    return GroundTruth(
        _first_seen(i.label for i in real), real, ambiguous, _videos(real, ambiguous)
    )


def _write_csv_gt(path: Path, gt: GroundTruth) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "start", "end", "label"])
    for i in (*gt.instances, *gt.ambiguous):
        writer.writerow([i.video, repr(i.start_s), repr(i.end_s), i.label])
    atomic_write_text(path, buffer.getvalue())


# ---------------------------------------------------------------- ground truth: dispatch


def _check_labels(gt: GroundTruth, path: Path) -> GroundTruth:
    known = set(gt.classes)
    for instance in gt.instances:
        if instance.label not in known:
            raise AnnotationError(
                f"unknown class {_shown(instance.label)} in {_shown(instance.video)}", path
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
    """Read ground truth: a folder is a THUMOS14 annotation folder, ``.json`` ActivityNet,
    ``.csv`` ``video,start,end,label``. ``subset`` picks THUMOS14 files or ActivityNet videos.
    With ``classes``, the class list is that one and any other label is an error."""
    path = Path(path)
    if path.is_dir():
        gt = _read_thumos14_folder(path, subset)
    elif path.suffix.lower() == ".json":
        gt = _read_activitynet_gt(path, subset)
    elif path.suffix.lower() == ".csv":
        gt = _read_csv_gt(path, subset)
    elif not path.exists():
        raise AnnotationError("no such file or folder", path)
    else:
        raise AnnotationError("unknown ground-truth format (use a folder, .json or .csv)", path)
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
        _write_activitynet_gt(path, gt)
    elif suffix == ".csv":
        _write_csv_gt(path, gt)
    elif suffix == "":
        _write_thumos14_folder(path, gt)
    else:
        raise AnnotationError("unknown ground-truth format (use a folder, .json or .csv)", path)


# ---------------------------------------------------------------- detections


def _resolve_label(
    token: str,
    classes: Sequence[str] | None,
    class_table: Mapping[int, str] | None,
    path: Path,
    line: int,
) -> str | None:
    """A class given as a name, a 1..K index into ``classes``, or an id of ``class_table``.
    Returns None for a numeric id the table lacks (the kit warns and skips such rows)."""
    try:
        class_id = int(token)
    except ValueError:
        if classes is not None and token not in classes:
            raise AnnotationError(f"unknown class {_shown(token)}", path, line) from None
        return token
    if class_table is not None:
        return class_table.get(class_id)
    if classes is None:
        raise AnnotationError(f"numeric class {class_id} needs a class list", path, line)
    return classes[class_id - 1] if 1 <= class_id <= len(classes) else None


def _read_thumos14_detections(path, classes, class_table) -> tuple[list[Detection], int]:
    """The submission format as the kit's ``textread('%s%f%f%d%f')`` reads it: whitespace
    (tabs or spaces) separated ``video start end class score``; a video extension is dropped."""
    detections, skipped = [], 0
    for line, text in enumerate(_read_lines(path), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise AnnotationError(
                f"expected 5 columns (video start end class score), got {len(fields)}", path, line
            )
        label = _resolve_label(fields[3], classes, class_table, path, line)
        if label is None:
            skipped += 1
            continue
        detections.append(
            Detection(
                _strip_extension(fields[0]),
                _number(fields[1], "start", path, line),
                _number(fields[2], "end", path, line),
                label,
                _number(fields[4], "score", path, line),
            )
        )
    return detections, skipped


def _read_activitynet_detections(path, classes, class_table) -> tuple[list[Detection], int]:
    detections = []
    for video, entries in _load_json(path, "results").items():
        for n, entry in enumerate(_json_list(entries, path, video)):
            where = f"{video} result {n}"
            start, end = _json_segment(entry, path, where)
            label = _json_label(entry, path, where)
            if classes is not None and label not in classes:
                raise AnnotationError(f"{where}: unknown class {_shown(label)}", path)
            detections.append(
                Detection(
                    video,
                    _number(start, f"{where}: start", path, None),
                    _number(end, f"{where}: end", path, None),
                    label,
                    _number(entry.get("score"), f"{where}: score", path, None),
                )
            )
    return detections, 0


def _read_csv_detections(path, classes, class_table) -> tuple[list[Detection], int]:
    detections, skipped = [], 0
    for line, row in _csv_rows(path, with_score=True):
        label = _resolve_label(row[3], classes, class_table, path, line)
        if label is None:
            skipped += 1
            continue
        detections.append(
            Detection(
                row[0],
                _number(row[1], "start", path, line),
                _number(row[2], "end", path, line),
                label,
                _number(row[4], "score", path, line),
            )
        )
    return detections, skipped


DETECTION_READERS = {
    ".txt": _read_thumos14_detections,
    ".json": _read_activitynet_detections,
    ".csv": _read_csv_detections,
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


def _write_thumos14_detections(path, detections, classes, videos) -> None:
    """``video start end class score``: times %.1f and scores to 5 significant digits, as the
    authors' files; the class is its 1..K index when ``classes`` is given, else its name."""
    index = {name: n for n, name in enumerate(classes or (), start=1)}
    lines = [
        f"{d.video} {d.start_s:.1f} {d.end_s:.1f} {index.get(d.label, d.label)} {d.score:.5g}\n"
        for d in detections
    ]
    atomic_write_text(path, "".join(lines))


def _write_activitynet_detections(path, detections, classes, videos) -> None:
    """Each video of ``videos`` is listed, with an empty list when it has no detection."""
    results: dict[str, list] = {video: [] for video in videos}
    for d in detections:
        results.setdefault(d.video, []).append(
            {"label": d.label, "score": d.score, "segment": [d.start_s, d.end_s]}
        )
    data = {"version": "scnn", "results": results, "external_data": {"used": False, "details": ""}}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _write_csv_detections(path, detections, classes, videos) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "start", "end", "label", "score"])
    for d in detections:
        writer.writerow([d.video, repr(d.start_s), repr(d.end_s), d.label, repr(d.score)])
    atomic_write_text(path, buffer.getvalue())


# Output writers by file extension, each ``(path, detections, classes, videos)``; add formats
# here. ``videos`` names every video processed, also those without a detection.
WRITERS = {
    ".txt": _write_thumos14_detections,
    ".json": _write_activitynet_detections,
    ".csv": _write_csv_detections,
    ".vtt": write_webvtt,
    ".srt": write_srt,
}
SUBTITLE_FORMATS = (".vtt", ".srt")  # one video per file


def get_writer(path: str | Path):
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
