"""Detection mAP under the three protocols of method.md §5, and proposal recall (AR@AN).

One function per function of the reference code, named in each docstring, so a reader can
diff this file against:

- the official THUMOS14 kit: TH14evaldet.m → TH14eventdetpr.m → prap (11-point AP), with
  intervaloverlapvalseconds.m for overlap;
- the S-CNN authors' updated kit, zhengshou/scnn experiments/THUMOS14/eval/
  TH14evalDet_Updated.m: the same matching, non-interpolated AP, another tie order;
- the ActivityNet evaluator, activitynet/ActivityNet Evaluation/eval_detection.py
  (``compute_average_precision_detection``, ``interpolated_prec_rec``) and eval_proposal.py
  (``average_recall_vs_avg_nr_proposals``).

The protocols differ only in the fields of :class:`Protocol`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scnn import formats
from scnn.errors import AnnotationError, ScnnError
from scnn.fileio import atomic_write_text
from scnn.records import Detection, GroundTruth
from scnn.windows import temporal_iou

log = logging.getLogger(__name__)

THUMOS14_IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
# np.linspace(0.5, 0.95, 10), exactly as eval_detection.py builds its default.
ACTIVITYNET_IOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
# The kit's ``0:0.1:1`` as Octave evaluates it (base + k * step, last element = limit).
ELEVEN_RECALL_POINTS = np.arange(11) * 0.1


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """What distinguishes one evaluation protocol from another.

    matching: "ground_truth" (each instance, in file order, claims the still-free detection of
        highest overlap; the THUMOS14 kits) or "score" (each detection, by descending score,
        claims the free instance of highest overlap; ActivityNet).
    strict: a match needs IoU > threshold (True) or IoU ≥ threshold (False).
    order_segments: a reversed segment (start > end) is read as the interval between its two
        times (the kits' min/max) instead of overlapping nothing (ActivityNet).
    use_ambiguous: unmatched detections overlapping an Ambiguous interval are not counted.
    ties: the order of equal scores when ranking: "tp_first" (all true positives first; the
        official kit), "video_order" (video name, then the per-video order of the file; the
        S-CNN kit) or "input_order" (a stable sort of the input; ActivityNet without its
        machine-dependent unstable sort).
    interpolation: "11_point" (prap), "none" (Σ precision at each TP / #GT) or "all_points"
        (interpolated_prec_rec, VOC 2010+).
    """

    name: str
    matching: str
    strict: bool
    order_segments: bool
    use_ambiguous: bool
    ties: str
    interpolation: str
    iou_thresholds: tuple[float, ...]


_THUMOS14 = Protocol(
    name="thumos14",
    matching="ground_truth",
    strict=True,
    order_segments=True,
    use_ambiguous=True,
    ties="tp_first",
    interpolation="11_point",
    iou_thresholds=THUMOS14_IOU_THRESHOLDS,
)
PROTOCOLS = {
    "thumos14": _THUMOS14,
    # the S-CNN authors' kit: the official one but for the order of ties and the AP
    "scnn": replace(_THUMOS14, name="scnn", ties="video_order", interpolation="none"),
    "activitynet": Protocol(
        name="activitynet",
        matching="score",
        strict=False,
        order_segments=False,
        use_ambiguous=False,
        ties="input_order",
        interpolation="all_points",
        iou_thresholds=ACTIVITYNET_IOU_THRESHOLDS,
    ),
}


@dataclass(frozen=True)
class EvaluationResult:
    """Per-class AP (``average_precision[threshold, class]``) and what produced it."""

    protocol: str
    iou_thresholds: tuple[float, ...]
    classes: tuple[str, ...]
    average_precision: np.ndarray
    num_videos: int
    num_ground_truth: int
    num_detections: int

    @property
    def mean_ap(self) -> np.ndarray:
        """mAP per IoU threshold: the mean over classes of per-class AP."""
        return self.average_precision.mean(axis=1)

    @property
    def average_map(self) -> float:
        """mAP averaged over the thresholds (ActivityNet's headline number)."""
        return float(self.mean_ap.mean())

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "iou_thresholds": list(self.iou_thresholds),
            "mAP": [float(v) for v in self.mean_ap],
            "average_mAP": self.average_map,
            "per_class": {
                name: [float(v) for v in self.average_precision[:, n]]
                for n, name in enumerate(self.classes)
            },
            "num_videos": self.num_videos,
            "num_ground_truth": self.num_ground_truth,
            "num_detections": self.num_detections,
        }


@dataclass(frozen=True)
class _Columns:
    """Segments as columns: video code (rank in sorted name order), class code, times."""

    video: np.ndarray
    label: np.ndarray
    segments: np.ndarray
    score: np.ndarray


def _columns(records: Sequence, video_code: dict[str, int], class_code: dict[str, int]):
    video = np.array([video_code[r.video] for r in records], dtype=np.int64)
    label = np.array([class_code.get(r.label, -1) for r in records], dtype=np.int64)
    segments = np.array([(r.start_s, r.end_s) for r in records], dtype=np.float64).reshape(-1, 2)
    score = np.array([getattr(r, "score", 1.0) for r in records], dtype=np.float64)
    return _Columns(video, label, segments, score)


def evaluate(
    gt: GroundTruth,
    detections: Sequence[Detection],
    protocol: str = "scnn",
    iou_thresholds: Sequence[float] | None = None,
) -> EvaluationResult:
    """Per-class AP of ``detections`` against ``gt`` under ``protocol`` (TH14evaldet.m).

    Classes are ``gt.classes`` that have at least one instance (the kits assert npos > 0;
    ActivityNet only knows classes seen in the ground truth). Detections of other classes are
    ignored with a warning; detections on videos without ground truth are false positives, as
    in all three references. No detections at all gives AP 0 for every class.
    """
    spec = _protocol(protocol)
    thresholds = np.array(iou_thresholds or spec.iou_thresholds, dtype=np.float64)
    classes = _evaluated_classes(gt)
    if len(classes) < len(gt.classes):
        log.warning(
            "not evaluated, no ground truth: %s",
            ", ".join(c for c in gt.classes if c not in classes),
        )
    truth, ambiguous, found = _all_columns(gt, detections, classes, spec)
    gt_videos = _ground_truth_videos(gt)
    _warn_unmatched(detections, found, gt_videos)
    ap = np.zeros((len(thresholds), len(classes)))
    for c in range(len(classes)):
        ap[:, c] = _class_average_precision(truth, ambiguous, found, c, thresholds, spec)
    return EvaluationResult(
        spec.name,
        tuple(float(t) for t in thresholds),
        classes,
        ap,
        len(gt_videos),
        len(truth.score),
        len(detections),
    )


def match_detections(
    gt: GroundTruth,
    detections: Sequence[Detection],
    iou_threshold: float,
    protocol: str = "activitynet",
) -> np.ndarray:
    """The instance each detection matches at ``iou_threshold`` under ``protocol``, exactly as
    :func:`evaluate` matches them: its index in ``gt.instances``, or -1 for a false positive
    (and for a detection of a class without ground truth)."""
    spec = _protocol(protocol)
    classes = _evaluated_classes(gt)
    truth, _, found = _all_columns(gt, detections, classes, spec)
    matched = np.full(len(detections), -1, dtype=np.int64)
    for c in range(len(classes)):
        det, instance = _class_matches(truth, found, c, np.array([iou_threshold]), spec)
        matched[det] = instance[0]
    return matched


def _protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ScnnError(f"unknown protocol {name!r} (choose from {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


def _evaluated_classes(gt: GroundTruth) -> tuple[str, ...]:
    """``gt.classes`` that have at least one instance, in their order."""
    present = {i.label for i in gt.instances}
    return tuple(c for c in gt.classes if c in present)


def _ground_truth_videos(gt: GroundTruth) -> set[str]:
    return set(gt.videos) | {i.video for i in (*gt.instances, *gt.ambiguous)}


def _all_columns(
    gt: GroundTruth, detections: Sequence[Detection], classes: tuple[str, ...], spec: Protocol
) -> tuple[_Columns, _Columns, _Columns]:
    """Instances, Ambiguous intervals (none unless ``spec`` uses them) and detections as
    columns, rows in their given order, segments read as ``spec`` reads them."""
    names = sorted(_ground_truth_videos(gt) | {d.video for d in detections})
    video_code = {name: n for n, name in enumerate(names)}
    class_code = {name: n for n, name in enumerate(classes)}
    truth = _columns(gt.instances, video_code, class_code)
    ambiguous = _columns(gt.ambiguous if spec.use_ambiguous else (), video_code, class_code)
    found = _columns(detections, video_code, class_code)
    if spec.order_segments:
        return _ordered(truth), _ordered(ambiguous), _ordered(found)
    return truth, ambiguous, found


def _warn_unmatched(detections: Sequence[Detection], found: _Columns, gt_videos: set) -> None:
    other_class = int((found.label < 0).sum())
    if other_class:
        log.warning("ignored %d detections of classes without ground truth", other_class)
    other_video = sum(d.video not in gt_videos for d in detections)
    if other_video:
        log.warning(
            "%d detections are on videos without ground truth (false positives)", other_video
        )


def _ordered(columns: _Columns) -> _Columns:
    """Each segment as [min, max] of its two times (intervalsingleoverlapvalseconds)."""
    segments = np.sort(columns.segments, axis=1)
    return _Columns(columns.video, columns.label, segments, columns.score)


def _class_average_precision(
    truth: _Columns, ambiguous: _Columns, found: _Columns, c: int, thresholds, spec: Protocol
) -> np.ndarray:
    """AP of class ``c`` at each threshold (TH14eventdetpr.m, then prap; or eval_detection.py's
    compute_average_precision_detection)."""
    det, matched = _class_matches(truth, found, c, thresholds, spec)
    if len(det) == 0:
        return np.zeros(len(thresholds))
    npos = int((truth.label == c).sum())
    tp = matched >= 0
    counted = np.ones_like(tp)
    if spec.use_ambiguous:
        counted = tp | ~_in_ambiguous(ambiguous, found, det)
    score = found.score[det]
    return np.array(
        [
            _average_precision(tp[t][counted[t]], score[counted[t]], npos, spec)
            for t in range(len(thresholds))
        ]
    )


def _class_matches(
    truth: _Columns, found: _Columns, c: int, thresholds, spec: Protocol
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of class ``c``'s detections in ranking order (video code, then descending
    score, stable; or input order) and ``matched[threshold, k]``: the row of ``truth`` that
    detection ``k`` matched, or -1 (TH14eventdetpr.m's loop over videos)."""
    det = np.flatnonzero(found.label == c)
    # Per-video order of the kits: video code, then descending score, stable in file order.
    det = det[np.lexsort((det, -found.score[det], found.video[det]))]
    if spec.ties == "input_order":
        det = np.sort(det)
    matched = np.full((len(thresholds), len(det)), -1, dtype=np.int64)
    videos = found.video[det]
    for video in np.unique(videos):
        rows = np.flatnonzero(videos == video)
        instances = np.flatnonzero((truth.video == video) & (truth.label == c))
        gt_segments = truth.segments[instances]
        det_segments = found.segments[det[rows]]
        if spec.matching == "ground_truth":
            order = np.arange(len(rows))
            taken = _match_ground_truth_driven(gt_segments, det_segments, thresholds, spec.strict)
        else:
            order = np.argsort(-found.score[det[rows]], kind="stable")
            taken = _match_score_driven(gt_segments, det_segments[order], thresholds)
        # -1 (no instance) picks the -1 appended to the instance rows.
        matched[:, rows[order]] = np.append(instances, -1)[taken]
    return det, matched


def _in_ambiguous(ambiguous: _Columns, found: _Columns, det: np.ndarray) -> np.ndarray:
    """Whether each detection of ``det`` overlaps an Ambiguous interval of its video."""
    inside = np.zeros(len(det), dtype=bool)
    videos = found.video[det]
    for video in np.unique(videos):
        rows = np.flatnonzero(videos == video)
        amb_segments = ambiguous.segments[ambiguous.video == video]
        inside[rows] = (temporal_iou(amb_segments, found.segments[det[rows]]) > 0).any(axis=0)
    return inside


def _match_ground_truth_driven(
    gt_segments: np.ndarray, det_segments: np.ndarray, thresholds: np.ndarray, strict: bool
) -> np.ndarray:
    """TH14eventdetpr.m's matching: each instance in file order takes the free detection of
    highest overlap (the first among equals, detections in per-video score order) when that
    overlap passes the threshold. Returns ``taken[threshold, detection]``: the index of the
    instance each detection took, or -1."""
    taken = np.full((len(thresholds), len(det_segments)), -1, dtype=np.int64)
    if len(gt_segments) == 0:
        return taken
    overlap = temporal_iou(gt_segments, det_segments)
    for t, threshold in enumerate(thresholds):
        free_overlap = overlap.copy()
        for k in range(len(gt_segments)):
            best = int(np.argmax(free_overlap[k]))
            value = free_overlap[k, best]
            if value > threshold if strict else value >= threshold:
                taken[t, best] = k
                free_overlap[:, best] = -np.inf
    return taken


def _match_score_driven(
    gt_segments: np.ndarray, det_segments: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """compute_average_precision_detection's matching: detections in descending score order
    each take the unmatched instance of highest tIoU ≥ threshold (the later instance among
    equal tIoU, as the official reversed argsort does). Returns ``taken[threshold,
    detection]``: the index of the instance each detection took, or -1."""
    taken = np.full((len(thresholds), len(det_segments)), -1, dtype=np.int64)
    if len(gt_segments) == 0:
        return taken
    overlap = temporal_iou(det_segments, gt_segments)
    locked = np.zeros((len(thresholds), len(gt_segments)), dtype=bool)
    reachable = np.flatnonzero(overlap.max(axis=1) >= thresholds.min())
    for i in reachable:
        candidates = (overlap[i][None, :] >= thresholds[:, None]) & ~locked
        hit = candidates.any(axis=1)
        # The last maximum: argmax over the reversed row.
        values = np.where(candidates, overlap[i][None, :], -1.0)[:, ::-1]
        best = len(gt_segments) - 1 - np.argmax(values, axis=1)
        locked[hit, best[hit]] = True
        taken[hit, i] = best[hit]
    return taken


def _average_precision(tp: np.ndarray, score: np.ndarray, npos: int, spec: Protocol) -> float:
    """AP of the counted detections, given in per-video order (prap, or
    interpolated_prec_rec); equal scores rank per ``spec.ties``."""
    if spec.ties == "tp_first":
        first = np.argsort(~tp, kind="stable")  # the stable ranking keeps them ahead
        tp, score = tp[first], score[first]
    recall, precision = precision_recall(score, tp, npos)
    if spec.interpolation == "11_point":
        return eleven_point_ap(recall, precision)
    if spec.interpolation == "none":
        hits = np.diff(recall, prepend=0.0) > 0  # recall rises at each true positive
        return float(precision[hits].sum() / npos)
    return interpolated_prec_rec(precision, recall)


def precision_recall(
    score: Sequence[float], true_positive: Sequence[bool], npos: int
) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) after each detection, ranked by descending score, equal scores in
    the order given: the curve that :func:`evaluate`'s AP summarises. ``npos`` is the number
    of instances (at least one)."""
    if npos < 1:
        raise ScnnError("precision and recall need at least one ground-truth instance")
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    hits = np.asarray(true_positive, dtype=bool)[order]
    tp_cumsum = np.cumsum(hits)
    return tp_cumsum / npos, tp_cumsum / np.arange(1, len(hits) + 1)


def eleven_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """prap.m of the official kit: the mean over recall levels 0, 0.1, …, 1 of the best
    precision at recall ≥ that level (0 where none)."""
    ap = 0.0
    for level in ELEVEN_RECALL_POINTS:
        reached = precision[recall >= level]
        ap += (reached.max() if len(reached) else 0.0) / len(ELEVEN_RECALL_POINTS)
    return float(ap)


def interpolated_prec_rec(precision: np.ndarray, recall: np.ndarray) -> float:
    """interpolated_prec_rec of ActivityNet's utils.py: area under the precision envelope
    (VOC 2010+ all-point interpolation)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mprec[steps]))


@dataclass(frozen=True)
class ProposalRecall:
    """Recall of class-agnostic proposals: ``recall[threshold, n]`` at the average number
    ``proposals_per_video[n]`` of proposals kept per video; ``average_recall`` is its mean over
    thresholds (AR@AN)."""

    iou_thresholds: tuple[float, ...]
    proposals_per_video: np.ndarray
    recall: np.ndarray

    @property
    def average_recall(self) -> np.ndarray:
        return self.recall.mean(axis=0)


def proposal_recall(
    gt: GroundTruth,
    proposals: Sequence[Detection],
    average_numbers: Sequence[float] = (1, 5, 10, 50, 100),
    iou_thresholds: Sequence[float] = ACTIVITYNET_IOU_THRESHOLDS,
) -> ProposalRecall:
    """AR@AN as eval_proposal.py's average_recall_vs_avg_nr_proposals: to reach an average of
    AN proposals per video, each video keeps the same fraction of its proposals (its best by
    score, ``int(count × fraction)``); an instance is recalled when some kept proposal of its
    video has tIoU ≥ threshold. Videos are those with ground-truth instances; labels are
    ignored."""
    videos = sorted({i.video for i in gt.instances})
    video_code = {name: n for n, name in enumerate(videos)}
    kept_proposals = [p for p in proposals if p.video in video_code]
    truth = _columns(gt.instances, video_code, {})
    found = _columns(kept_proposals, video_code, {})
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    best_overlaps = []  # per video: (instances, proposals by descending score) tIoU
    for v in range(len(videos)):
        rows = np.flatnonzero(found.video == v)
        rows = rows[np.argsort(-found.score[rows], kind="stable")]
        best_overlaps.append(temporal_iou(truth.segments[truth.video == v], found.segments[rows]))
    total = max(len(kept_proposals), 1)
    recall = np.zeros((len(thresholds), len(average_numbers)))
    achieved = np.zeros(len(average_numbers))
    for n, average_number in enumerate(average_numbers):
        fraction = min(1.0, average_number * len(videos) / total)
        for overlap in best_overlaps:
            count = int(overlap.shape[1] * fraction)
            achieved[n] += count
            hits = overlap[:, :count, None] >= thresholds[None, None, :]
            recall[:, n] += hits.any(axis=1).sum(axis=0)
    recall /= max(len(truth.score), 1)
    return ProposalRecall(
        tuple(float(t) for t in thresholds), achieved / max(len(videos), 1), recall
    )


def format_result(result: EvaluationResult) -> str:
    """A plain-text table: per-class AP and mAP per threshold, and what was evaluated."""
    header = f"{'class':<20}" + "".join(f"{t:>8.2f}" for t in result.iou_thresholds)
    lines = [
        f"protocol {result.protocol}: {result.num_detections} detections, "
        f"{result.num_ground_truth} instances in {result.num_videos} videos",
        header,
    ]
    for n, name in enumerate(result.classes):
        lines.append(f"{name:<20}" + "".join(f"{v:8.4f}" for v in result.average_precision[:, n]))
    lines.append(f"{'mAP':<20}" + "".join(f"{v:8.4f}" for v in result.mean_ap))
    if len(result.iou_thresholds) > 1:
        lines.append(f"average mAP {result.average_map:.4f}")
    return "\n".join(lines)


def format_proposal_recall(result: ProposalRecall) -> str:
    """A plain-text table of recall per IoU threshold and AR at each average number."""
    header = f"{'proposals/video':<16}" + "".join(f"{t:>7.2f}" for t in result.iou_thresholds)
    lines = [header + f"{'AR':>8}"]
    for n, count in enumerate(result.proposals_per_video):
        cells = "".join(f"{v:7.4f}" for v in result.recall[:, n])
        lines.append(f"{count:<16.1f}{cells}{result.average_recall[n]:8.4f}")
    return "\n".join(lines)


def load_scored_ground_truth(path: str | Path, subset: str | None) -> GroundTruth:
    """Ground truth to score detections against: with no instance (a subset no video is in,
    a file without actions) every AP would be NaN, so that is an error naming the file."""
    gt = formats.load_ground_truth(path, subset)
    if not gt.instances:
        where = f" in subset {subset!r}" if subset else ""
        raise AnnotationError(f"no ground-truth instances{where}: nothing to evaluate", path)
    return gt


def evaluate_files(
    gt_path: Path,
    pred_path: Path,
    protocol: str,
    iou_thresholds: Sequence[float] | None = None,
    *,
    subset: str | None = None,
    class_table: Mapping[int, str] | None = None,
    proposals: bool = False,
    json_path: Path | None = None,
) -> str:
    """``scnn evaluate``: ground truth and detections read from files, evaluated under
    ``protocol``; the text to print (with proposal recall when ``proposals``), the results also
    written as JSON to ``json_path``."""
    gt = load_scored_ground_truth(gt_path, subset)
    detections = formats.load_detections(pred_path, gt.classes, class_table)
    result = evaluate(gt, detections, protocol, iou_thresholds)
    text = format_result(result)
    if proposals:
        text += "\n" + format_proposal_recall(proposal_recall(gt, detections))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(result.to_dict(), indent=1) + "\n")
    return text
