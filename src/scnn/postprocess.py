"""From scored windows to detections: window-length prior, greedy temporal NMS (method.md §4).

Mirrors the authors' experiments/THUMOS14/eval/eval_scnn_thumos14.m (drop background, weight
the score, NMS per video and class, sort by score), window_weight/cal_weight.m (the prior) and
lib/postprocess/nms_temporal.m (NMS), including their tie rules, so that their stored outputs
reproduce the paper's table (benchmarks/accuracy/thumos14_table.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scnn import formats
from scnn.errors import ScnnError
from scnn.formats.windows_csv import read_windows_csv
from scnn.records import Detection, Instance, ScoredWindows
from scnn.video import FPS
from scnn.windows import WINDOW_LENGTHS_FRAMES, temporal_iou

log = logging.getLogger(__name__)

# The authors' duration of each of their window lengths (WINDOW_LENGTHS_FRAMES) in
# cal_weight.m, in seconds (not exactly L / 25 fps: these are the values their prior was
# computed with).
AUTHORS_WINDOW_DURATIONS_S = (0.6, 1.24, 2.52, 5.08, 10.20, 22.44)
NMS_THRESHOLD = 0.4  # the authors' fixed NMS IoU threshold of their demo (method.md §4)
# A boundary network moves each end of a window by at most this share of the window's length
# (its segment, end − start): live detection knows so where a window not scored yet can land.
# Its training targets lie within it (a window over tIoU 0.5 with an instance is less than its
# own length from each of the instance's ends).
MAX_WINDOW_OFFSET = 1.0


def _durations_s(lengths_frames: Sequence[int]) -> tuple[float, ...]:
    """The duration bin of each window length: the authors' bins for their lengths, so their
    prior (and the paper's table) comes out; otherwise L / fps."""
    if tuple(lengths_frames) == WINDOW_LENGTHS_FRAMES:
        return AUTHORS_WINDOW_DURATIONS_S
    return tuple(length / FPS for length in lengths_frames)


def window_length_prior(
    instances: Sequence[Instance],
    classes: Sequence[str],
    lengths_frames: Sequence[int] = WINDOW_LENGTHS_FRAMES,
) -> dict[int, np.ndarray]:
    """w[L, class] (cal_weight.m): for each window length L, the weight of each class, ``(K,)``.

    Counts the training instances of each class whose duration d satisfies W/2 ≤ d ≤ 2·W for
    the duration W of each window length, then normalises each class over the lengths to sum
    1. A class with no instance in any bin gets a uniform weight (the authors' code would
    divide by zero), with a warning. Instances of labels outside ``classes`` are ignored.
    """
    durations = np.asarray(_durations_s(lengths_frames), dtype=np.float64)
    counts = np.zeros((len(durations), len(classes)))
    column = {name: n for n, name in enumerate(classes)}
    for instance in instances:
        if instance.label in column:
            duration_s = instance.end_s - instance.start_s
            inside = (duration_s >= durations / 2) & (duration_s <= durations * 2)
            counts[inside, column[instance.label]] += 1
    totals = counts.sum(axis=0)
    empty = totals == 0
    if empty.any():
        names = ", ".join(c for c, e in zip(classes, empty, strict=True) if e)
        log.warning(
            "window-length prior: no training instance fits any window for %s; "
            "using a uniform prior for them",
            names,
        )
        counts[:, empty] = 1.0
        totals[empty] = len(durations)
    return dict(zip((int(length) for length in lengths_frames), counts / totals, strict=True))


def nms(segments: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy temporal NMS (nms_temporal.m): indices of the kept segments, in pick order.

    ``segments`` is ``(N, 2)`` (start, end). The highest score is kept first; a segment is
    suppressed when its IoU with a kept one is > ``iou_threshold`` (IoU equal to the
    threshold survives). Among equal scores the later segment (higher index) is picked
    first, as the authors' ascending sort + pick-the-last does. Each segment is compared
    only with the kept ones it overlaps in time (:class:`_TimeIndex`), so time and memory
    grow with N, not N²: a long video's windows are many.
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((-np.arange(len(scores)), -scores))
    index = _TimeIndex(segments)
    first, last = index.ranges(segments)
    suppressed = np.zeros(len(scores), bool)
    keep = []
    for best in order.tolist():
        if not suppressed[best]:
            keep.append(best)
            near = index.between(first[best], last[best])
            suppressed[near[temporal_iou(segments[best], segments[near])[0] > iou_threshold]] = True
    return np.array(keep, dtype=np.int64)


class _TimeIndex:
    """Segments sorted by start, to find those that may overlap a query segment: they start
    after the query's start − the longest segment and before its end."""

    def __init__(self, segments: np.ndarray):
        self.by_start = np.argsort(segments[:, 0], kind="stable")
        self.starts = segments[self.by_start, 0]
        # twice the longest: a margin for rounding in end − start
        self.reach = 2 * float(np.max(segments[:, 1] - segments[:, 0], initial=0.0))

    def ranges(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query segment, the range of :meth:`between` to look in."""
        first = np.searchsorted(self.starts, queries[:, 0] - self.reach, "left")
        return first, np.searchsorted(self.starts, queries[:, 1], "right")

    def between(self, first: int, last: int) -> np.ndarray:
        """The indices of the segments in a range from :meth:`ranges`, ascending."""
        return np.sort(self.by_start[first:last])


def reference_nms(segments: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Plain-loop NMS written from method.md §4, to check :func:`nms` against in tests."""
    candidates = sorted(range(len(scores)), key=lambda i: (scores[i], i), reverse=True)
    keep: list[int] = []
    for i in candidates:
        start_i, end_i = segments[i]
        for j in keep:
            start_j, end_j = segments[j]
            inter = max(0.0, min(end_i, end_j) - max(start_i, start_j))
            union = (end_i - start_i) + (end_j - start_j) - inter
            if inter > 0 and inter / union > iou_threshold:
                break
        else:
            keep.append(i)
    return keep


@dataclass(frozen=True)
class PostprocessSettings:
    """What :func:`postprocess` does with a model's scored windows, as a Detector resolves it
    from its config and the model's defaults (live detection applies the same, without voting
    and top-k)."""

    nms_iou: float
    prior: Mapping[int, np.ndarray] | None = None  # None: scores unweighted
    top_k: int | None = None
    min_score: float | None = None
    vote_iou: float | None = None  # None or 0: the windows' own boundaries

    def detections(self, windows: ScoredWindows) -> list[Detection]:
        """:func:`postprocess` of ``windows`` with these settings."""
        return postprocess(
            windows, self.nms_iou, self.prior, self.top_k, self.min_score, self.vote_iou
        )


def postprocess(
    windows: ScoredWindows,
    nms_iou: float,
    prior: Mapping[int, np.ndarray] | None = None,
    top_k: int | None = None,
    min_score: float | None = None,
    vote_iou: float | None = None,
) -> list[Detection]:
    """Scored windows → detections, sorted by descending score (method.md §4).

    Moves each window by its boundary network's offsets, if any (:func:`window_segments_s`),
    drops background windows, multiplies each score by ``prior[window length][class]`` (a
    :func:`window_length_prior` over ``windows.classes``; a length it lacks is an error),
    optionally drops scores below ``min_score``, runs :func:`nms` per video and class,
    optionally moves each kept window's boundaries by :func:`vote_boundaries` (``vote_iou``;
    None or 0: the windows' own, as S-CNN) and runs NMS again on the moved ones (voting can move two
    onto one instance), and optionally keeps each video's ``top_k`` best.
    Equal scores keep the authors' order: video name, class index, NMS pick order (their
    results depend on it after 5-digit rounding).
    """
    if vote_iou is not None and not 0.0 <= vote_iou <= 1.0:
        raise ScnnError(f"the voting IoU must be in [0, 1] (0: off), got {vote_iou}")
    keep, scores, labels = weighted_scores(windows, prior, min_score)
    videos = windows.videos[keep]
    group_order = np.lexsort((labels, videos))
    segments = window_segments_s(windows)[keep]
    picked = []
    bounds = (
        np.flatnonzero(
            (videos[group_order][1:] != videos[group_order][:-1])
            | (labels[group_order][1:] != labels[group_order][:-1])
        )
        + 1
    )
    bounds_s = segments.copy()
    for group in np.split(group_order, bounds):
        if len(group):
            kept = group[nms(segments[group], scores[group], nms_iou)]
            if vote_iou:
                bounds_s[kept] = vote_boundaries(
                    segments[kept], segments[group], scores[group], vote_iou
                )
                kept = kept[nms(bounds_s[kept], scores[kept], nms_iou)]
            picked.append(kept)
    picked = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    picked = picked[np.argsort(-scores[picked], kind="stable")]
    if top_k is not None:
        picked = _top_k_per_video(picked, videos, top_k)
    return [
        Detection(
            str(videos[i]),
            float(bounds_s[i, 0]),
            float(bounds_s[i, 1]),
            windows.classes[labels[i] - 1],
            float(scores[i]),
        )
        for i in picked
    ]


def window_segments_s(windows: ScoredWindows) -> np.ndarray:
    """``(N, 2)`` seconds: each window's start and end, moved by its boundary network's
    offsets where it has them (the grid's own otherwise, as S-CNN), each held to
    :data:`MAX_WINDOW_OFFSET` of the window's length. Offsets that would put the start at or
    after the end say nothing usable: such a window keeps the grid's place."""
    grid = np.stack([windows.start_s, windows.end_s], axis=1)
    if windows.start_offset_s is None or windows.end_offset_s is None:
        return grid
    most = MAX_WINDOW_OFFSET * (grid[:, 1:] - grid[:, :1])
    offsets = np.stack([windows.start_offset_s, windows.end_offset_s], axis=1)
    moved = grid + np.clip(offsets, -most, most)
    return np.where((moved[:, 0] < moved[:, 1])[:, None], moved, grid)


def vote_boundaries(
    kept: np.ndarray, windows: np.ndarray, scores: np.ndarray, vote_iou: float
) -> np.ndarray:
    """Each kept segment's start and end as the mean of those of the ``windows`` (same video
    and class, kept ones included) whose IoU with it is ≥ ``vote_iou``, each weighted by the
    log-odds of its score, log(s / (1 − s)), floored at 0.

    Beyond S-CNN (box voting, Gidaris and Komodakis, ICCV 2015): the grid's lengths double
    from one to the next, so an instance between two lengths fits no window well; the windows
    that agree on it, weighted by confidence, place its boundaries between the grid's. The
    log-odds, not the score, weigh them: the localization network's scores crowd against 1,
    where a window at 1 − 1e-9 and one at 1 − 1e-3 would otherwise count alike.
    ``kept`` ``(M, 2)``, ``windows`` ``(N, 2)``, ``scores`` ``(N,)`` in [0, 1]; returns
    ``(M, 2)``. A segment whose voters all score ≤ 0.5 keeps its boundaries.
    Each kept segment is compared only with the windows it overlaps in time, so time and
    memory grow with M + N, not M·N; the sums are exactly rounded (math.fsum), so a
    segment's boundaries depend on its voters alone, not on their order or on the others.
    """
    kept = np.asarray(kept, dtype=np.float64).reshape(-1, 2)
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    weights = log_odds(scores)
    index = _TimeIndex(windows)
    voted = kept.copy()
    for k, (first, last) in enumerate(zip(*index.ranges(kept), strict=True)):
        near = index.between(first, last)
        near = near[temporal_iou(kept[k], windows[near])[0] >= vote_iou]
        total = math.fsum(weights[near])
        if total > 0:
            products = weights[near, None] * windows[near]
            voted[k] = math.fsum(products[:, 0]) / total, math.fsum(products[:, 1]) / total
    return voted


def log_odds(scores: np.ndarray) -> np.ndarray:
    """``log(s / (1 − s))`` floored at 0 and capped at float64's resolution below 1 (a score
    of exactly 1 gives ≈ 36.7, not infinity)."""
    clipped = np.clip(np.asarray(scores, dtype=np.float64), 0.5, 1.0 - np.finfo(np.float64).epsneg)
    return np.log(clipped) - np.log1p(-clipped)


def weighted_scores(
    windows: ScoredWindows,
    prior: Mapping[int, np.ndarray] | None = None,
    min_score: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windows NMS sees (:func:`postprocess` before NMS): the indices of those not labelled
    background and, with the prior, scoring at least ``min_score``; their weighted scores and
    their labels (1..K)."""
    keep = np.flatnonzero(windows.label_index > 0)
    scores = windows.score[keep].copy()
    labels = windows.label_index[keep]
    if prior is not None:
        scores *= _prior_weights(prior, windows.window_frames[keep], labels)
    if min_score is not None:
        above = scores >= min_score
        keep, scores, labels = keep[above], scores[above], labels[above]
    return keep, scores, labels


def _prior_weights(
    prior: Mapping[int, np.ndarray], window_frames: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """The weight ``prior[L][label]`` of each window (labels 1..K)."""
    weights = np.empty(len(labels))
    for length in np.unique(window_frames):
        if length not in prior:
            raise ScnnError(
                f"window length {length} frames has no prior weights (the prior's lengths: "
                f"{', '.join(map(str, prior))})"
            )
        rows = window_frames == length
        weights[rows] = np.asarray(prior[length])[labels[rows] - 1]
    return weights


def _top_k_per_video(picked: np.ndarray, videos: np.ndarray, top_k: int) -> np.ndarray:
    """Keep the first ``top_k`` of each video in ``picked`` (already sorted by score)."""
    seen: dict[str, int] = {}
    kept = []
    for i in picked:
        count = seen.get(videos[i], 0)
        if count < top_k:
            kept.append(i)
            seen[videos[i]] = count + 1
    return np.array(kept, dtype=np.int64)


def postprocess_files(
    windows_path: Path,
    out: Path,
    *,
    class_table: Mapping[int, str] | None = None,
    prior_from: Path | None = None,
    prior_subset: str | None = None,
    nms_threshold: float = NMS_THRESHOLD,
    top_k: int | None = None,
    min_score: float | None = None,
    vote_iou: float | None = None,
    refine: Refine | None = None,
    classes: Sequence[str] | None = None,
) -> tuple[int, int]:
    """``scnn postprocess``: a windows CSV to a detections file (format by extension), the
    prior from the ground truth ``prior_from``; the class list from ``class_table``, else from
    that ground truth, else ``classes`` (a model's). ``refine`` then moves each video's
    detections (a model's boundary clips: :meth:`scnn.detect.Detector.refine_in_folder`).
    Returns the numbers of detections and of windows."""
    prior_gt = None if prior_from is None else formats.load_ground_truth(prior_from, prior_subset)
    if class_table is not None:
        classes = tuple(class_table[k] for k in sorted(class_table))
    elif prior_gt is not None:
        classes = prior_gt.classes
    elif classes is None:
        raise ScnnError("give --classes or --prior-from: the windows' class ids need a list")
    windows = read_windows_csv(windows_path, classes)
    prior = None
    if prior_gt is not None:
        lengths = sorted(set(windows.window_frames.tolist()))
        prior = window_length_prior(prior_gt.instances, classes, lengths)
    detections = postprocess(
        windows, nms_threshold, prior, top_k=top_k, min_score=min_score, vote_iou=vote_iou
    )
    if refine is not None:
        detections = refine_each_video(detections, refine)
    formats.write_detections(out, detections, classes)
    return len(detections), len(windows)


# moves a video's detections (by its name), giving them back in their order
Refine = Callable[[str, list[Detection]], list[Detection]]


def refine_each_video(detections: list[Detection], refine: Refine) -> list[Detection]:
    """``detections`` in their order, each video's moved by ``refine`` (called once a video)."""
    rows_of: dict[str, list[int]] = {}
    for row, detection in enumerate(detections):
        rows_of.setdefault(detection.video, []).append(row)
    moved = list(detections)
    for video, rows in rows_of.items():
        for row, detection in zip(rows, refine(video, [moved[k] for k in rows]), strict=True):
            moved[row] = detection
    return moved
