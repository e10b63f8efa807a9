"""CPU lanes: one long video scored as time segments, a thread each, every thread decoding its
own segment and running the networks with its share of the torch threads.

Why: on a 2-core machine, one torch thread per network call and one FFmpeg thread per segment
keep both cores busy without OpenMP's threads waiting on each other while FFmpeg holds a core:
detection 47x -> 53x real time (benchmarks/speed/RESULTS.md). The windows, labels and scores are
those of one pass (tests/test_lanes.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from scnn.modelfile import LoadedModel
from scnn.pipeline import Networks, Segment, score_segment, scored_steps, scored_windows
from scnn.records import ScoredWindows
from scnn.runtime import chunk_frames_for
from scnn.video import iter_frames, num_frames, probe
from scnn.video_source import SharedFile, shared_file

LANE_MIN_S = 60.0  # seconds of video per lane, at least: each lane decodes a longest window more
# Lanes by default: one per torch thread, at most this many (each holds its own frame buffer
# and activations, and decodes its lead-in); the torch threads are shared out among them.
MAX_LANES = 8


def lane_ends(
    video: str | Path, lanes: int, model: LoadedModel, total_frames: int | None = None
) -> list[int]:
    """The last window end frame of each lane: one lane (``[0]``, to the video's end) unless
    ``lanes`` (0: one per torch thread, at most MAX_LANES) allows several and the file is long
    enough to give each at least LANE_MIN_S of video. ``total_frames``, the video's frame count
    at the model's fps, spares probing the file again when the caller has done it."""
    lanes = lanes or min(torch.get_num_threads(), MAX_LANES)
    if lanes < 2 or not Path(video).is_file():
        return [0]
    if total_frames is None:
        total_frames = num_frames(probe(video), model.fps)
    lanes = min(lanes, int(total_frames // (LANE_MIN_S * model.fps)))
    if lanes < 2:
        return [0]
    # Each lane after the first also decodes a longest window's frames before its own
    # (and from the keyframe before those), at about a third of the cost of scoring a
    # frame (CPU model): the first lane takes that much more (2 lanes, 120 s: 50 -> 53x).
    lead_in = max(model.windows.lengths_frames) / 3
    share = (total_frames + (lanes - 1) * lead_in) / lanes
    return [round(share + k * (share - lead_in)) for k in range(lanes - 1)] + [0]


def score_lanes(
    video: str | Path,
    ends: list[int],
    networks: Networks,
    model: LoadedModel,
    progress: Callable[[int], None] | None = None,
    background: bool = True,
) -> ScoredWindows:
    """Score each lane's windows (``ends`` from :func:`lane_ends`) in its own thread, which
    also decodes its segment (a decoding thread per lane was slower: 4 busy threads on 2
    cores), with the torch threads shared out among the lanes for the call. An MP4 is opened
    once for all lanes (:class:`scnn.video_source.SharedFile`). The first failure stops the
    others. Without ``background``, the windows labelled background are left out."""
    longest = max(model.windows.lengths_frames)
    failed = threading.Event()

    def lane(first_end: int, last_end: int, shared: SharedFile | None) -> Segment:
        try:
            chunks = iter_frames(
                video,
                model.fps,
                model.convention.frame_size,
                chunk_frames_for(networks.device),
                start_frame=max(0, first_end + 1 - longest),
                stop_frame=last_end or None,
                decoder_threads=1,
                shared=shared,
            )
            steps = scored_steps(chunks, networks, model.windows, first_end)
            return score_segment(steps, progress, failed, background)
        except BaseException:
            failed.set()
            raise

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // len(ends)))
    try:
        with shared_file(video) as shared, ThreadPoolExecutor(len(ends)) as pool:
            starts = [0, *ends[:-1]]
            futures = [pool.submit(lane, a, b, shared) for a, b in zip(starts, ends, strict=True)]
            segments = [future.result() for future in futures]
    finally:
        torch.set_num_threads(threads)
    return scored_windows(video, segments, model)
