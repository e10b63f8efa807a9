"""Opening a video, and the readers that take its frames from a position: each reader with an
open of its own, or several readers (CPU lanes) sharing one open of an MP4.

Every way a source can fail to open is raised as one :class:`VideoError` line.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import select
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np

from scnn.allocator import returned_when_freed
from scnn.errors import VideoError

READ_TIMEOUT_S = 10.0  # a file, pipe or device that sends no data for this long is given up
MAX_FRAME_PIXELS = 8192 * 8192  # larger declared frames are refused before any allocation
STDIN = "-"  # the source name that reads standard input
# A source that starts with a scheme (``http://``, ``rtsp://``, ``udp://``...) is a URL that
# FFmpeg opens with its own protocols; anything else is a path.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A segment's decoding starts at a keyframe at least this long before its first frame.
_SEEK_MARGIN_S = 1.0


def is_url(source: str | Path) -> bool:
    """Whether ``source`` names a URL for FFmpeg rather than a file (a Path never does)."""
    return isinstance(source, str) and _URL.match(source) is not None


def failure_reason(exc: BaseException, timeout_s: float | None = None) -> str:
    """Why FFmpeg or the system failed, in words: the message alone, not ``[Errno N]`` (an
    FFmpeg error code, e.g. 1094995529) nor the path, which the VideoError names. PyAV ends
    a read that waited ``timeout_s`` for data with FFmpeg's "Immediate exit requested"."""
    if isinstance(exc, av.ExitError) and timeout_s is not None:
        return f"no data for {timeout_s:g} s"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class _TimedPipe(io.RawIOBase):
    """A pipe or device whose reads give up after ``timeout_s`` seconds without data.

    FFmpeg's own timeout is checked between reads, so it cannot end a read() that blocks
    forever on a pipe nobody writes to; a non-blocking descriptor and select() can.
    """

    def __init__(self, path: Path, timeout_s: float):
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never blocks, even writerless
        self._timeout_s = timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            ready, _, _ = select.select([self._fd], [], [], self._timeout_s)
            if not ready:
                raise TimeoutError(f"no data for {self._timeout_s:g} s")
            try:
                data = os.read(self._fd, len(buffer))
            except BlockingIOError:
                continue
            buffer[: len(data)] = data
            return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def open_video(path: str | Path, timeout_s: float) -> av.container.InputContainer:
    """Open ``path`` for decoding, turning every way it can fail into one VideoError line.

    ``path`` may also be :data:`STDIN` (read like a pipe) or a URL (:func:`is_url`), which
    FFmpeg opens and reads with ``timeout_s`` as its timeout.
    """
    if is_url(path):
        try:
            with returned_when_freed():
                return av.open(str(path), mode="r", timeout=timeout_s)
        except (av.FFmpegError, OSError) as exc:
            reason = failure_reason(exc, timeout_s)
            raise VideoError(f"cannot open the stream ({reason})", path) from exc
    file = Path("/dev/stdin" if str(path) == STDIN else path)
    try:
        mode = file.stat().st_mode
    except FileNotFoundError:
        raise VideoError("no such file", path) from None
    except OSError as exc:  # e.g. a folder on the way that we may not enter
        raise VideoError(f"cannot access ({failure_reason(exc)})", path) from exc
    if stat.S_ISDIR(mode):
        raise VideoError("is a directory, not a video file", path)
    regular = stat.S_ISREG(mode)
    if regular and file.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)", path)
    source: str | _TimedPipe = str(file)
    try:
        if not regular:
            source = _TimedPipe(file, timeout_s)
        with returned_when_freed():  # an MP4's sample index, built here
            return av.open(source, mode="r", timeout=timeout_s)
    except (av.FFmpegError, OSError) as exc:
        if isinstance(source, _TimedPipe):
            source.close()
        raise VideoError(f"not a readable video file ({failure_reason(exc)})", path) from exc


def video_stream(container: av.container.InputContainer, path: str | Path) -> av.VideoStream:
    """The first video stream, with a decoder for its codec."""
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise VideoError(f"has no video stream (contains: {kinds})", path)
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoError("video codec unknown to FFmpeg: cannot decode", path)
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > MAX_FRAME_PIXELS:
        raise VideoError(
            f"declared frame size {width}x{height} is over the {MAX_FRAME_PIXELS:,}-pixel limit",
            path,
        )
    return stream


class SeekMissed(Exception):
    """A seek that cannot serve a segment: no timestamps, or a keyframe after its start."""


def _seek_before(
    container: av.container.InputContainer, stream: av.VideoStream, time_s: float
) -> float:
    """Seek to a keyframe at least _SEEK_MARGIN_S before ``time_s`` (counted from the first
    frame) and return the first frame's presentation time, the origin of every time."""
    try:
        first = next(container.decode(stream), None)
        if first is None or first.time is None:
            raise SeekMissed
        target_s = first.time + time_s - _SEEK_MARGIN_S
        if target_s <= first.time:
            raise SeekMissed
        container.seek(int(target_s / stream.time_base), stream=stream, backward=True)
    except (av.FFmpegError, OSError) as exc:
        raise SeekMissed from exc
    return first.time


def _decoded_frames(
    container: av.container.InputContainer, stream: av.VideoStream, path: str | Path
) -> Iterator[av.VideoFrame]:
    """The stream's frames. An HTTP response of no declared length, neither sized nor chunked,
    ends when the server closes the connection; FFmpeg reports that as an input/output error,
    which there is then nothing to tell from a cut: the end of the stream, with the frames the
    decoder still holds. A response that declared its length and stops short stays an error."""
    try:
        yield from container.decode(stream)
    except OSError as exc:
        http = urlsplit(str(path)).scheme in ("http", "https") and is_url(path)
        if not (http and exc.errno == errno.EIO and container.size < 0):
            raise
        for frame in stream.codec_context.decode(None):
            frame.time_base = stream.time_base  # as stream.decode sets it
            yield frame


class OwnFile:
    """A reader's own open of the video: its container, stream and the stream's decoder."""

    def __init__(self, path: str | Path, timeout_s: float):
        self.path = path
        self.container = open_video(path, timeout_s)
        try:
            self.stream = video_stream(self.container, path)
        except BaseException:
            self.container.close()
            raise
        self.decoder = self.stream.codec_context

    def __enter__(self) -> OwnFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.container.close()

    def seek_before(self, time_s: float) -> float:
        return _seek_before(self.container, self.stream, time_s)

    def frames(self) -> Iterator[av.VideoFrame]:
        return _decoded_frames(self.container, self.stream, self.path)


class SharedFile:
    """An MP4 or MOV file opened once for several readers (CPU lanes), who take its packets
    in turn, each from where it left off, and decode them with decoders of their own.

    Why: FFmpeg's MP4 demuxer holds the file's whole sample index for each open, about 55
    bytes a frame in use (9.6 MB for 2 hours at 25 fps) and more while it is built; opened
    once per lane, a long video's memory grew with the lanes. Other containers index sparsely
    (Matroska: 0.3 MB for the same 2 hours) and are opened by each reader.
    """

    BATCH_PACKETS = 64  # packets a reader takes at a time: a seek each time the reader changes

    def __init__(self, path: str | Path, container: av.container.InputContainer):
        self.path = path
        self.container = container
        self.stream = video_stream(container, path)
        self._lock = threading.Lock()
        self._reader: object | None = None  # whose place the demuxer is at
        self._packets: Iterator[av.Packet] = iter(())
        entries = self.stream.index_entries
        if not entries:
            raise _NotShareable
        self._first_dts = entries[0].timestamp
        self.stream.thread_count = 1  # its decoder serves this check only
        own = next(container.decode(self.stream), None)  # the stream's decoder, from the top
        decoder = self.new_decoder()
        reader = (frame for packet in self.packets(None) for frame in decoder.decode(packet))
        first = next(reader, None)
        if own is None or own.time is None or first is None or not _same_frame(own, first):
            raise _NotShareable
        self.first_time_s: float = own.time

    def new_decoder(self) -> av.CodecContext:
        """A decoder of the stream's codec, set up from the stream's parameters."""
        template = self.stream.codec_context
        decoder = av.CodecContext.create(template.codec, "r")
        decoder.extradata = template.extradata
        decoder.width, decoder.height = template.width, template.height
        return decoder

    def packets(self, seek_ts: int | None) -> Iterator[av.Packet]:
        """The video's packets for one reader: from the keyframe at or before ``seek_ts``
        (in the stream's time base), or from the first packet when None, to the end."""
        reader = object()
        last_dts: int | None = None
        while True:
            with self._lock:
                batch = self._take(reader, seek_ts, last_dts)
            yield from batch
            if len(batch) < self.BATCH_PACKETS or batch[-1].dts is None:
                return
            last_dts = batch[-1].dts

    def _take(self, reader: object, seek_ts: int | None, last_dts: int | None) -> list[av.Packet]:
        """The reader's next packets, the demuxer first put back where the reader left off
        when another reader moved it (every MP4 sample is in the index, seeking to any)."""
        if self._reader is not reader:
            if last_dts is not None:
                self.container.seek(last_dts, stream=self.stream, backward=True, any_frame=True)
            elif seek_ts is not None:
                self.container.seek(seek_ts, stream=self.stream, backward=True)
            else:
                self.container.seek(
                    self._first_dts, stream=self.stream, backward=True, any_frame=True
                )
            self._packets = self.container.demux(self.stream)
            self._reader = reader
            resumed = last_dts is not None
        else:
            resumed = False
        batch: list[av.Packet] = []
        for packet in self._packets:
            if resumed:  # the seek must land on the reader's last packet or before it
                resumed = False
                if packet.dts is None or packet.dts > last_dts:
                    raise VideoError("lost its place in the file, shared by readers", self.path)
            if last_dts is not None and packet.dts is not None and packet.dts <= last_dts:
                continue  # the packets up to the reader's last, after a seek to it
            batch.append(packet)
            if packet.dts is None or len(batch) == self.BATCH_PACKETS:
                break  # an empty, stampless packet ends the stream
        return batch


class _NotShareable(Exception):
    """A file whose readers cannot share one open: no timestamps, or a decoder made from the
    stream's parameters decodes its first picture differently (so each reader opens it)."""


def _same_frame(one: av.VideoFrame, other: av.VideoFrame) -> bool:
    """Whether two decoded frames hold the same picture at the same time, shown the same way."""
    return (
        (one.format.name, one.width, one.height) == (other.format.name, other.width, other.height)
        and (one.time, one.rotation) == (other.time, other.rotation)
        and (one.colorspace, one.color_range) == (other.colorspace, other.color_range)
        and np.array_equal(one.to_ndarray(format="rgb24"), other.to_ndarray(format="rgb24"))
    )


@contextlib.contextmanager
def shared_file(path: str | Path, timeout_s: float = READ_TIMEOUT_S) -> Iterator[SharedFile | None]:
    """The file opened once for several readers when it is an MP4 or MOV they can share
    (:class:`SharedFile`), else None: each reader then opens the file itself, and this open
    is closed at once, so that its index is not held beside theirs."""
    with open_video(path, timeout_s) as container:
        shared = None
        if "mov" in container.format.name.split(","):
            try:
                shared = SharedFile(path, container)
            except (_NotShareable, av.FFmpegError, OSError):
                shared = None
        if shared is None:
            container.close()
        yield shared


class SharedReader:
    """One reader of a :class:`SharedFile`: its packets, through a decoder of its own."""

    def __init__(self, shared: SharedFile):
        self.shared = shared
        self.container = shared.container
        self.stream = shared.stream
        self.decoder = shared.new_decoder()
        self._seek_ts: int | None = None

    def __enter__(self) -> SharedReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """The shared file stays open for the other readers."""

    def seek_before(self, time_s: float) -> float:
        """As :func:`_seek_before`: the reader's packets start at a keyframe at least
        _SEEK_MARGIN_S before ``time_s``; the first frame's time, the origin, is returned."""
        first_s = self.shared.first_time_s
        target_s = first_s + time_s - _SEEK_MARGIN_S
        if target_s <= first_s:
            raise SeekMissed
        self._seek_ts = int(target_s / self.stream.time_base)
        return first_s

    def frames(self) -> Iterator[av.VideoFrame]:
        for packet in self.shared.packets(self._seek_ts):
            yield from self.decoder.decode(packet)
