"""One long video decoded by several processes at once, a time segment each.

One FFmpeg stream decodes and scales a few thousand small frames per second, while one GPU
scores clips for several times that much video (benchmarks/speed/RESULTS.md), so on a machine with
many cores the detector decodes a long video in segments: worker ``k`` seeks to a keyframe
before segment ``k`` and decodes it with :func:`scnn.video.iter_frames`' own resampling rule,
and the segments come back in order. The frames are the same as one sequential pass
(tests/test_parallel_decode.py); memory holds at most ``processes + 1`` segments.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import pairwise
from pathlib import Path

import numpy as np

from scnn.errors import VideoError
from scnn.video import CHUNK_FRAMES, FPS, FRAME_SIZE, iter_frames, num_frames, probe
from scnn.video_source import READ_TIMEOUT_S

SEGMENT_S = 60.0  # seconds of video per task
# fork starts a worker in milliseconds and needs no ``if __name__ == "__main__"`` guard in the
# caller's script (the workers only run FFmpeg, as DataLoader workers do); spawn elsewhere.
_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def iter_frames_parallel(
    path: str | Path,
    processes: int,
    fps: float = FPS,
    size: tuple[int, int] = FRAME_SIZE,
    chunk_frames: int = CHUNK_FRAMES,
    timeout_s: float = READ_TIMEOUT_S,
    segment_s: float = SEGMENT_S,
) -> Iterator[np.ndarray]:
    """:func:`scnn.video.iter_frames`' chunks, decoded by ``processes`` worker processes.

    A video shorter than two segments, a pipe, or ``processes`` < 2 is decoded in this
    process. Errors come as from ``iter_frames``: the frames before the failure first.
    """
    segment_frames = max(1, round(segment_s * fps))
    parallel = processes > 1 and Path(path).is_file()
    total = num_frames(probe(path, timeout_s), fps) if parallel else 0
    if total < 2 * segment_frames:
        yield from iter_frames(path, fps, size, chunk_frames, timeout_s)
        return
    starts = list(range(0, total - segment_frames // 2, segment_frames))
    bounds: list[tuple[int, int | None]] = list(pairwise(starts))
    bounds.append((starts[-1], None))  # the last segment runs to the stream's true end
    threads = max(1, (os.cpu_count() or 1) // processes)
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(_START_METHOD))
    waiting: deque[Future] = deque()
    try:
        for start, stop in bounds:
            waiting.append(
                pool.submit(
                    _decode_segment, path, fps, size, chunk_frames, timeout_s, start, stop, threads
                )
            )
            if len(waiting) > processes:
                yield from _result(waiting.popleft(), path)
        while waiting:
            yield from _result(waiting.popleft(), path)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _decode_segment(
    path: str | Path,
    fps: float,
    size: tuple[int, int],
    chunk_frames: int,
    timeout_s: float,
    start: int,
    stop: int | None,
    threads: int,
) -> tuple[list[np.ndarray], str | None]:
    """A worker's segment: its chunks, and the error that ended it (None if none)."""
    chunks: list[np.ndarray] = []
    segment = iter_frames(
        path,
        fps,
        size,
        chunk_frames,
        timeout_s,
        start_frame=start,
        stop_frame=stop,
        decoder_threads=threads,
    )
    try:
        chunks.extend(segment)
    except VideoError as exc:
        return chunks, exc.message
    return chunks, None


def _result(future: Future, path: str | Path) -> Iterator[np.ndarray]:
    try:
        chunks, error = future.result()
    except BrokenProcessPool as exc:  # a worker killed (out of memory, a signal)
        raise VideoError("a decoding process died", path) from exc
    yield from chunks
    if error is not None:
        raise VideoError(error, path)
