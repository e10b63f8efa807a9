"""Boundary clips applied as frames stream by: each detection refined
(:func:`scnn.boundary_clips.refine_segments`) once the frames within its reach have arrived,
holding only those frames, so memory does not grow with the video.

Offline detection reads a video a second time, in order, from the first frame its detections
can need to the last (:func:`refine_in_video`); live detection hands over each decoded chunk
as it comes and each detection once it is final (scnn.live). Each detection is refined alone,
its two clips a batch of their own, so its boundaries do not depend on which other
detections were refined beside it: live gives exactly offline's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from scnn.boundary_clips import BoundaryClips, reach_frames, refine_segments
from scnn.clips import InputConvention
from scnn.records import Detection
from scnn.video import CHUNK_FRAMES, iter_frames
from scnn.video_source import shared_file

log = logging.getLogger(__name__)

# Frames between two groups of detections above which the second pass seeks over them: a
# seek decodes from a keyframe up to ~10 s back (x264's default keyframe interval). A 720p
# video read as 100-frame ranges every 30 s took 0.45 of a whole pass (benchmarks/speed/
# RESULTS.md, "Seeking over the frames the boundary clips do not need").
SEEK_GAP_FRAMES = 250


class BoundaryRefiner:
    """Detections waiting for their frames, and the frames they can need.

    :meth:`add` detections and :meth:`feed` the stream's chunks in order (any interleaving),
    take the refined ones with :meth:`ready`, and the rest with :meth:`finish` once the stream
    has ended. Held are the frames from the first that a waiting detection can need, or that
    ``keep_from`` names (the first frame a detection still to be added can need: at first
    any; a stream moves it on as its detections settle, and it is infinity once none is to
    come), to the latest: at most the largest waiting detection's reach and a chunk.
    """

    def __init__(
        self,
        clips: BoundaryClips,
        offsets_of: Callable[[torch.Tensor], np.ndarray],
        convention: InputConvention,
        fps: float,
        first_frame: int = 1,
        capacity: int = 0,
    ):
        self.clips = clips
        self.offsets_of = offsets_of
        self.convention = convention
        self.fps = fps
        self.keep_from: float = first_frame
        self.frames_seen = first_frame - 1  # the stream's chunks fed so far end at this frame
        self.storage: np.ndarray | None = None
        self.capacity = capacity  # frames the array is made for at first (_append)
        self.start = self.end = 0  # storage[start:end]: frames held_from .. frames_seen
        self.most_held = 0  # the most frames held at once
        self._waiting: list[tuple[int, Detection, int, int]] = []  # serial, detection, reach
        self._added = 0

    @property
    def held_from(self) -> int:
        """The first frame held (frames_seen + 1 when none is)."""
        return self.frames_seen + 1 - (self.end - self.start)

    @property
    def waiting(self) -> int:
        """Detections added and not yet refined."""
        return len(self._waiting)

    def reach(self, detections: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray]:
        """The first and last frame each detection's rounds can read (reach_frames)."""
        segments = np.array([(d.start_s, d.end_s) for d in detections], np.float64)
        return self.reach_of(segments.reshape(-1, 2))

    def reach_of(self, segments_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`reach` of ``(N, 2)`` segments in seconds."""
        return reach_frames(segments_s, self.clips, self.fps, self.convention.clip_frames)

    def add(self, detections: Sequence[Detection]) -> list[int]:
        """Wait for ``detections``' frames; their serial numbers (0, 1, … in the order added
        over the refiner's life), which :meth:`ready` gives them back with."""
        first, last = self.reach(detections)
        serials = list(range(self._added, self._added + len(detections)))
        self._added += len(detections)
        self._waiting += zip(serials, detections, first.tolist(), last.tolist(), strict=True)
        return serials

    def feed(self, chunk: np.ndarray | torch.Tensor) -> None:
        """The stream's next decoded frames (at the convention's frame size)."""
        if isinstance(chunk, torch.Tensor):
            chunk = chunk.cpu().numpy()
        needed_from = self._needed_from()
        self._drop_before(needed_from)
        if not math.isinf(needed_from):
            kept = chunk[min(len(chunk), max(0, int(needed_from) - self.frames_seen - 1)) :]
            self._append(kept)
        self.frames_seen += len(chunk)
        self.most_held = max(self.most_held, self.end - self.start)

    def ready(self) -> list[tuple[int, Detection]]:
        """The detections whose reach has arrived, refined, with their serial numbers."""
        return self._refine(lambda last: last <= self.frames_seen)

    def finish(self) -> list[tuple[int, Detection]]:
        """The stream has ended: every waiting detection refined (its clips held inside the
        video, which ends at the last frame fed)."""
        return self._refine(lambda last: True)

    def _refine(self, due: Callable[[int], bool]) -> list[tuple[int, Detection]]:
        done = [entry for entry in self._waiting if due(entry[3])]
        self._waiting = [entry for entry in self._waiting if not due(entry[3])]
        refined = [
            (serial, self._refined(detection, first)) for serial, detection, first, _ in done
        ]
        self._drop_before(self._needed_from())
        return refined

    def _refined(self, detection: Detection, first: int) -> Detection:
        """``detection`` refined from the frames held; as it was, with a warning, when its
        first frames are no longer held (a stream's ``keep_from`` promised too little)."""
        if first < self.held_from:
            log.warning(
                "boundary clips not applied to %s at %.2f-%.2f s: its frames were no longer held",
                detection.label,
                detection.start_s,
                detection.end_s,
            )
            return detection
        if self.end == self.start:  # the stream ended before the detection: nothing to see
            return detection
        start_s, end_s = refine_segments(
            np.array([[detection.start_s, detection.end_s]]),
            self.storage[self.start : self.end],
            self.held_from,
            self.frames_seen,
            self.clips,
            self.offsets_of,
            self.convention,
            self.fps,
        )[0]
        return dataclasses.replace(detection, start_s=float(start_s), end_s=float(end_s))

    def _needed_from(self) -> float:
        """The first frame a waiting detection, or one still to be added, can need."""
        return min([self.keep_from] + [entry[2] for entry in self._waiting])

    def _drop_before(self, frame: float) -> None:
        """Forget the frames held before ``frame`` (every one at infinity)."""
        held = self.end - self.start
        self.start += held if math.isinf(frame) else min(held, max(0, int(frame) - self.held_from))

    def _append(self, frames: np.ndarray) -> None:
        """Frames after those held, in one array reused: moved to its front when they do not
        fit behind the others, and grown only when they cannot fit at all, to what it must
        hold and one chunk more. So its size follows the most frames held, which the longest
        detection bounds, not the video's length; grown to twice what it had to hold, its
        size was left to chance, and a longer video more often drew the larger one
        (benchmarks/speed/RESULTS.md, "The boundary clips' frames"). ``capacity`` makes it
        that large at once, when the most it will hold is known."""
        held, count = self.end - self.start, len(frames)
        if self.storage is None or self.end + count > len(self.storage):
            storage = self.storage
            if storage is None or held + count > len(storage):
                size = max(self.capacity, held + 2 * count)
                storage = np.empty((size, *frames.shape[1:]), frames.dtype)
            if held:
                storage[:held] = self.storage[self.start : self.end]
            self.storage, self.start, self.end = storage, 0, held
        self.storage[self.end : self.end + count] = frames
        self.end += count


def refine_in_video(
    video: str | Path,
    detections: Sequence[Detection],
    clips: BoundaryClips,
    offsets_of: Callable[[torch.Tensor], np.ndarray],
    convention: InputConvention,
    fps: float,
    chunk_frames: int = CHUNK_FRAMES,
) -> list[Detection]:
    """``detections`` of ``video``, in their order, each refined by ``clips``: the video
    decoded again, in ``chunk_frames`` chunks, in order, over the frames they can need,
    holding only what the detections still waiting can need. Where SEEK_GAP_FRAMES or more
    frames lie between the reaches of two groups of detections, the pass seeks over them (a
    keyframe before the next group, the same frames a whole pass gives: video.iter_frames)
    instead of converting them. An MP4 is opened once for all the groups
    (video_source.shared_file)."""
    if not detections:
        return list(detections)
    segments = np.array([(d.start_s, d.end_s) for d in detections], np.float64)
    first, last = reach_frames(segments, clips, fps, convention.clip_frames)
    refined: dict[int, Detection] = {}
    size = convention.frame_size
    # A waiting detection's first frame is the first held, and it waits until a chunk brings
    # its last one: never more than the longest reach and a chunk are held. Every group's
    # array is made that large at once, so each takes the piece of the heap the one before
    # freed. Grown group by group, to sizes of their own, they needed pieces the first pass
    # had often not left free (benchmarks/speed/RESULTS.md)
    capacity = int((last - first).max()) + 1 + chunk_frames
    with shared_file(video) as shared:  # one MP4 index for every group's pass
        for group in reach_groups(first, last, SEEK_GAP_FRAMES):
            start, stop = int(first[group].min()), int(last[group].max())
            refiner = BoundaryRefiner(
                clips, offsets_of, convention, fps, first_frame=start, capacity=capacity
            )
            serials = refiner.add([detections[i] for i in group])
            refiner.keep_from = math.inf  # no other detection of the group is to come
            by_serial = dict(zip(serials, group.tolist(), strict=True))
            done: list[tuple[int, Detection]] = []
            chunks = iter_frames(
                video,
                fps,
                size,
                chunk_frames,
                start_frame=start - 1,
                stop_frame=stop,
                shared=shared,
            )
            for chunk in chunks:
                refiner.feed(chunk)
                done += refiner.ready()
                if not refiner.waiting:
                    break
            done += refiner.finish()
            refined.update((by_serial[serial], detection) for serial, detection in done)
    return [refined[i] for i in range(len(detections))]


def reach_groups(first: np.ndarray, last: np.ndarray, gap_frames: int) -> list[np.ndarray]:
    """The indices of the reaches ``[first, last]`` (frames) in groups of one pass each,
    in order of their first frames: a reach joins the group before it unless at least
    ``gap_frames`` frames lie between them."""
    order = np.argsort(first, kind="stable")
    groups: list[list[int]] = []
    group_last = -math.inf
    for index in order.tolist():
        if not groups or first[index] - group_last - 1 >= gap_frames:
            groups.append([])
        groups[-1].append(index)
        group_last = max(group_last, last[index])
    return [np.array(group, np.int64) for group in groups]
