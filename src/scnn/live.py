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
and NMS 0.4 a detection is final at most 15.3 s of video after its end on a CPU, which reads
64-frame chunks (:func:`latency_bound_frames`: 383 frames; 319 with batch size 1), and 30.7 s
on a GPU, which reads 256 (767 frames; 511), unless an NMS chain or the localization
network's queue, waiting for a full batch, holds it back.
``--top-k`` ranks a whole video, which a stream never is: live detection refuses it; so it
does ``--vote-iou`` (boundary voting moves detections after NMS and runs NMS again).

With a model's boundary network every window labelled with an action moves before NMS, each
end by at most :data:`scnn.postprocess.MAX_WINDOW_OFFSET` of its length (window_segments_s
holds it there, offline and live alike). A window not scored yet is then judged wherever it
can land: it exposes a window if the landing nearest to it has an IoU over the threshold
(:func:`exposed`), and a decided window is forgotten only once no window, moved as far as it
can, can overlap it. So the end of a finite stream still gives exactly the offline
detections, later: at most 37.1 s of video after their end with the default grid on a CPU
(928 frames; 864 with batch size 1) and 52.5 s on a GPU (1312; 1056), chains and the queue
aside.

With a model's boundary clips, a final detection waits until the frames its rounds can read
have arrived (boundary_clips.reach_frames: up to about 0.63 of its length after its end,
for two rounds), then is refined as offline refines it (scnn.boundary_refiner). The
refiner holds the frames from the first that an open window, or one not scored yet, can need
(:func:`first_frame_needed`); so what is held stays bounded by the longest window and its
reach, however long the stream runs.
"""

from __future__ import annotations

import itertools
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
from scnn.postprocess import (
    MAX_WINDOW_OFFSET,
    PostprocessSettings,
    weighted_scores,
    window_segments_s,
)
from scnn.records import Detection, ScoredWindows
from scnn.video import video_name
from scnn.video_source import READ_TIMEOUT_S
from scnn.windows import WindowConfig, Windows, first_start_after, temporal_iou, window_grid

STDOUT = "-"  # the output name that writes detection lines to standard output
# With a boundary network, a window not scored yet exposes another from this far below the NMS
# threshold: where it really lands, rounding may give an IoU above the one tested (exposed).
ROUNDING = 1e-9


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


def exposed(
    segments: np.ndarray, unscored: np.ndarray, iou_threshold: float, move: float
) -> np.ndarray:
    """For each of the ``(N, 2)`` segments, whether a window not scored yet (``(M, 2)``: its
    place on the grid) can suppress it: :func:`suppressors` of each, any of them."""
    return suppressors(segments, unscored, iou_threshold, move).any(axis=1)


def suppressors(
    segments: np.ndarray, unscored: np.ndarray, iou_threshold: float, move: float
) -> np.ndarray:
    """``(N, M)``: whether each window not scored yet (``unscored``: its place on the grid) can
    land where its IoU with each segment is over the threshold.

    Without a boundary network (``move`` 0) a window stays on the grid. With one, each of its
    ends lands within ``move`` × its length of the grid's (postprocess.window_segments_s).
    Of those places, the one whose ends are each nearest the segment's has the largest IoU:
    an end moved nearer adds to the intersection or takes from the union, and never the
    reverse. So that place alone is tested, :data:`ROUNDING` below the threshold.
    """
    if move == 0:
        return temporal_iou(segments, unscored) > iou_threshold
    segments, unscored = (np.asarray(a, np.float64).reshape(-1, 2) for a in (segments, unscored))
    most = move * (unscored[:, 1:] - unscored[:, :1])
    near = np.clip(segments[:, None, :], unscored - most, unscored + most)  # (N, M, 2)
    ends = np.minimum(segments[:, None, 1], near[..., 1])
    inter = np.clip(ends - np.maximum(segments[:, None, 0], near[..., 0]), 0.0, None)
    union = (segments[:, None, 1] - segments[:, None, 0]) + (near[..., 1] - near[..., 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou > iou_threshold - ROUNDING


def latency_bound_frames(
    windows: WindowConfig,
    iou_threshold: float,
    chunk_frames: int,
    batch_size: int,
    move: float = 0.0,
) -> int:
    """Frames that may follow a detection's last frame before it is final, NMS chains and the
    localization network's queue aside; ``move``: a boundary network's
    (:data:`scnn.postprocess.MAX_WINDOW_OFFSET`), 0 without one.

    A window is safe from windows to come once the last grid window that can suppress it
    (:func:`suppressors`) has arrived (its *reach*: computed here over every window length
    and position of one period of the grid; with a boundary network, each window moved by
    offsets in steps of ``move``/4 at each end); the chunk that brings that frame ends up to
    ``chunk - 1`` frames later. With batches, the proposal network's partial batch (the
    latest chunk's last windows) waits for the next chunk: one chunk more.
    """
    longest = max(windows.lengths_frames)
    period = math.lcm(*(windows.stride_frames(n) for n in windows.lengths_frames))
    first = math.ceil((2 + 2 * move) * longest)
    grid = window_grid(first + period + math.ceil((2 + 2 * move) * longest) * 2, windows)
    middle = (grid.start_frame > first) & (grid.start_frame <= first + period)
    segments = grid.segments_s(1.0)
    length = segments[middle, 1:] - segments[middle, :1]
    reach = 0
    for start, end in itertools.product(np.linspace(-move, move, 9 if move else 1), repeat=2):
        moved = segments[middle] + length * np.array([start, end])
        if not (moved[:, 0] < moved[:, 1]).all():
            continue
        last_end = np.where(
            suppressors(moved, segments, iou_threshold, move), grid.end_frame[None, :], 0
        ).max(axis=1)
        reach = max(reach, math.ceil((last_end - moved[:, 1]).max()))
    return reach + chunk_frames - 1 + (chunk_frames if batch_size > 1 else 0)


class LiveNms:
    """Greedy temporal NMS per class (postprocess.nms, its tie rule included) over windows
    that arrive over time; :meth:`settle` decides the windows whose fate is final. ``move``:
    how far a boundary network may move each end of a window, a share of its length
    (:data:`scnn.postprocess.MAX_WINDOW_OFFSET`; 0: no boundary network)."""

    def __init__(self, iou_threshold: float, windows: WindowConfig, fps: float, move: float = 0.0):
        self.iou_threshold = iou_threshold
        self.windows = windows
        self.fps = fps
        self.move = move
        # frames by which two windows that may overlap can each move towards the other
        self.margin = math.ceil(2 * move * max(windows.lengths_frames))
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
        it overlaps with IoU over the threshold, wherever a boundary network can move it
        (:func:`exposed`): such a window is *exposed*. A decided window is forgotten once
        no open window, nor one to come, can reach it."""
        if frames_seen is None:
            unscored, frontier = np.zeros((0, 2)), math.inf
        else:
            ends = [c.end_frame for cs in self._classes.values() for c in cs if c.kept is None]
            before = max(ends, default=0) + self.margin
            coming = upcoming_windows(frames_seen, self.windows, before)
            unscored = np.concatenate([coming.segments_s(self.fps), waiting.segments_s(self.fps)])
            starts = [next_window_start(frames_seen, self.windows), *waiting.start_frame.tolist()]
            frontier = min(starts)
        final = []
        for label, candidates in self._classes.items():
            final += self._settle_class(candidates, unscored)
            horizon = min([frontier] + [c.start_frame for c in candidates if c.kept is None])
            self._classes[label] = [
                c for c in candidates if c.kept is None or c.end_frame + self.margin > horizon
            ]
        return final

    def _settle_class(self, candidates: list[Candidate], unscored: np.ndarray) -> list[Candidate]:
        """One class: greedy NMS in the offline order (score, then row, both descending), each
        open window decided unless it, or an open window above it with IoU over the threshold
        (recursively), is exposed to the ``unscored`` segments."""
        candidates.sort(key=lambda c: (c.detection.score, c.row), reverse=True)
        segments = np.array([(c.detection.start_s, c.detection.end_s) for c in candidates])
        overlaps = temporal_iou(segments, segments) > self.iou_threshold
        at_risk = exposed(segments, unscored, self.iou_threshold, self.move)
        kept = np.zeros(len(candidates), bool)
        blocked = np.zeros(len(candidates), bool)
        final = []
        for i, candidate in enumerate(candidates):
            above = overlaps[:i, i]
            if candidate.kept is not None:
                kept[i] = candidate.kept
                continue
            kept[i] = not (above & kept[:i]).any()
            blocked[i] = at_risk[i] or (above & blocked[:i]).any()
            if not blocked[i]:
                candidate.kept = bool(kept[i])
                if candidate.kept:
                    final.append(candidate)
            elif not at_risk[i]:
                candidate.chained = True
        return final


def live_detections(
    detector: Detector,
    source: str | Path,
    timeout_s: float = READ_TIMEOUT_S,
    progress: Callable[[int], None] | None = None,
) -> Iterator[LiveDetection]:
    """The detections of ``source`` (a file, pipe, :data:`scnn.video_source.STDIN` or URL) in the
    order they become final. A source that fails raises VideoError after the detections
    final by then. ``progress`` is called with each chunk's decoded frames."""
    settings = detector.postprocess_settings()
    if settings.top_k is not None:
        raise ScnnError("--top-k ranks a whole video; live detection cannot honour it")
    if detector.config.vote_iou:
        raise ScnnError("--vote-iou moves boundaries after NMS; live detection cannot honour it")
    # nor does it vote by the model's default: live gives the windows' own boundaries
    model, name = detector.model, video_name(source)
    move = 0.0 if model.boundaries is None else MAX_WINDOW_OFFSET
    nms, grid = LiveNms(settings.nms_iou, model.windows, model.fps, move), GridRows()
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
                refiner.keep_from = first_frame_needed(refiner, nms, waiting, step.frames_seen)
                refined = refiner.ready()
            for serial, detection in refined:
                yield LiveDetection(detection, step.frames_seen, chained.pop(serial))
        if progress is not None and step.new_frames:
            progress(step.new_frames)


def first_frame_needed(
    refiner: BoundaryRefiner, nms: LiveNms, waiting: Windows, frames_seen: int
) -> int:
    """The first frame that the boundary clips of a detection still to become final can
    read: the open windows' segments, and the places of the windows not scored yet (those
    ``waiting`` and the first to come of each length), each end moved out by as much as a
    boundary network can move it (``nms.move`` of its length)."""
    windows = nms.windows
    lengths = np.array(windows.lengths_frames, np.int64)
    starts = np.array(
        [first_start_after(frames_seen, n, windows.stride_frames(n)) for n in lengths.tolist()]
    )
    coming = Windows(lengths, starts, starts + lengths - 1)
    unscored = np.concatenate([coming.segments_s(nms.fps), waiting.segments_s(nms.fps)])
    if nms.move:
        most = nms.move * (unscored[:, 1:] - unscored[:, :1])
        unscored = unscored + np.concatenate([-most, most], axis=1)
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
