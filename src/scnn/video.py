"""Video decoding: any FFmpeg-readable file to RGB frames at a constant 25 fps and 171x128.

S-CNN works on frames at a constant rate (method.md §1), whatever rate the file was recorded at.
Output frame ``i`` shows the source frame on screen at time ``i / fps`` (frames are duplicated or
dropped), so frame numbers mean the same time in every video. Frames are streamed in chunks so
memory does not grow with the length of the video, and the file is decoded once, front to back.
Every failure, from a missing file to a truncated stream, is raised as :class:`VideoError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from scnn.errors import VideoError
from scnn.video_source import (
    READ_TIMEOUT_S,
    STDIN,
    OwnFile,
    SeekMissed,
    SharedFile,
    SharedReader,
    failure_reason,
    is_url,
    open_video,
    video_stream,
)

FPS = 25.0  # frames/s after resampling (method.md §1)
FRAME_SIZE = (171, 128)  # (width, height) in pixels after resizing (C3D convention)
CHUNK_FRAMES = 256  # output frames per yielded chunk
# Suffixes (any case) of the files a folder's videos are found by; also stripped from the video
# names of submitted detections (the official kits strip ".mpeg" and ".mp4").
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpeg", ".mpg", ".ts", ".flv")

# An output frame whose time lies within this fraction of a frame of a source frame's start
# counts as starting there: container timestamps are rounded (e.g. to 1 ms in WebM).
_TIME_TOLERANCE_FRAMES = 1e-3
# A stream that ends more than this before the duration its container declares is truncated.
_TRUNCATION_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's (first) video stream."""

    path: str
    duration_s: float
    native_fps: float
    native_frame_count: int  # from the container where it records one, else counted packets
    width: int
    height: int
    codec: str


def num_frames(info: VideoInfo, fps: float = FPS) -> int:
    """Number of frames ``iter_frames`` yields for this video at ``fps``: floor(duration x fps).

    Callers use it to reject videos shorter than the shortest window before decoding them.
    """
    return math.floor(info.duration_s * fps + _TIME_TOLERANCE_FRAMES)


def video_name(source: str | Path) -> str:
    """The name detections give a video: a file's stem, the stem of a URL's last path part
    (else its host), ``stdin`` for standard input; the same source always gets the same name."""
    if str(source) == STDIN:
        return "stdin"
    if is_url(source):
        parts = urlsplit(str(source))
        return Path(parts.path).stem or parts.hostname or parts.scheme
    return Path(source).stem


def probe(path: str | Path, timeout_s: float = READ_TIMEOUT_S) -> VideoInfo:
    """Read a video's duration, rate, frame count, size and codec without decoding pictures."""
    with open_video(path, timeout_s) as container:
        stream = video_stream(container, path)
        try:
            frame_count = stream.frames or sum(
                1 for packet in container.demux(stream) if packet.size > 0
            )
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"reading failed: {failure_reason(exc)}", path) from exc
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return VideoInfo(
            path=str(path),
            duration_s=_declared_duration_s(container, stream),
            native_fps=float(rate) if rate else 0.0,
            native_frame_count=frame_count,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
        )


def read_frames(
    path: str | Path,
    fps: float = FPS,
    size: tuple[int, int] = FRAME_SIZE,
    timeout_s: float = READ_TIMEOUT_S,
) -> np.ndarray:
    """The whole video as one (n, H, W, 3) uint8 RGB array: for short videos and frame caches."""
    chunks = list(iter_frames(path, fps=fps, size=size, timeout_s=timeout_s))
    if not chunks:
        width, height = size
        return np.zeros((0, height, width, 3), np.uint8)
    return np.concatenate(chunks)


def iter_frames(
    path: str | Path,
    fps: float = FPS,
    size: tuple[int, int] = FRAME_SIZE,
    chunk_frames: int = CHUNK_FRAMES,
    timeout_s: float = READ_TIMEOUT_S,
    *,
    start_frame: int = 0,
    stop_frame: int | None = None,
    decoder_threads: int = 0,
    shared: SharedFile | None = None,
) -> Iterator[np.ndarray]:
    """Yield consecutive (n, H, W, 3) uint8 RGB chunks of the video at a constant ``fps``.

    ``size`` is (width, height); FFmpeg scales each frame. Output frame ``i`` shows the last
    source frame whose presentation time (from the first frame) is <= ``i / fps``. The video
    ends at the last source frame's time plus its duration, and floor(end x fps) frames come
    out. Chunks hold ``chunk_frames`` frames, the last one fewer. A picture the container
    marks as rotated (phone videos) is turned upright before scaling.

    ``start_frame`` and ``stop_frame`` keep output frames [start, stop) only, the same
    frames a whole pass gives there; decoding then starts at a keyframe before
    ``start_frame`` (how several processes split one video, see :func:`iter_frames_parallel`).
    ``decoder_threads``: FFmpeg's threads for this stream (0: its choice, one per core).
    ``shared``: the file opened once for several readers (:class:`SharedFile`), which then
    read its packets in turn, each with a decoder of its own; else the file is opened here.

    Raises VideoError when the file cannot be opened, and, after yielding every frame that
    could be decoded, when decoding fails, no data arrives for ``timeout_s`` seconds (a
    stalled pipe), or the stream stops well before the duration the container declares (a
    truncated file).
    """
    settings = (path, fps, size, chunk_frames, timeout_s, start_frame, stop_frame, decoder_threads)
    try:
        yield from _decode(*settings, shared, seek=start_frame > 0)
    except SeekMissed:  # raised before the first yield: decode from the top instead
        yield from _decode(*settings, shared, seek=False)


def find_videos(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the video files (by suffix) directly inside given directories.

    Checked before any work is spent on them: a path that does not exist, a directory with no
    video file and two videos of one name are errors.
    """
    missing = [str(path) for path in paths if not Path(path).exists()]
    if missing:
        raise VideoError(f"no such file or folder: {', '.join(missing)}")
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise VideoError(f"no video files ({', '.join(VIDEO_SUFFIXES)})", path)
            found += videos
        else:
            found.append(path)
    names = [p.stem for p in found]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise VideoError(f"several videos share the name {clashes[0]!r}; rename one")
    return found


def video_finder(videos_dir: str | Path) -> Callable[[str], Path]:
    """The file of a named video among :func:`find_videos` of ``videos_dir``, listed once,
    now; a video without one is a VideoError naming it."""
    by_name = {path.stem: path for path in find_videos([videos_dir])}

    def file_of(video: str) -> Path:
        if video not in by_name:
            raise VideoError(
                f"no video file for '{video}' (suffixes {', '.join(VIDEO_SUFFIXES)})", videos_dir
            )
        return by_name[video]

    return file_of


def video_files(videos_dir: str | Path, videos: Iterable[str]) -> dict[str, Path]:
    """The file of each named video in ``videos_dir`` (:func:`video_finder`)."""
    file_of = video_finder(videos_dir)
    return {video: file_of(video) for video in videos}


def _decode(
    path: str | Path,
    fps: float,
    size: tuple[int, int],
    chunk_frames: int,
    timeout_s: float,
    start_frame: int,
    stop_frame: int | None,
    decoder_threads: int,
    shared: SharedFile | None,
    *,
    seek: bool,
) -> Iterator[np.ndarray]:
    """:func:`iter_frames`, seeking to a keyframe before ``start_frame`` when ``seek``;
    raises SeekMissed before yielding anything when the seek does not land before it."""
    width, height = size
    source = OwnFile(path, timeout_s) if shared is None else SharedReader(shared)
    with source:
        stream = source.stream
        source.decoder.thread_type = "AUTO"
        source.decoder.thread_count = decoder_threads
        scaler = VideoReformatter()  # one FFmpeg scaling context for the whole video
        origin_s = source.seek_before(start_frame / fps) if seek else None
        pending = _ChunkBuilder(chunk_frames, first=start_frame)  # decoded, not yet yielded
        emitted = 0  # output frames counted so far (yielded, pending, or before start_frame)
        previous: av.VideoFrame | None = None
        previous_s = 0.0
        gap_s = 1.0 / float(stream.guessed_rate or fps)  # fallback frame duration

        def show(frame: av.VideoFrame, count: int) -> Iterator[np.ndarray]:
            """Add the frame's picture as output frames emitted … emitted + count - 1 that
            fall in [start_frame, stop_frame); the chunks it fills."""
            first = max(emitted, start_frame)
            last = emitted + count if stop_frame is None else min(emitted + count, stop_frame)
            if last > first:
                yield from pending.add(_picture(frame, scaler, width, height), last - first)

        try:
            for frame in source.frames():
                time_s = _relative_time_s(frame, origin_s, previous, previous_s + gap_s)
                if origin_s is None:
                    origin_s = frame.time or 0.0
                if previous is None:  # 0 for a video's first frame; after a seek, its slot
                    emitted = _frames_before(time_s, fps)
                    if seek and (emitted > start_frame or frame.time is None):
                        raise SeekMissed
                else:
                    if time_s > previous_s:
                        gap_s = time_s - previous_s
                    count = _frames_before(time_s, fps) - emitted
                    yield from show(previous, count)
                    emitted += max(count, 0)
                previous, previous_s = frame, time_s
                if stop_frame is not None and emitted >= stop_frame:
                    break
        except (av.FFmpegError, OSError) as exc:
            yield from pending.rest()
            reason = failure_reason(exc, timeout_s)
            raise VideoError(
                f"decoding failed at {previous_s:.2f} s (output frame {emitted}): {reason}", path
            ) from exc
        reached_end = stop_frame is None or emitted < stop_frame
        if previous is not None and reached_end:
            end_s = previous_s + _frame_duration_s(previous, gap_s)
            total = math.floor(end_s * fps + _TIME_TOLERANCE_FRAMES)
            yield from show(previous, total - emitted)
            pending.cut(total)
        yield from pending.rest()
        if not reached_end:
            return
        declared_s = _declared_video_duration_s(source.container, stream)
        decoded_s = 0.0 if previous is None else end_s
        if decoded_s < declared_s - _TRUNCATION_TOLERANCE_S:
            raise VideoError(
                f"truncated: decoding stopped at {decoded_s:.2f} s (output frame "
                f"{math.floor(decoded_s * fps)}) of the {declared_s:.2f} s the file declares",
                path,
            )


def _relative_time_s(
    frame: av.VideoFrame, origin_s: float | None, previous: av.VideoFrame | None, guess_s: float
) -> float:
    """A frame's presentation time from the first frame; one gap after the last if unstamped."""
    if frame.time is None:
        return guess_s if previous is not None else 0.0
    return 0.0 if origin_s is None else frame.time - origin_s


def _frames_before(time_s: float, fps: float) -> int:
    """How many output frames have a time strictly before ``time_s`` (within tolerance)."""
    return max(0, math.ceil(time_s * fps - _TIME_TOLERANCE_FRAMES))


class _ChunkBuilder:
    """Output frames gathered into chunks of ``size``, each picture copied into its chunk as
    it comes: a chunk's pictures are not kept one by one until it is full, where they would
    lie scattered through the heap's free memory (benchmarks/speed/RESULTS.md). A full chunk
    is given out only once a frame after it arrives: the end of the video may cut frames
    (:meth:`cut`), never from a chunk given out."""

    def __init__(self, size: int, first: int) -> None:
        self.size = size
        self.first = first  # output frame number of the chunk's first frame
        self.chunk: np.ndarray | None = None
        self.filled = 0

    def add(self, picture: np.ndarray, count: int) -> Iterator[np.ndarray]:
        """Add ``count`` output frames showing ``picture``; the chunks they complete."""
        for _ in range(count):
            if self.filled == self.size:
                yield self.chunk
                self.chunk, self.filled, self.first = None, 0, self.first + self.size
            if self.chunk is None:
                self.chunk = np.empty((self.size, *picture.shape), picture.dtype)
            self.chunk[self.filled] = picture
            self.filled += 1

    def cut(self, stop: int) -> None:
        """Drop the frames from output frame ``stop`` on."""
        self.filled = min(self.filled, max(stop - self.first, 0))

    def rest(self) -> Iterator[np.ndarray]:
        """The frames not yet given out, as a last chunk (none if there are none)."""
        if self.filled:
            yield self.chunk[: self.filled]
        self.chunk, self.filled = None, 0


def _picture(frame: av.VideoFrame, scaler: VideoReformatter, width: int, height: int) -> np.ndarray:
    """The frame's upright picture, scaled to ``width`` × ``height`` RGB. ``frame.rotation``
    is the counterclockwise turn the container asks for.

    ``scaler`` is kept for the whole video: ``frame.to_ndarray(width=…)`` builds a new FFmpeg
    scaling context for every frame, which made scaling ~10x slower than decoding (171×128
    yuv444p: 340 → 1 900 frames/s decoded and scaled, the pictures identical).
    """
    quarter_turns = round(frame.rotation / 90) % 4
    if quarter_turns % 2:  # scale to the transposed size, so the turned picture fits
        width, height = height, width
    picture = scaler.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()
    if quarter_turns:
        picture = np.rot90(picture, quarter_turns)
    return picture


def _frame_duration_s(frame: av.VideoFrame, gap_s: float) -> float:
    """A frame's display duration: its own where the container records one, else the last gap."""
    if frame.duration and frame.time_base is not None:
        return float(frame.duration * frame.time_base)
    return gap_s


def _declared_duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """The video stream's duration as the container states it (0 where it states none)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * Fraction(stream.time_base))
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _declared_video_duration_s(
    container: av.container.InputContainer, stream: av.VideoStream
) -> float:
    """The duration the container declares for the video alone (0 where it is not known).

    A container-wide duration also covers audio, which may run longer than the video, so it
    counts only when the video is the container's one stream.
    """
    if stream.duration is None and len(container.streams) > 1:
        return 0.0
    return _declared_duration_s(container, stream)
