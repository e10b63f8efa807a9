"""The windows CSV (plain, or gzip for ``.gz``): the windows scored by the localization
network, one row per window, as the authors' ``scnn_c3d_test_windows.csv.gz``.

Frames are 1-based at 25 fps, as the authors'; times are seconds.
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
    if not rows or tuple(c.strip() for c in rows[0][1]) != WINDOWS_COLUMNS:
        raise AnnotationError(f"header must be {','.join(WINDOWS_COLUMNS)}", path, 1)
    columns: list[list] = [[] for _ in WINDOWS_COLUMNS]
    for line, row in rows[1:]:
        if not row:
            continue
        if len(row) != len(WINDOWS_COLUMNS):
            raise AnnotationError(
                f"expected {len(WINDOWS_COLUMNS)} columns, got {len(row)}", path, line
            )
        columns[0].append(row[0])
        for n in (1, 2, 3):
            columns[n].append(_frame(row[n], WINDOWS_COLUMNS[n], path, line))
        for n in (4, 5, 7):
            columns[n].append(number(row[n], WINDOWS_COLUMNS[n], path, line))
        columns[6].append(_label_index(row[6], classes, path, line))
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
    )


def write_windows_csv(path: str | Path, windows: ScoredWindows) -> None:
    """Write ``windows`` in the columns :func:`read_windows_csv` reads (gzip for ``.gz``).

    ``loc_class`` is written as the class name (``background`` for 0), so the file needs no
    class table to be read back."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(WINDOWS_COLUMNS)
    for row in zip(
        windows.videos,
        windows.window_frames,
        windows.start_frame,
        windows.end_frame,
        windows.start_s,
        windows.end_s,
        windows.label_index,
        windows.score,
        strict=True,
    ):
        writer.writerow(
            [
                row[0],
                *(int(v) for v in row[1:4]),
                *(repr(float(v)) for v in row[4:6]),
                windows.classes[row[6] - 1] if row[6] > 0 else BACKGROUND,
                repr(float(row[7])),
            ]
        )
    data = buffer.getvalue().encode()
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def concat_windows(parts: Sequence[ScoredWindows], classes: tuple[str, ...]) -> ScoredWindows:
    """The rows of several ScoredWindows (one per video, say) as one, in order."""
    columns = [f.name for f in fields(ScoredWindows) if f.name != "classes"]
    if not parts:
        empty = {
            name: np.zeros(0, dtype=object if name == "videos" else np.int64) for name in columns
        }
        return ScoredWindows(**empty, classes=classes)
    return ScoredWindows(
        **{name: np.concatenate([getattr(p, name) for p in parts]) for name in columns},
        classes=classes,
    )
