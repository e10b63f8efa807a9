"""Parsing helpers the format modules share: text lines, CSV records, checked numbers and
segments, class tokens, and the grouping of instances into a ground truth.

Every problem is an AnnotationError naming the file (and the line, where there is one).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from scnn.errors import AnnotationError
from scnn.records import AMBIGUOUS, Detection, GroundTruth, Instance
from scnn.video import VIDEO_SUFFIXES


def read_lines(path: Path) -> list[str]:
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


def csv_records(lines: Iterable[str], path: Path) -> Iterator[tuple[int, list[str]]]:
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


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, shortened: error messages stay one readable line whatever the file holds."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def number(text: str, what: str, path: Path, line: int | None) -> float:
    """A finite float, or an AnnotationError saying which value (``what``) is wrong."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise AnnotationError(f"{what} is not a number: {shown(text)}", path, line) from None
    except OverflowError:  # a JSON integer beyond float's range
        raise AnnotationError(f"{what} is out of range: {shown(text)}", path, line) from None
    if not math.isfinite(value):
        raise AnnotationError(f"{what} is not finite: {shown(text)}", path, line)
    return value


def segment(start: str, end: str, path: Path, line: int | None) -> tuple[float, float]:
    """A ground-truth segment: finite, non-negative, start < end (strict, unlike predictions)."""
    start_s = number(start, "start", path, line)
    end_s = number(end, "end", path, line)
    if start_s < 0:
        raise AnnotationError(f"negative start time {start_s}", path, line)
    if start_s >= end_s:
        raise AnnotationError(f"start {start_s} is not before end {end_s}", path, line)
    return start_s, end_s


def detection(
    video: str, fields: Sequence[str], label: str, path: Path, line: int | None, where: str = ""
) -> Detection:
    """A detection from its start, end and score as written (``fields``), each checked as a
    number; ``where`` prefixes the error messages where a line number does not say it."""
    start, end, score = (
        number(text, f"{where}{what}", path, line)
        for text, what in zip(fields, ("start", "end", "score"), strict=True)
    )
    return Detection(video, start, end, label, score)


def strip_extension(video: str) -> str:
    """A submitted video name without its video suffix, as the official kits strip ".mpeg"
    (TH14evaldet.m) and ".mp4" (the S-CNN kit); the other suffixes are stripped alike."""
    for extension in VIDEO_SUFFIXES:
        if video.lower().endswith(extension):
            return video[: -len(extension)]
    return video


def resolve_label(
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
            raise AnnotationError(f"unknown class {shown(token)}", path, line) from None
        return token
    if class_table is not None:
        return class_table.get(class_id)
    if classes is None:
        raise AnnotationError(f"numeric class {class_id} needs a class list", path, line)
    return classes[class_id - 1] if 1 <= class_id <= len(classes) else None


def first_seen(labels: Iterable[str]) -> tuple[str, ...]:
    """The class list of a format without one: labels in order of first appearance."""
    return tuple(dict.fromkeys(label for label in labels if label != AMBIGUOUS))


def split_ambiguous(
    instances: list[Instance],
) -> tuple[tuple[Instance, ...], tuple[Instance, ...]]:
    """(real instances, Ambiguous intervals), each in file order."""
    real = tuple(i for i in instances if i.label != AMBIGUOUS)
    ambiguous = tuple(i for i in instances if i.label == AMBIGUOUS)
    return real, ambiguous


def sorted_videos(*groups: Iterable[Instance]) -> tuple[str, ...]:
    """The videos of the instances, sorted: the video list of a format without one."""
    return tuple(sorted({i.video for group in groups for i in group}))


def all_videos(gt: GroundTruth) -> tuple[str, ...]:
    """Every video a writer lists: ``gt.videos``, then any other with an instance."""
    return tuple(dict.fromkeys((*gt.videos, *(i.video for i in (*gt.instances, *gt.ambiguous)))))
