"""Videos for the report: a copy a browser plays beside each page, and a safe file stem per video.

A file Chromium and Firefox play as it is gets copied; any other gets re-encoded to H.264
(yuv420p) MP4, decoded as ``scnn detect`` decodes it, so detection times match the player's.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import av

from scnn.encode import write_h264
from scnn.errors import VideoError
from scnn.fileio import atomic_write
from scnn.video import iter_frames, probe
from scnn.video_source import failure_reason

log = logging.getLogger(__name__)

MAX_VIDEO_HEIGHT_PX = 360  # re-encoded copies are scaled down to at most this height
REENCODE_FPS = 25  # frames/s of re-encoded copies (scnn's own timeline: frame i at i/25 s)
X264_CRF = 28  # libx264 quality of re-encoded copies: small files, fine for looking
MEDIA_DIR = "media"
# What Chromium and Firefox play without plugins: (container, video codecs, audio codecs).
PLAYABLE = {
    ".mp4": ({"h264"}, {"aac", "mp3"}),
    ".m4v": ({"h264"}, {"aac", "mp3"}),
    ".webm": ({"vp8", "vp9", "av1"}, {"opus", "vorbis"}),
}
PLAYABLE_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}


def is_browser_playable(path: str | Path) -> bool:
    """True for H.264 (4:2:0) MP4 and VP8/VP9/AV1 WebM with browser audio codecs, if any."""
    path = Path(path)
    codecs = PLAYABLE.get(path.suffix.lower())
    if codecs is None:
        return False
    video_codecs, audio_codecs = codecs
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False
            video = container.streams.video[0].codec_context
            audio = {s.codec_context.name for s in container.streams.audio}
            pixel_format = video.format.name if video.format else ""
            return (
                video.name in video_codecs
                and pixel_format in PLAYABLE_PIXEL_FORMATS
                and video.width % 2 == 0
                and video.height % 2 == 0
                and audio <= audio_codecs
            )
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open: {failure_reason(exc)}", path) from exc


def reencoded_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a re-encoded copy: the source's aspect, at most MAX_VIDEO_HEIGHT_PX
    high, both even (H.264 4:2:0 needs even sides)."""
    scale = min(1.0, MAX_VIDEO_HEIGHT_PX / height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def reencode(source: str | Path, target: str | Path) -> None:
    """Write an H.264 (yuv420p) MP4 of ``source`` without audio, at REENCODE_FPS and
    :func:`reencoded_size`, decoded as ``scnn detect`` decodes it so detection times match."""
    info = probe(source)
    size = reencoded_size(info.width, info.height)
    chunks = iter_frames(source, fps=REENCODE_FPS, size=size)
    frames = (picture for chunk in chunks for picture in chunk)
    write_h264(target, frames, fps=REENCODE_FPS, size=size, crf=X264_CRF)


def _copy(source: Path, target: Path) -> None:
    with source.open("rb") as reader, atomic_write(target, "wb") as writer:
        shutil.copyfileobj(reader, writer)


def prepare_video(source: Path, out: Path, stem: str) -> tuple[str | None, str]:
    """Put a playable copy of ``source`` under ``out/media``: (relative path, note). A file
    that cannot be read gives no path and a note saying why: one bad video spoils no report."""
    try:
        if is_browser_playable(source):
            relative = f"{MEDIA_DIR}/{stem}{source.suffix.lower()}"
            _copy(source, out / relative)
            return relative, f"copied from {source.name}"
        info = probe(source)
        relative = f"{MEDIA_DIR}/{stem}.mp4"
        reencode(source, out / relative)
        return relative, (
            f"re-encoded to H.264 without audio from {source.name} ({info.codec}, "
            f"{info.width}x{info.height})"
        )
    except VideoError as exc:
        log.warning("report: %s", exc)
        return None, f"video unavailable: {exc}"


def file_stems(names: Sequence[str]) -> dict[str, str]:
    """A distinct, URL- and file-system-safe stem per video name (never ``index``)."""
    stems: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "video"
        candidate, n = stem, 1
        while candidate.lower() in used or candidate.lower() == "index":
            n += 1
            candidate = f"{stem}_{n}"
        used.add(candidate.lower())
        stems[name] = candidate
    return stems
