"""Detections as subtitles (WebVTT, SRT): a video player then shows the actions as captions.

Cues are ordered by start time and may overlap; each reads "label (score)".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scnn.errors import AnnotationError
from scnn.fileio import atomic_write_text
from scnn.records import Detection


def _timestamp(seconds: float, decimal: str) -> str:
    """HH:MM:SS.mmm (WebVTT, ``decimal='.'``) or HH:MM:SS,mmm (SRT, ``decimal=','``)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cues(path: Path, detections: Sequence[Detection], decimal: str) -> list[str]:
    videos = {d.video for d in detections}
    if len(videos) > 1:
        raise AnnotationError(
            f"a subtitle file holds one video, got detections for {len(videos)}", path
        )
    ordered = sorted(detections, key=lambda d: (d.start_s, -d.score))
    return [
        f"{n}\n{_timestamp(d.start_s, decimal)} --> {_timestamp(d.end_s, decimal)}\n"
        f"{d.label} ({d.score:.2f})\n"
        for n, d in enumerate(ordered, start=1)
    ]


def write_webvtt(
    path: Path,
    detections: Sequence[Detection],
    classes: Sequence[str] | None = None,
    videos: Sequence[str] = (),
) -> None:
    """A WebVTT file of one video's detections (``classes``, ``videos``: the writers' shape)."""
    atomic_write_text(path, "WEBVTT\n\n" + "\n".join(_cues(path, detections, ".")))


def write_srt(
    path: Path,
    detections: Sequence[Detection],
    classes: Sequence[str] | None = None,
    videos: Sequence[str] = (),
) -> None:
    """An SRT file of one video's detections (``classes``, ``videos``: the writers' shape)."""
    atomic_write_text(path, "\n".join(_cues(path, detections, ",")))
