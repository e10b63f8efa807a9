"""Detection and evaluation on stored network outputs, for the studies in benchmarks/accuracy/.

ablation.py and accuracy.py there score every window of every test video once per network
(window_logits). Proposal thresholds, "no proposal network", the softmax's precision, the
window-length prior, the NMS rule and boundary voting are then applied here, without running a
network again: a window's scores do not depend on which other windows survive, so this gives
exactly the detections ``scnn detect`` would give with those settings. It lives beside the
test that checks this against the Detector (test_offline_detection.py); the studies import it
from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from scnn.clips import ClipConfig, assemble_clips
from scnn.evaluate import evaluate, match_detections, precision_recall, proposal_recall
from scnn.pipeline import probabilities
from scnn.postprocess import postprocess
from scnn.records import Detection, GroundTruth, ScoredWindows
from scnn.runtime import CPU_BATCH_SIZE  # the detector's clips per call, so the same sums
from scnn.windows import WindowConfig, temporal_iou, window_grid

EVAL_IOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
PROTOCOLS = ("scnn", "activitynet")
AUTHORS_NMS_OFFSET = 0.1  # the authors' NMS threshold: evaluation IoU minus this (method.md §4)
AVERAGE_NUMBERS = (1, 5, 10, 50, 100)  # proposals per video for AR@AN
PR_IOU = 0.5  # evaluation IoU of the stored precision-recall curves
PR_POINTS = 200  # at most this many points of each curve are kept


@dataclass(frozen=True, eq=False)
class VideoGrid:
    """Every window of every test video, video by video in the order given, each video's
    windows in window_grid order (by length, then start). Row ``i`` of a stored score array
    is window ``i`` here."""

    videos: np.ndarray  # (N,) object, video names
    window_frames: np.ndarray  # (N,) int64
    start_frame: np.ndarray  # (N,) int64, 1-based
    end_frame: np.ndarray  # (N,) int64, inclusive
    fps: float

    def __len__(self) -> int:
        return len(self.videos)

    def segments_s(self) -> np.ndarray:
        """``(N, 2)`` seconds, the authors' ``frame / fps`` convention (windows.py)."""
        return np.stack([self.start_frame / self.fps, self.end_frame / self.fps], axis=1)


def grid_of_videos(num_frames: Mapping[str, int], windows: WindowConfig, fps: float) -> VideoGrid:
    """The window grid of each video in ``num_frames`` (name → frames), concatenated."""
    names, lengths, starts, ends = [], [], [], []
    for video, count in num_frames.items():
        grid = window_grid(count, windows)
        names.append(np.full(len(grid), video, dtype=object))
        lengths.append(grid.length_frames)
        starts.append(grid.start_frame)
        ends.append(grid.end_frame)
    return VideoGrid(
        np.concatenate(names),
        np.concatenate(lengths),
        np.concatenate(starts),
        np.concatenate(ends),
        fps,
    )


@torch.inference_mode()
def window_logits(
    network: torch.nn.Module,
    grid: VideoGrid,
    frames: Mapping[str, np.ndarray],
    clip: ClipConfig,
    device: torch.device,
) -> np.ndarray:
    """``network``'s outputs on every window of ``grid`` (centre crops), ``(N, outputs)``."""
    network.to(device).eval()
    parts = []
    for video in dict.fromkeys(grid.videos):
        rows = np.flatnonzero(grid.videos == video)
        for first in range(0, len(rows), CPU_BATCH_SIZE):
            batch = rows[first : first + CPU_BATCH_SIZE]
            clips = assemble_clips(
                frames[video],
                grid.start_frame[batch],
                grid.window_frames[batch],
                clip.convention(),
                False,
            )
            parts.append(network(clips.to(device)).float().cpu().numpy())
    return np.concatenate(parts)


def softmax(logits: np.ndarray, float64: bool = True) -> np.ndarray:
    """The detector's softmax (float64, scnn.pipeline.probabilities), or the float32 one of the
    S-CNN release."""
    if float64:
        return probabilities(torch.from_numpy(logits)).numpy()
    return torch.softmax(torch.from_numpy(logits).float(), dim=1).double().numpy()


def scored_windows(
    grid: VideoGrid,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    keep: np.ndarray | None = None,
) -> ScoredWindows:
    """The windows in ``keep`` (all when None) labelled as the detector does: class = argmax of
    the ``(N, K+1)`` softmax ``probabilities``, score = that probability."""
    rows = np.arange(len(grid)) if keep is None else np.flatnonzero(keep)
    kept = np.asarray(probabilities, dtype=np.float64)[rows]
    label = kept.argmax(axis=1) if len(rows) else np.zeros(0, np.int64)
    return ScoredWindows(
        videos=grid.videos[rows],
        window_frames=grid.window_frames[rows],
        start_frame=grid.start_frame[rows],
        end_frame=grid.end_frame[rows],
        start_s=grid.start_frame[rows] / grid.fps,
        end_s=grid.end_frame[rows] / grid.fps,
        label_index=label.astype(np.int64),
        score=kept[np.arange(len(rows)), label] if len(rows) else np.zeros(0),
        classes=classes,
    )


def detect_offline(
    grid: VideoGrid,
    localization: np.ndarray,
    proposal: np.ndarray | None,
    classes: tuple[str, ...],
    nms_iou: float,
    proposal_threshold: float = 0.0,
    float64: bool = True,
    vote_iou: float | None = None,
) -> list[Detection]:
    """The detections ``scnn detect`` gives from the stored ``localization`` and ``proposal``
    logits of every window of ``grid``: windows with P(action) ≥ ``proposal_threshold`` (0: the
    proposal network is not used), labelled from the localization softmax in float64 or float32,
    post-processed with NMS at ``nms_iou`` and boundary voting at ``vote_iou`` (None: off)."""
    keep = None
    if proposal_threshold > 0:
        keep = softmax(proposal, float64=False)[:, 1] >= proposal_threshold
    windows = scored_windows(grid, softmax(localization, float64), classes, keep)
    return postprocess(windows, nms_iou, vote_iou=vote_iou)


def oracle_windows(grid: VideoGrid, gt: GroundTruth) -> ScoredWindows:
    """Every window labelled with the class of the instance it overlaps most and scored by that
    IoU; windows overlapping no instance are background. Score = IoU (not the loss's optimum
    IoU^(1/8): the same ranking within a class, so NMS and AP without the prior agree)."""
    class_index = {name: k + 1 for k, name in enumerate(gt.classes)}
    label = np.zeros(len(grid), np.int64)
    score = np.zeros(len(grid))
    segments = grid.segments_s()
    for video in np.unique(grid.videos):
        rows = np.flatnonzero(grid.videos == video)
        instances = [i for i in gt.instances if i.video == video]
        if not instances:
            continue
        iou = temporal_iou(segments[rows], np.array([(i.start_s, i.end_s) for i in instances]))
        best = iou.argmax(axis=1)
        best_iou = iou[np.arange(len(rows)), best]
        classes = np.array([class_index[i.label] for i in instances])
        label[rows] = np.where(best_iou > 0, classes[best], 0)
        score[rows] = best_iou
    probabilities = np.zeros((len(grid), len(gt.classes) + 1))
    probabilities[np.arange(len(grid)), label] = np.where(label > 0, score, 1.0)
    return scored_windows(grid, probabilities, gt.classes)


def nms_threshold(rule: float | None, eval_iou: float) -> float:
    """A fixed NMS IoU threshold (``rule``), or the authors' evaluation IoU − 0.1 (None)."""
    if rule is not None:
        return rule
    return round(eval_iou - AUTHORS_NMS_OFFSET, 6)


def map_table(
    gt: GroundTruth,
    windows: ScoredWindows,
    prior: Mapping[int, np.ndarray] | None,
    nms_rule: float | None,
    ious: Sequence[float] = EVAL_IOUS,
) -> dict[str, list[float]]:
    """mAP at each IoU of ``ious`` under each protocol of PROTOCOLS, detections made with
    ``prior`` (None: none) and the NMS threshold of :func:`nms_threshold`."""
    table: dict[str, list[float]] = {protocol: [] for protocol in PROTOCOLS}
    for eval_iou in ious:
        detections = postprocess(windows, nms_threshold(nms_rule, eval_iou), prior=prior)
        for protocol in PROTOCOLS:
            result = evaluate(gt, detections, protocol, iou_thresholds=[eval_iou])
            table[protocol].append(float(result.mean_ap[0]))
    return table


def pooled_pr_curve(
    gt: GroundTruth,
    windows: ScoredWindows,
    prior: Mapping[int, np.ndarray] | None,
    nms_rule: float | None,
) -> dict[str, list[float]]:
    """Precision and recall at IoU PR_IOU over all classes pooled (detections ranked by score,
    ActivityNet matching), at most PR_POINTS points."""
    detections = postprocess(windows, nms_threshold(nms_rule, PR_IOU), prior=prior)
    hits = match_detections(gt, detections, PR_IOU, "activitynet") >= 0
    recall, precision = precision_recall([d.score for d in detections], hits, len(gt.instances))
    step = max(1, len(recall) // PR_POINTS)
    rows = np.unique(np.append(np.arange(0, len(recall), step), len(recall) - 1))
    rows = rows[rows >= 0]  # no detections: an empty curve
    return {
        "recall": [float(v) for v in recall[rows]],
        "precision": [float(v) for v in precision[rows]],
    }


def proposal_stage_recall(
    gt: GroundTruth, grid: VideoGrid, p_action: np.ndarray, threshold: float
) -> dict[str, float | list[float]]:
    """AR@AN (ActivityNet tIoU 0.5:0.95) of the windows with P(action) ≥ ``threshold``, ranked
    by P(action), and how many windows per video pass."""
    keep = np.flatnonzero(p_action >= threshold)
    segments = grid.segments_s()
    proposals = [
        Detection(
            str(grid.videos[i]),
            float(segments[i, 0]),
            float(segments[i, 1]),
            "action",
            float(p_action[i]),
        )
        for i in keep
    ]
    result = proposal_recall(gt, proposals, AVERAGE_NUMBERS)
    return {
        "threshold": threshold,
        "kept_fraction": len(keep) / max(len(grid), 1),
        "kept_per_video": len(keep) / max(len(np.unique(grid.videos)), 1),
        "average_numbers": list(AVERAGE_NUMBERS),
        "average_recall": [float(v) for v in result.average_recall],
        "recall_all_at_0.5": _recall_all(gt, proposals),
    }


def _recall_all(gt: GroundTruth, proposals: Sequence[Detection]) -> float:
    """Fraction of instances that some kept proposal overlaps with tIoU ≥ 0.5."""
    if not gt.instances:
        return 0.0
    result = proposal_recall(gt, proposals, (1e12,), (0.5,))
    return float(result.recall[0, 0])
