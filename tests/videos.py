"""Make small real video files for tests, with the frame number drawn into every picture.

Each picture carries its source frame number as a 12-bit bar code of large black/white
blocks (4 columns x 3 rows, most significant bit top left), which survives lossy codecs and
resizing, so a test can read back which source frame a decoded frame shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CODE_COLUMNS = 4
CODE_ROWS = 3
CODE_BITS = CODE_COLUMNS * CODE_ROWS

# pixel format each test codec encodes to
PIX_FMTS = {"libx264": "yuv420p", "libvpx-vp9": "yuv420p", "mjpeg": "yuvj420p"}


def numbered_frames(count: int, width: int = 64, height: int = 48) -> np.ndarray:
    """(count, height, width, 3) uint8 RGB pictures; picture k shows k as a bar code."""
    rows = np.linspace(0, height, CODE_ROWS + 1).round().astype(int)
    columns = np.linspace(0, width, CODE_COLUMNS + 1).round().astype(int)
    frames = np.zeros((count, height, width, 3), np.uint8)
    for number in range(count):
        for bit in range(CODE_BITS):
            if number >> (CODE_BITS - 1 - bit) & 1:
                row, column = divmod(bit, CODE_COLUMNS)
                frames[number, rows[row] : rows[row + 1], columns[column] : columns[column + 1]] = (
                    255
                )
    return frames


def read_numbers(frames: np.ndarray) -> np.ndarray:
    """The number drawn in each (n, H, W, 3) picture by :func:`numbered_frames`, at any size."""
    height, width = frames.shape[1:3]
    numbers = np.zeros(len(frames), int)
    for bit in range(CODE_BITS):
        row, column = divmod(bit, CODE_COLUMNS)
        y = int((row + 0.5) * height / CODE_ROWS)
        x = int((column + 0.5) * width / CODE_COLUMNS)
        patch = frames[:, y - 2 : y + 3, x - 2 : x + 3].reshape(len(frames), -1)
        numbers = numbers * 2 + (patch.mean(axis=1) > 127)
    return numbers


def write_video(
    path: Path,
    frames: np.ndarray,
    rate: Fraction | int = 25,
    codec: str = "libx264",
    pts_ms: Sequence[int] | None = None,
    pix_fmt: str | None = None,
) -> Path:
    """Encode RGB ``frames`` to ``path`` (container from the suffix) at a constant ``rate``,
    or, with ``pts_ms``, showing frame k at ``pts_ms[k]`` milliseconds (variable rate).
    Odd sizes need a pixel format without chroma subsampling (e.g. "yuv444p").
    """
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt or PIX_FMTS[codec]
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for index, picture in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if pts_ms is not None:
                frame.pts = pts_ms[index]
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_audio(path: Path, duration_s: float = 1.0) -> Path:
    """An audio-only file of silence (AAC in the container given by the suffix)."""
    sample_rate = 8000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        samples = np.zeros((1, int(duration_s * sample_rate)), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
