"""H.264 MP4 writing: the one libx264 set-up behind the synthetic videos and the report's copies.

By default x264 takes its thread count from the CPUs the process may use, and the thread count
sets its slices or frame threads; its MB-tree rate control runs CPU-specific floating-point
kernels that x264 itself does not require to agree (SSE2 to AVX2 multiply by an approximate
reciprocal, AVX-512 divides). Either changes the bytes, and the decoded pixels, from one machine
to the next, so ``reproducible=True`` fixes the thread count and turns MB-tree off: the file
then depends only on the frames, the options and the FFmpeg build.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from scnn.fileio import atomic_write

X264_PRESET = "veryfast"
REPRODUCIBLE_THREADS = 2  # x264 frame threads when the output must not depend on the machine


def write_h264(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float | Fraction,
    size: tuple[int, int],
    crf: float,
    pix_fmt: str = "yuv420p",
    reproducible: bool = False,
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
        if reproducible:
            stream.codec_context.thread_type = "FRAME"
            stream.codec_context.thread_count = REPRODUCIBLE_THREADS
            options["x264-params"] = "mbtree=0"
        stream.options = options
        for picture in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
