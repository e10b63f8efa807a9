"""The windows CSV (plain, or gzip for ``.gz``): the windows scored by the localization
network, one row per window, as the authors' ``scnn_c3d_test_windows.csv.gz``.

Frames are 1-based at 25 fps, as the authors'; times are seconds. Windows scored with a
boundary network have two more columns: the seconds their start and end move by.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TextIO

import numpy as np

from scnn.errors import AnnotationError
from scnn.fileio import atomic_write_bytes
from scnn.formats.parsing import csv_records, number, shown
from scnn.records import ScoredWindows

BACKGROUND = "background"
WINDOWS_COLUMNS = (
    "video",
    "window_frames",
    "start_frame",
    "end_frame",
    "start_s",
    "end_s",
    "loc_class",
    "loc_score",
)
OFFSET_COLUMNS = ("start_offset_s", "end_offset_s")  # also ScoredWindows' names for them
MAX_FRAMES = 2**53  # frame numbers beyond this are not whole numbers as floats: a corrupt file


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _label_index(token: str, classes: Sequence[str], path: Path, line: int) -> int:
    try:
        index = int(token)
    except ValueError:
        if token == BACKGROUND:
            return 0
        if token in classes:
            return classes.index(token) + 1
        raise AnnotationError(f"unknown class {shown(token)}", path, line) from None
    if not 0 <= index <= len(classes):
        raise AnnotationError(f"class index {index} not in 0..{len(classes)}", path, line)
    return index


def _frame(text: str, what: str, path: Path, line: int) -> int:
    """A frame number or count: a whole number below MAX_FRAMES."""
    value = number(text, what, path, line)
    if value != int(value) or not 0 <= value < MAX_FRAMES:
        raise AnnotationError(f"{what} is not a frame number: {shown(text)}", path, line)
    return int(value)


def read_windows_csv(path: str | Path, classes: Sequence[str]) -> ScoredWindows:
    """Read a windows CSV (gzip or plain); ``loc_class`` is 0 (background) or a 1..K index
    into ``classes``, or a class name or "background"."""
    path = Path(path)
    classes = tuple(classes)
    try:
        with _open_text(path) as handle:
            rows = list(csv_records(handle, path))
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise AnnotationError(f"cannot read windows CSV ({exc})", path) from exc
    header = tuple(c.strip() for c in rows[0][1]) if rows else ()
    if header not in (WINDOWS_COLUMNS, WINDOWS_COLUMNS + OFFSET_COLUMNS):
        raise AnnotationError(
            f"header must be {','.join(WINDOWS_COLUMNS)}, optionally then "
            f"{','.join(OFFSET_COLUMNS)}",
            path,
            1,
        )
    columns: list[list] = [[] for _ in header]
    for line, row in rows[1:]:
        if not row:
            continue
        if len(row) != len(header):
            raise AnnotationError(f"expected {len(header)} columns, got {len(row)}", path, line)
        columns[0].append(row[0])
        for n in (1, 2, 3):
            columns[n].append(_frame(row[n], header[n], path, line))
        for n in (4, 5, 7, *range(len(WINDOWS_COLUMNS), len(header))):
            columns[n].append(number(row[n], header[n], path, line))
        columns[6].append(_label_index(row[6], classes, path, line))
    offsets = [np.array(c, dtype=np.float64) for c in columns[len(WINDOWS_COLUMNS) :]] or [None] * 2
    return ScoredWindows(
        videos=np.array(columns[0], dtype=str),
        window_frames=np.array(columns[1], dtype=np.int64),
        start_frame=np.array(columns[2], dtype=np.int64),
        end_frame=np.array(columns[3], dtype=np.int64),
        start_s=np.array(columns[4], dtype=np.float64),
        end_s=np.array(columns[5], dtype=np.float64),
        label_index=np.array(columns[6], dtype=np.int64),
        score=np.array(columns[7], dtype=np.float64),
        classes=classes,
        start_offset_s=offsets[0],
        end_offset_s=offsets[1],
    )


def write_windows_csv(path: str | Path, windows: ScoredWindows) -> None:
    """Write ``windows`` in the columns :func:`read_windows_csv` reads (gzip for ``.gz``).

    ``loc_class`` is written as the class name (``background`` for 0), so the file needs no
    class table to be read back. Windows with a boundary network's offsets get their columns
    too."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    moves = windows.start_offset_s, windows.end_offset_s
    moved = moves[0] is not None and moves[1] is not None
    writer.writerow(WINDOWS_COLUMNS + OFFSET_COLUMNS if moved else WINDOWS_COLUMNS)
    for n, row in enumerate(
        zip(
            windows.videos,
            windows.window_frames,
            windows.start_frame,
            windows.end_frame,
            windows.start_s,
            windows.end_s,
            windows.label_index,
            windows.score,
            strict=True,
        )
    ):
        writer.writerow(
            [
                row[0],
                *(int(v) for v in row[1:4]),
                *(repr(float(v)) for v in row[4:6]),
                windows.classes[row[6] - 1] if row[6] > 0 else BACKGROUND,
                repr(float(row[7])),
                *((repr(float(moves[0][n])), repr(float(moves[1][n]))) if moved else ()),
            ]
        )
    data = buffer.getvalue().encode()
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def concat_windows(parts: Sequence[ScoredWindows], classes: tuple[str, ...]) -> ScoredWindows:
    """The rows of several ScoredWindows (one per video, say) as one, in order."""
    columns = [f.name for f in fields(ScoredWindows) if f.name not in ("classes", *OFFSET_COLUMNS)]
    if not parts:
        empty = {
            name: np.zeros(0, dtype=object if name == "videos" else np.int64) for name in columns
        }
        return ScoredWindows(**empty, classes=classes)
    moved = any(p.start_offset_s is not None for p in parts)
    offsets = {
        name: np.concatenate([_offsets(p, name) for p in parts]) if moved else None
        for name in OFFSET_COLUMNS
    }
    return ScoredWindows(
        **{name: np.concatenate([getattr(p, name) for p in parts]) for name in columns},
        classes=classes,
        **offsets,
    )


def _offsets(windows: ScoredWindows, name: str) -> np.ndarray:
    """The ``name`` offsets of ``windows`` (0 for windows scored without a boundary network)."""
    values = getattr(windows, name)
    return np.zeros(len(windows)) if values is None else values
