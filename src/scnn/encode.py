"""H.264 MP4 writing: the one libx264 set-up behind the synthetic videos and the report's copies."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from scnn.fileio import atomic_write

X264_PRESET = "veryfast"


def write_h264(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float | Fraction,
    size: tuple[int, int],
    crf: float,
    pix_fmt: str = "yuv420p",
) -> None:
    """Encode (H, W, 3) uint8 RGB frames as an H.264 MP4 without audio, atomically.

    ``size`` is (width, height); 4:2:0 ``pix_fmt`` needs both even. ``crf``: libx264's constant
    rate factor (lower is better quality, larger files).
    """
    options = {"preset": X264_PRESET, "crf": f"{crf:g}"}
    with atomic_write(path, "wb") as handle, av.open(handle, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        stream.options = options
        for picture in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
