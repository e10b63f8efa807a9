"""Where a detector goes wrong: the error diagnosis of DETAD over ground truth and detections.

DETAD is Alwassel, Caba Heilbron, Escorcia and Ghanem, "Diagnosing Error in Temporal Action
Detectors", ECCV 2018 (code: HumamAlwassel/DETAD, src/action_detector_diagnosis.py and
src/false_negative_analysis.py). Detections are matched exactly as ``scnn evaluate --protocol
activitynet`` matches them, at one tIoU threshold (:func:`scnn.evaluate.match_detections`), and
the evaluator decides which classes count: those with ground-truth instances.

- Each detection that is not a true positive gets one error type, the first that applies:
  double_detection (tIoU ≥ iou with an instance of its class: under this matching such an
  instance was already taken by a detection ranked higher), wrong_label (tIoU ≥ iou with an
  instance of another class), localization (MIN_OVERLAP ≤ tIoU < iou with an instance of its
  class), confusion (the same with another class), background (tIoU < MIN_OVERLAP with every
  instance, or a video without ground truth). DETAD's code (``analyze_fp_error_types``)
  tests only the instance of highest tIoU: a detection at 0.6 with a taken instance of its
  class and 0.8 with another class is a double detection here, a wrong label there.
- The mAP gained if each error type were removed: per class, the detections of that type are
  dropped from the ranking and AP recomputed with the evaluator's precision-recall and
  interpolation (DETAD's ``ap_gain``, at one threshold).
- Outcomes among each class's best-scored detections, up to 1×, 2×, … 10× its instance count
  (DETAD's Top-1G … Top-10G).
- Missed instances by length, in DETAD's THUMOS14 bins in seconds (false_negative_analysis.py
  with ``is_thumos14``; right-closed as its ``pd.cut``): XS (0, 3], S (3, 6], M (6, 12],
  L (12, 18], XL > 18; and by the number of ground-truth instances in the instance's video,
  all classes together, one group per number that occurs. DETAD's "# instances" counts the
  instance's own class and bins it (XS 1, S 2–4, M 5–8, L ≥ 9 on ActivityNet; 1, 2–40, 41–80,
  > 80 on THUMOS14); the synthetic benchmark's videos hold 2–4 instances, at most one per
  class, which either rule would put in a single group.
- The confusion matrix of wrong labels: ground-truth class × detected class.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from scnn.errors import ScnnError
from scnn.evaluate import (
    evaluate,
    interpolated_prec_rec,
    load_scored_ground_truth,
    match_detections,
    precision_recall,
)
from scnn.fileio import atomic_write_text
from scnn.formats import load_detections
from scnn.records import Detection, GroundTruth
from scnn.report import write_png
from scnn.windows import temporal_iou

PROTOCOL = "activitynet"  # whose matching decides the true positives
DEFAULT_IOU = 0.5
MIN_OVERLAP = 0.1  # DETAD's min_tiou_thr: below this tIoU with every instance, background
TRUE_POSITIVE = "true_positive"
ERROR_TYPES = ("double_detection", "wrong_label", "localization", "confusion", "background")
OUTCOMES = (TRUE_POSITIVE, *ERROR_TYPES)  # a detection's outcome is its index here
IGNORED = -1  # the outcome of a detection of a class the evaluator does not evaluate
TOP_FACTORS = tuple(range(1, 11))  # Top-1G … Top-10G: 1× … 10× the class's instance count
# (name, upper edge): a value goes in the first bin whose edge it does not exceed.
LENGTH_BINS_S = (("XS", 3.0), ("S", 6.0), ("M", 12.0), ("L", 18.0), ("XL", np.inf))
JSON_FILE = "diagnosis.json"
PICTURES = {
    "false_positives": "false_positives.png",
    "false_negatives": "false_negatives.png",
    "wrong_labels": "wrong_labels.png",
}


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Per detection: the instance it matched (index into ``gt.instances``, or -1), its
    outcome (index into OUTCOMES, or IGNORED) and, for a wrong label, the other-class
    instance of highest tIoU (else -1)."""

    matched: np.ndarray
    outcome: np.ndarray
    wrong_label_of: np.ndarray


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """The diagnosis of one set of detections at tIoU ``iou``; arrays by evaluated class."""

    iou: float
    classes: tuple[str, ...]
    instances: np.ndarray  # (C,) ground-truth instances per class
    counts: np.ndarray  # (C, len(OUTCOMES)) each class's detections by outcome
    average_precision: np.ndarray  # (C,) the evaluator's AP at ``iou``
    ap_without: np.ndarray  # (len(ERROR_TYPES), C) AP with that error type's detections removed
    top_counts: np.ndarray  # (len(TOP_FACTORS), len(OUTCOMES)) summed over classes
    missed_by_length: np.ndarray  # (len(LENGTH_BINS_S), 2): instances, missed
    missed_by_count: np.ndarray  # (counts, 3): instances in the video, instances, missed
    wrong_labels: np.ndarray  # (C, C) [ground-truth class, detected class]
    ignored_detections: int  # of classes without ground truth, as the evaluator ignores them

    @property
    def mean_ap(self) -> float:
        return float(self.average_precision.mean()) if len(self.classes) else 0.0

    @property
    def map_gain(self) -> dict[str, float]:
        """The mAP gained if each error type's detections were removed."""
        if not self.classes:
            return dict.fromkeys(ERROR_TYPES, 0.0)
        gains = self.ap_without.mean(axis=1) - self.mean_ap
        return {name: float(g) for name, g in zip(ERROR_TYPES, gains, strict=True)}

    def to_dict(self) -> dict:
        per_class = {
            name: {
                "instances": int(self.instances[c]),
                **_outcome_dict(self.counts[c]),
                "false_negatives": int(self.instances[c] - self.counts[c, 0]),
                "AP": float(self.average_precision[c]),
            }
            for c, name in enumerate(self.classes)
        }
        total = self.counts.sum(axis=0)
        return {
            "iou": self.iou,
            "protocol": PROTOCOL,
            "instances": int(self.instances.sum()),
            "detections": int(total.sum()),
            "ignored_detections": self.ignored_detections,
            **_outcome_dict(total),
            "false_negatives": int(self.instances.sum() - total[0]),
            "mAP": self.mean_ap,
            "mAP_gain": self.map_gain,
            "per_class": per_class,
            "top_detections": [
                {"factor": factor, "detections": int(row.sum()), **_outcome_dict(row)}
                for factor, row in zip(TOP_FACTORS, self.top_counts, strict=True)
            ],
            "missed_by_length": {
                name: {"instances": int(n), "missed": int(m)}
                for (name, _), (n, m) in zip(LENGTH_BINS_S, self.missed_by_length, strict=True)
            },
            "missed_by_instances_per_video": {
                str(count): {"instances": int(n), "missed": int(m)}
                for count, n, m in self.missed_by_count
            },
            "wrong_labels": {
                "classes": list(self.classes),
                "matrix": self.wrong_labels.tolist(),
            },
        }


def _outcome_dict(row: np.ndarray) -> dict:
    """``true_positives`` and ``false_positives`` by type, from a row of OUTCOMES counts."""
    return {
        "true_positives": int(row[0]),
        "false_positives": {name: int(n) for name, n in zip(ERROR_TYPES, row[1:], strict=True)},
    }


# ---------------------------------------------------------------- the analysis


def classify_detections(gt: GroundTruth, detections: Sequence[Detection], iou: float) -> Outcomes:
    """Each detection's outcome at tIoU ``iou`` under the rules of the module docstring."""
    matched = match_detections(gt, detections, iou, PROTOCOL)
    outcome = np.full(len(detections), IGNORED, dtype=np.int64)
    wrong_label_of = np.full(len(detections), -1, dtype=np.int64)
    evaluated = {i.label for i in gt.instances}
    code = {name: k for k, name in enumerate(sorted(evaluated))}
    found_label = np.array([code.get(d.label, -1) for d in detections], dtype=np.int64)
    truth_label = np.array([code[i.label] for i in gt.instances], dtype=np.int64)
    found_segments, truth_segments = _segments(detections), _segments(gt.instances)
    truth_by_video = _by_video(gt.instances, range(len(gt.instances)))
    for video, rows in _by_video(detections, np.flatnonzero(found_label >= 0)).items():
        truth = truth_by_video.get(video, np.zeros(0, dtype=np.int64))
        overlap = temporal_iou(found_segments[rows], truth_segments[truth])
        same = found_label[rows][:, None] == truth_label[truth][None, :]
        best_same = np.where(same, overlap, 0.0).max(axis=1, initial=0.0)
        other = np.where(same, 0.0, overlap)
        best_other = other.max(axis=1, initial=0.0)
        outcome[rows] = np.select(
            [
                matched[rows] >= 0,
                best_same >= iou,
                best_other >= iou,
                best_same >= MIN_OVERLAP,
                best_other >= MIN_OVERLAP,
            ],
            list(range(len(OUTCOMES) - 1)),
            OUTCOMES.index("background"),
        )
        wrong = outcome[rows] == OUTCOMES.index("wrong_label")
        if wrong.any():
            wrong_label_of[rows[wrong]] = truth[other[wrong].argmax(axis=1)]
    return Outcomes(matched, outcome, wrong_label_of)


def diagnose(
    gt: GroundTruth, detections: Sequence[Detection], iou: float = DEFAULT_IOU
) -> Diagnosis:
    """The diagnosis of ``detections`` against ``gt`` at tIoU ``iou`` (module docstring)."""
    if not 0.0 < iou <= 1.0:
        raise ScnnError(f"diagnosis IoU must be in (0, 1], got {iou}")
    result = evaluate(gt, detections, PROTOCOL, [iou])
    classes = result.classes
    found = classify_detections(gt, detections, iou)
    class_code = {name: c for c, name in enumerate(classes)}
    instances = np.bincount(
        [class_code[i.label] for i in gt.instances], minlength=len(classes)
    ).astype(np.int64)
    counts = np.zeros((len(classes), len(OUTCOMES)), dtype=np.int64)
    ap_without = np.zeros((len(ERROR_TYPES), len(classes)))
    top_counts = np.zeros((len(TOP_FACTORS), len(OUTCOMES)), dtype=np.int64)
    score = np.array([d.score for d in detections], dtype=np.float64)
    label = np.array([class_code.get(d.label, -1) for d in detections], dtype=np.int64)
    for c in range(len(classes)):
        rows = np.flatnonzero(label == c)
        rows = rows[np.argsort(-score[rows], kind="stable")]  # the evaluator's ranking
        outcome = found.outcome[rows]
        counts[c] = np.bincount(outcome, minlength=len(OUTCOMES))
        for t in range(len(ERROR_TYPES)):
            kept = outcome != t + 1
            ap_without[t, c] = _average_precision(
                score[rows][kept], outcome[kept] == 0, instances[c]
            )
        for f, factor in enumerate(TOP_FACTORS):
            top_counts[f] += np.bincount(outcome[: factor * instances[c]], minlength=len(OUTCOMES))
    wrong_labels = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for d in np.flatnonzero(found.wrong_label_of >= 0):
        truth = gt.instances[found.wrong_label_of[d]]
        wrong_labels[class_code[truth.label], label[d]] += 1
    hit = np.zeros(len(gt.instances), dtype=bool)
    hit[found.matched[found.matched >= 0]] = True
    return Diagnosis(
        iou,
        classes,
        instances,
        counts,
        result.average_precision[0],
        ap_without,
        top_counts,
        _missed_by_length(gt, hit),
        _missed_by_count(gt, hit),
        wrong_labels,
        int((found.outcome == IGNORED).sum()),
    )


def _average_precision(score: np.ndarray, true_positive: np.ndarray, npos: int) -> float:
    """ActivityNet's AP of one class's ranked detections (the evaluator's own functions)."""
    recall, precision = precision_recall(score, true_positive, npos)
    return interpolated_prec_rec(precision, recall)


def _missed_by_length(gt: GroundTruth, hit: np.ndarray) -> np.ndarray:
    """(instances, missed) per bin of LENGTH_BINS_S (right-closed, as DETAD's pd.cut)."""
    length_s = np.array([i.end_s - i.start_s for i in gt.instances], dtype=np.float64)
    edges = [edge for _, edge in LENGTH_BINS_S]
    bins = np.searchsorted(edges, length_s, side="left")  # the first edge ≥ the length
    return np.stack(
        [np.bincount(bins, minlength=len(edges)), np.bincount(bins[~hit], minlength=len(edges))],
        axis=1,
    )


def _missed_by_count(gt: GroundTruth, hit: np.ndarray) -> np.ndarray:
    """Rows (instances in the video, instances, missed), one per count that occurs."""
    per_video = Counter(i.video for i in gt.instances)
    count = np.array([per_video[i.video] for i in gt.instances], dtype=np.int64)
    return np.array(
        [(n, (count == n).sum(), (count[~hit] == n).sum()) for n in np.unique(count)],
        dtype=np.int64,
    ).reshape(-1, 3)


def _by_video(records: Sequence, rows: Sequence[int]) -> dict[str, np.ndarray]:
    """``rows`` (indices into ``records``) grouped by their record's video, in order."""
    groups: dict[str, list[int]] = {}
    for n in rows:
        groups.setdefault(records[n].video, []).append(n)
    return {video: np.array(group, dtype=np.int64) for video, group in groups.items()}


def _segments(records: Sequence) -> np.ndarray:
    """``(N, 2)`` start and end seconds, as given (the ActivityNet protocol's reading)."""
    return np.array([(r.start_s, r.end_s) for r in records], dtype=np.float64).reshape(-1, 2)


# ---------------------------------------------------------------- pictures


def _outcome_colours() -> dict[str, tuple]:
    """True positives green; each error type its own colour, the same in every picture."""
    cmap = colormaps["tab10"]
    return {
        TRUE_POSITIVE: cmap(2),
        **{name: cmap(k) for k, name in zip((1, 3, 4, 0, 7), ERROR_TYPES, strict=True)},
    }


def plot_false_positives(diagnosis: Diagnosis) -> Figure:
    """DETAD's false-positive profile: outcomes among each class's top 1G … 10G detections
    (percent), and the mAP gained if each error type were removed."""
    colours = _outcome_colours()
    figure = Figure(figsize=(10, 4))
    profile, gains = figure.subplots(1, 2, width_ratios=(3, 2))
    totals = np.maximum(diagnosis.top_counts.sum(axis=1, keepdims=True), 1)
    percent = 100.0 * diagnosis.top_counts / totals
    x = np.arange(len(TOP_FACTORS))
    bottom = np.zeros(len(TOP_FACTORS))
    for k, name in enumerate(OUTCOMES):
        profile.bar(x, percent[:, k], bottom=bottom, color=colours[name], label=name)
        bottom += percent[:, k]
    profile.set_xticks(x, [f"{f}G" for f in TOP_FACTORS])
    profile.set_xlabel("top detections per class (G = its instance count)")
    profile.set_ylabel("detections (%)")
    profile.set_ylim(0, 100)
    profile.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    gain = diagnosis.map_gain
    y = np.arange(len(ERROR_TYPES))
    gains.barh(y, [gain[name] for name in ERROR_TYPES], color=[colours[n] for n in ERROR_TYPES])
    for row, name in enumerate(ERROR_TYPES):
        gains.annotate(
            f"{gain[name]:.3f}",
            (gain[name], row),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    gains.set_yticks(y, ERROR_TYPES)
    gains.invert_yaxis()
    gains.set_xlim(0, max(max(gain.values()) * 1.3, 0.01))
    gains.set_xlabel(f"mAP gain at tIoU {diagnosis.iou:g} if removed")
    figure.suptitle(f"false positives (mAP {diagnosis.mean_ap:.3f})", fontsize="medium")
    return figure


def plot_false_negatives(diagnosis: Diagnosis) -> Figure:
    """Missed instances (percent of their group) by length bin and by instances per video."""
    figure = Figure(figsize=(10, 3.5))
    by_length, by_count = figure.subplots(1, 2)
    count_table = diagnosis.missed_by_count
    _plot_missed(
        by_length,
        [name for name, _ in LENGTH_BINS_S],
        diagnosis.missed_by_length,
        "instance length: XS ≤ 3 s < S ≤ 6 s < M ≤ 12 s < L ≤ 18 s < XL",
    )
    _plot_missed(
        by_count,
        [str(n) for n in count_table[:, 0]],
        count_table[:, 1:],
        "instances in the video (all classes)",
    )
    figure.suptitle(f"false negatives at tIoU {diagnosis.iou:g}", fontsize="medium")
    return figure


def _plot_missed(axes, names: Sequence[str], table: np.ndarray, xlabel: str) -> None:
    """Bars of missed / instances per group, each labelled with its two counts."""
    percent = 100.0 * table[:, 1] / np.maximum(table[:, 0], 1)
    x = np.arange(len(names))
    axes.bar(x, percent, color="#cf222e")
    for b, (n, m) in enumerate(table):
        axes.annotate(
            f"{m}/{n}",
            (b, percent[b]),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            fontsize="x-small",
        )
    axes.set_xticks(x, names, fontsize="small")
    axes.set_ylim(0, 110)
    axes.set_xlabel(xlabel, fontsize="small")
    axes.set_ylabel("missed (%)")


def plot_wrong_labels(diagnosis: Diagnosis) -> Figure:
    """The confusion matrix of wrong-label errors, with counts."""
    size = 2.5 + 0.45 * len(diagnosis.classes)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.subplots()
    matrix = diagnosis.wrong_labels
    top = max(int(matrix.max(initial=0)), 1)
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=top)
    for (row, col), n in np.ndenumerate(matrix):
        colour = "white" if n > top / 2 else "black" if n else "#8c959f"
        axes.text(col, row, str(n), ha="center", va="center", fontsize="small", color=colour)
    ticks = np.arange(len(diagnosis.classes))
    axes.set_xticks(ticks, diagnosis.classes, rotation=45, ha="right", fontsize="small")
    axes.set_yticks(ticks, diagnosis.classes, fontsize="small")
    axes.set_xlabel("detected as")
    axes.set_ylabel("ground-truth class")
    axes.set_title(
        f"wrong-label errors at tIoU {diagnosis.iou:g}: {matrix.sum()}", fontsize="medium"
    )
    return figure


# ---------------------------------------------------------------- files and text


def write_diagnosis(diagnosis: Diagnosis, out: str | Path) -> None:
    """Write ``out/diagnosis.json`` and the three pictures, each atomically."""
    out = Path(out)
    text = json.dumps(diagnosis.to_dict(), indent=1) + "\n"
    atomic_write_text(out / JSON_FILE, text)
    write_png(plot_false_positives(diagnosis), out / PICTURES["false_positives"])
    write_png(plot_false_negatives(diagnosis), out / PICTURES["false_negatives"])
    write_png(plot_wrong_labels(diagnosis), out / PICTURES["wrong_labels"])


def diagnose_files(
    gt: str | Path,
    pred: str | Path,
    out: str | Path,
    *,
    iou: float = DEFAULT_IOU,
    subset: str | None = None,
    class_table: Mapping[int, str] | None = None,
) -> Diagnosis:
    """``scnn diagnose``: load ground truth and detections, diagnose, write ``out``."""
    truth = load_scored_ground_truth(gt, subset)
    diagnosis = diagnose(truth, load_detections(pred, truth.classes, class_table), iou)
    write_diagnosis(diagnosis, out)
    return diagnosis


def format_diagnosis(diagnosis: Diagnosis) -> str:
    """A plain-text summary: outcomes, mAP gains and missed instances."""
    summary = diagnosis.to_dict()
    lines = [
        f"tIoU {diagnosis.iou:g} ({PROTOCOL} matching): {summary['detections']} detections, "
        f"{summary['instances']} instances, mAP {diagnosis.mean_ap:.4f}",
        f"{'true_positives':<18}{summary['true_positives']:>6}",
    ]
    for name in ERROR_TYPES:
        count = summary["false_positives"][name]
        lines.append(f"{name:<18}{count:>6}   mAP gain if removed {diagnosis.map_gain[name]:+.4f}")
    lines.append(f"{'false_negatives':<18}{summary['false_negatives']:>6}")
    for title, key in (
        ("by length", "missed_by_length"),
        ("by instances per video", "missed_by_instances_per_video"),
    ):
        cells = ", ".join(f"{b}: {v['missed']}/{v['instances']}" for b, v in summary[key].items())
        lines.append(f"  missed {title}: {cells}")
    return "\n".join(lines)


def html_section(
    out: str | Path, gt: GroundTruth, detections: Sequence[Detection], iou: float
) -> str:
    """The report index's diagnosis: written under ``out/diagnosis``, returned as HTML."""
    diagnosis = diagnose(gt, detections, iou)
    write_diagnosis(diagnosis, Path(out) / "diagnosis")
    gain = diagnosis.map_gain
    summary = diagnosis.to_dict()
    rows = (
        f'<tr><th scope="row">{TRUE_POSITIVE}</th><td>{summary["true_positives"]}</td>'
        "<td></td></tr>\n"
    )
    rows += "".join(
        f'<tr><th scope="row">{name}</th><td>{summary["false_positives"][name]}</td>'
        f"<td>{gain[name]:+.3f}</td></tr>\n"
        for name in ERROR_TYPES
    )
    pictures = "".join(
        f'<img src="diagnosis/{html.escape(file)}" alt="{html.escape(name.replace("_", " "))}">\n'
        for name, file in PICTURES.items()
    )
    return (
        f"<h2>Error diagnosis at tIoU {iou:g}</h2>\n"
        '<table>\n<thead><tr><th scope="col">outcome</th><th scope="col">detections</th>'
        '<th scope="col">mAP gain if removed</th></tr></thead>\n'
        f"<tbody>\n{rows}</tbody>\n</table>\n"
        f'<p class="note">{summary["false_negatives"]} of {summary["instances"]} instances '
        f"missed; mAP {diagnosis.mean_ap:.3f}. Rules, bins and the JSON: "
        f'docs/diagnose.md; the numbers: <a href="diagnosis/{JSON_FILE}">{JSON_FILE}</a>.</p>\n'
        f"{pictures}"
    )
