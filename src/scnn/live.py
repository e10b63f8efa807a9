"""Live detection (method.md §4.1): the detections of a stream, file, pipe or URL, each given out
the moment it is final, while the stream goes on.

The networks score windows as the offline run does, the same batches in the same order
(pipeline.scored_steps), so every score is the offline one. Greedy NMS per class then runs
incrementally: after each decoded chunk it is run again over the windows whose fate is still
open and the decided ones that overlap them, and a window is decided once nothing still to be
scored can change its fate. The windows not scored yet are the grid's windows still to come and
those waiting in a network's queue for a full batch: their places are known, not their scores.
A window is *exposed* while one of them has an IoU with it over the NMS threshold (it could
suppress it). A window's fate is final when neither it nor any open window it depends on (above
it in NMS order, IoU over the threshold, recursively: an NMS chain) is exposed. Decided windows
are forgotten once no open or future window can overlap them, so what is held does not depend on
how long the stream has run (benchmarks/speed/speed_memory.py). At the end of a finite stream every
window is decided and the kept ones are exactly the offline detections. With the default grid
and NMS 0.4 a detection is final at most 30.7 s of video after its end
(:func:`latency_bound_frames`: 767 frames; 511 with batch size 1), unless an NMS chain or the
localization network's queue, waiting for a full batch, holds it back.
``--top-k`` ranks a whole video, which a stream never is: live detection refuses it; so it
does ``--vote-iou`` (boundary voting moves detections after NMS and runs NMS again).

With a model's boundary clips, a final detection waits until the frames its rounds can read
have arrived (boundary_clips.reach_frames: up to about 0.63 of its length after its end,
for two rounds), then is refined as offline refines it (scnn.boundary_refiner). The
refiner holds the frames from the first that an open window, or one not scored yet, can need
(:func:`first_frame_needed`); so what is held stays bounded by the longest window and its
reach, however long the stream runs.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from scnn.boundary_refiner import BoundaryRefiner
from scnn.detect import Detector
from scnn.errors import ScnnError
from scnn.pipeline import GridRows, ScoredBatch, source_steps
from scnn.postprocess import PostprocessSettings, weighted_scores, window_segments_s
from scnn.records import Detection, ScoredWindows
from scnn.video import READ_TIMEOUT_S, video_name
from scnn.windows import WindowConfig, Windows, first_start_after, temporal_iou, window_grid

STDOUT = "-"  # the output name that writes detection lines to standard output


@dataclass(frozen=True)
class LiveDetection:
    """A detection that became final, with when: the frames decoded by then, and whether an
    NMS chain held it back after the frontier had passed its own end."""

    detection: Detection
    frames_seen: int
    chained: bool


@dataclass
class Candidate:
    """A window that takes part in NMS: its place, its weighted score, its fate so far."""

    detection: Detection
    row: int  # its place in the offline ScoredWindows: NMS takes the later of equal scores first
    start_frame: int
    end_frame: int
    kept: bool | None = None  # None while open
    chained: bool = False


def next_window_start(frames_seen: int, windows: WindowConfig) -> int:
    """The first frame of the earliest grid window still to come: each window ending after
    frame ``frames_seen`` starts there or later (a window starts at 1 + k·stride)."""
    return min(
        first_start_after(frames_seen, length, windows.stride_frames(length))
        for length in windows.lengths_frames
    )


def upcoming_windows(frames_seen: int, windows: WindowConfig, before_frame: int) -> Windows:
    """The grid windows still to come (ending after frame ``frames_seen``) that start before
    frame ``before_frame``: those that may overlap a window ending there."""
    lengths, starts = [], []
    for length in windows.lengths_frames:
        stride = windows.stride_frames(length)
        start = np.arange(first_start_after(frames_seen, length, stride), before_frame, stride)
        starts.append(start)
        lengths.append(np.full(len(start), length, np.int64))
    length_frames, start_frame = np.concatenate(lengths), np.concatenate(starts)
    return Windows(length_frames, start_frame, start_frame + length_frames - 1)


def latency_bound_frames(
    windows: WindowConfig, iou_threshold: float, chunk_frames: int, batch_size: int
) -> int:
    """Frames that may follow a window's last frame before its detection is final, NMS chains
    and the localization network's queue aside.

    The window is safe from windows to come once the last grid window whose IoU with it is
    over the threshold has arrived (its *reach*: computed here over every window length and
    position); the chunk that brings that frame ends up to ``chunk - 1`` frames later. With
    batches, the proposal network's partial batch (the latest chunk's last windows) waits for
    the next chunk: one chunk more.
    """
    longest = max(windows.lengths_frames)
    grid = window_grid(6 * longest, windows)
    middle = (grid.start_frame > 2 * longest) & (grid.end_frame <= 4 * longest)
    segments = grid.segments_s(1.0)
    suppressors = temporal_iou(segments[middle], segments) > iou_threshold
    last_end = np.where(suppressors, grid.end_frame[None, :], 0).max(axis=1)
    reach = int((last_end - grid.end_frame[middle]).max())
    return reach + chunk_frames - 1 + (chunk_frames if batch_size > 1 else 0)


class LiveNms:
    """Greedy temporal NMS per class (postprocess.nms, its tie rule included) over windows
    that arrive over time; :meth:`settle` decides the windows whose fate is final."""

    def __init__(self, iou_threshold: float, windows: WindowConfig, fps: float):
        self.iou_threshold = iou_threshold
        self.windows = windows
        self.fps = fps
        self._classes: dict[str, list[Candidate]] = {}

    def __len__(self) -> int:
        return sum(len(candidates) for candidates in self._classes.values())

    def add(self, candidate: Candidate) -> None:
        self._classes.setdefault(candidate.detection.label, []).append(candidate)

    def open_segments(self) -> np.ndarray:
        """``(N, 2)`` seconds: the segments of the windows whose fate is still open."""
        segments = [
            (c.detection.start_s, c.detection.end_s)
            for candidates in self._classes.values()
            for c in candidates
            if c.kept is None
        ]
        return np.array(segments, np.float64).reshape(-1, 2)

    def settle(self, frames_seen: int | None, waiting: Windows) -> list[Candidate]:
        """The windows kept whose fate became final, now that ``frames_seen`` frames were
        decoded and the ``waiting`` windows are queued for a network (``None``: the stream has
        ended and everything is scored). A window not scored yet may suppress an open window
        it overlaps with IoU over the threshold: such a window is *exposed*."""
        if frames_seen is None:
            unscored, frontier = np.zeros((0, 2)), math.inf
        else:
            ends = [c.end_frame for cs in self._classes.values() for c in cs if c.kept is None]
            coming = upcoming_windows(frames_seen, self.windows, max(ends, default=0))
            unscored = np.concatenate([coming.segments_s(self.fps), waiting.segments_s(self.fps)])
            starts = [next_window_start(frames_seen, self.windows), *waiting.start_frame.tolist()]
            frontier = min(starts)
        final = []
        for label, candidates in self._classes.items():
            final += self._settle_class(candidates, unscored)
            horizon = min([frontier] + [c.start_frame for c in candidates if c.kept is None])
            self._classes[label] = [
                c for c in candidates if c.kept is None or c.end_frame > horizon
            ]
        return final

    def _settle_class(self, candidates: list[Candidate], unscored: np.ndarray) -> list[Candidate]:
        """One class: greedy NMS in the offline order (score, then row, both descending), each
        open window decided unless it, or an open window above it with IoU over the threshold
        (recursively), is exposed to the ``unscored`` segments."""
        candidates.sort(key=lambda c: (c.detection.score, c.row), reverse=True)
        segments = np.array([(c.detection.start_s, c.detection.end_s) for c in candidates])
        overlaps = temporal_iou(segments, segments) > self.iou_threshold
        exposed = (temporal_iou(segments, unscored) > self.iou_threshold).any(axis=1)
        kept = np.zeros(len(candidates), bool)
        blocked = np.zeros(len(candidates), bool)
        final = []
        for i, candidate in enumerate(candidates):
            above = overlaps[:i, i]
            if candidate.kept is not None:
                kept[i] = candidate.kept
                continue
            kept[i] = not (above & kept[:i]).any()
            blocked[i] = exposed[i] or (above & blocked[:i]).any()
            if not blocked[i]:
                candidate.kept = bool(kept[i])
                if candidate.kept:
                    final.append(candidate)
            elif not exposed[i]:
                candidate.chained = True
        return final


def live_detections(
    detector: Detector,
    source: str | Path,
    timeout_s: float = READ_TIMEOUT_S,
    progress: Callable[[int], None] | None = None,
) -> Iterator[LiveDetection]:
    """The detections of ``source`` (a file, pipe, :data:`scnn.video.STDIN` or URL) in the
    order they become final. A source that fails raises VideoError after the detections
    final by then. ``progress`` is called with each chunk's decoded frames."""
    settings = detector.postprocess_settings()
    if settings.top_k is not None:
        raise ScnnError("--top-k ranks a whole video; live detection cannot honour it")
    if detector.config.vote_iou:
        raise ScnnError("--vote-iou moves boundaries after NMS; live detection cannot honour it")
    # nor does it vote by the model's default: live gives the windows' own boundaries
    model, name = detector.model, video_name(source)
    nms, grid = LiveNms(settings.nms_iou, model.windows, model.fps), GridRows()
    refiner = detector.boundary_refiner()
    chained: dict[int, bool] = {}  # each detection the refiner waits with, by its serial
    each_chunk = None if refiner is None else refiner.feed
    for step in source_steps(source, detector.networks, model, timeout_s, each_chunk):
        grid.add(step.windows)
        for batch in step.scored:
            for candidate in _candidates(batch, grid, name, detector, settings):
                nms.add(candidate)
        grid.forget_before(int(step.waiting.min(initial=step.first_row + len(step.windows))))
        waiting = Windows(*grid.take(step.waiting))
        final = nms.settle(None if step.final else step.frames_seen, waiting)
        if refiner is None:
            for candidate in final:
                yield LiveDetection(candidate.detection, step.frames_seen, candidate.chained)
        else:
            serials = refiner.add([candidate.detection for candidate in final])
            chained.update(zip(serials, (c.chained for c in final), strict=True))
            if step.final:
                refined = refiner.finish()
            else:
                refiner.keep_from = first_frame_needed(
                    refiner, nms, waiting, step.frames_seen, model.boundaries is not None
                )
                refined = refiner.ready()
            for serial, detection in refined:
                yield LiveDetection(detection, step.frames_seen, chained.pop(serial))
        if progress is not None and step.new_frames:
            progress(step.new_frames)


def first_frame_needed(
    refiner: BoundaryRefiner, nms: LiveNms, waiting: Windows, frames_seen: int, moved: bool
) -> int:
    """The first frame that the boundary clips of a detection still to become final can
    read: the open windows' segments, and the places of the windows not scored yet (those
    ``waiting`` and the first to come of each length; ``moved`` by a boundary network, a
    window is taken to move each end by at most its length)."""
    windows = nms.windows
    lengths = np.array(windows.lengths_frames, np.int64)
    starts = np.array(
        [first_start_after(frames_seen, n, windows.stride_frames(n)) for n in lengths.tolist()]
    )
    coming = Windows(lengths, starts, starts + lengths - 1)
    unscored = np.concatenate([coming.segments_s(nms.fps), waiting.segments_s(nms.fps)])
    if moved:
        length_s = unscored[:, 1:] - unscored[:, :1]
        unscored = unscored + np.concatenate([-length_s, length_s], axis=1)
    segments = np.concatenate([nms.open_segments(), unscored])
    return int(refiner.reach_of(segments)[0].min(initial=frames_seen + 1))


def _candidates(
    batch: ScoredBatch,
    grid: GridRows,
    name: str,
    detector: Detector,
    settings: PostprocessSettings,
) -> list[Candidate]:
    """The windows of a scored batch that take part in NMS, weighted as postprocess weighs."""
    rows = batch.rows
    lengths, starts, ends = grid.take(rows)
    windows = ScoredWindows.of_frames(
        name,
        lengths,
        starts,
        ends,
        detector.model.fps,
        batch.label_index,
        batch.score,
        detector.classes,
        batch.offsets,
    )
    keep, weighted, labels = weighted_scores(windows, settings.prior, settings.min_score)
    segments = window_segments_s(windows)
    return [
        Candidate(
            Detection(
                name,
                float(segments[k, 0]),
                float(segments[k, 1]),
                detector.classes[label - 1],
                float(score),
            ),
            int(rows[k]),
            int(starts[k]),
            int(ends[k]),
        )
        for k, score, label in zip(keep, weighted, labels, strict=True)
    ]


def detection_line(detection: Detection) -> str:
    """One JSON line: ``video``, ``start``, ``end`` (seconds), ``label``, ``score``."""
    fields = {
        "video": detection.video,
        "start": detection.start_s,
        "end": detection.end_s,
        "label": detection.label,
        "score": detection.score,
    }
    return json.dumps(fields) + "\n"


def write_live(
    detector: Detector,
    source: str | Path,
    out: str | Path = STDOUT,
    *,
    timeout_s: float = READ_TIMEOUT_S,
    quiet: bool = False,
) -> int:
    """``scnn detect SOURCE --live``: each detection as a JSON line on ``out`` (a file, started
    afresh once the source gives its first frames, so a source that cannot be opened leaves an
    earlier file as it was; or :data:`STDOUT`), flushed the moment it is final, so a line is
    never cut and a reader sees it at once; progress goes to stderr. Returns the number of
    detections; a source that fails raises after the lines written so far."""
    if str(out) == STDOUT and sys.stdout is None:  # started with its descriptor closed
        raise ScnnError("standard output is closed: nowhere to write the lines")
    count = 0
    with ExitStack() as stack:
        lines: list[IO[str]] = [sys.stdout] if str(out) == STDOUT else []

        def started() -> IO[str]:
            if not lines:
                lines.append(stack.enter_context(open(out, "w", encoding="utf-8")))
            return lines[0]

        bar = stack.enter_context(
            tqdm(desc=video_name(source), unit="frame", disable=quiet, file=sys.stderr)
        )

        def progress(frames: int) -> None:
            started()
            bar.update(frames)

        for found in live_detections(detector, source, timeout_s, progress):
            output = started()
            output.write(detection_line(found.detection))
            output.flush()
            count += 1
        started()
    return count
