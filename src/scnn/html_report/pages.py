"""The report's HTML: the index and the video pages, from the template and CSS/JS in
``report_assets/``; everything inline, so a page opens from file:// with no server."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from string import Template
from urllib.parse import quote

import numpy as np

from scnn.evaluate import EvaluationResult
from scnn.records import Detection, Instance
from scnn.report import class_colours

TICK_COUNT = 10  # about this many time labels under the timeline
PR_PICTURE = "precision_recall.png"


@dataclass(frozen=True)
class VideoPage:
    """One video's row in the index and what its page shows."""

    name: str
    page: str  # file name of the page inside the report folder
    duration_s: float
    media: str | None  # path of the playable copy, relative to the report folder
    note: str  # how the video got there ("copied", "re-encoded from ..."), or why it did not
    num_ground_truth: int
    num_detections: int
    num_true_positives: int | None  # None without ground truth


def asset(name: str) -> str:
    """The text of ``report_assets/name``, shipped inside the package."""
    return (files(__package__) / "report_assets" / name).read_text(encoding="utf-8")


def document(title: str, css: str, body: str, script: str = "") -> str:
    """A whole HTML page: ``page.html`` filled with the title, inline CSS, body and script."""
    return Template(asset("page.html")).substitute(
        title=html.escape(title),
        css=css,
        body=body,
        script=f"<script>\n{script}</script>\n" if script else "",
    )


def index_body(
    pages: Sequence[VideoPage],
    results: Mapping[str, EvaluationResult],
    iou_threshold: float,
    protocol: str,
) -> str:
    """The index: a row per video; with ground truth, the metrics and the PR picture, and the
    rule (``protocol``'s matching) that marks true positives."""
    parts = ["<h1>scnn report</h1>\n", "<h2>Videos</h2>\n<table>\n<thead><tr>"]
    headers = ["video", "duration (s)", "ground truth", "detections"]
    if results:
        headers.append(f"true positives at IoU {iou_threshold:g}")
    parts += [f'<th scope="col">{h}</th>' for h in headers]
    parts.append("</tr></thead>\n<tbody>\n")
    for page in pages:
        cells = [
            f'<a href="{quote(page.page)}">{html.escape(page.name)}</a>',
            f"{page.duration_s:.1f}",
            str(page.num_ground_truth),
            str(page.num_detections),
        ]
        if results:
            cells.append(str(page.num_true_positives))
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n")
    parts.append("</tbody>\n</table>\n")
    if not results:
        parts.append('<p class="note">No ground truth given: no metrics.</p>\n')
    for protocol, result in results.items():
        parts.append(_metrics_table(protocol, result))
    if results:
        parts.append(
            f'<h2>Precision and recall</h2>\n<img src="{PR_PICTURE}" width="600" height="450" '
            f'alt="precision-recall curve per class at IoU {iou_threshold:g}">\n'
            f'<p class="note">Each detection, by descending score, takes the best unmatched '
            f"instance of its class with IoU &ge; {iou_threshold:g} (the "
            f"{protocol} protocol's rule).</p>\n"
        )
    return "".join(parts)


def _metrics_table(protocol: str, result: EvaluationResult) -> str:
    header = "".join(f'<th scope="col">{t:.2f}</th>' for t in result.iou_thresholds)
    rows = [("mAP", result.mean_ap)] + [
        (name, result.average_precision[:, n]) for n, name in enumerate(result.classes)
    ]
    body = "".join(
        f'<tr><th scope="row">{html.escape(name)}</th>'
        + "".join(f"<td>{v:.3f}</td>" for v in values)
        + "</tr>\n"
        for name, values in rows
    )
    return (
        f"<h2>{html.escape(protocol)} protocol: AP per IoU threshold</h2>\n"
        f'<table>\n<thead><tr><th scope="col">class</th>{header}</tr></thead>\n'
        f"<tbody>\n{body}</tbody>\n</table>\n"
        f'<p class="note">average mAP {result.average_map:.3f} over {result.num_videos} videos, '
        f"{result.num_ground_truth} instances, {result.num_detections} detections</p>\n"
    )


def _hex(colour: tuple[float, float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in colour[:3])


def _segment(
    kind: str,
    segment: Instance | Detection,
    duration_s: float,
    colour: str,
    verdict: bool | None,
    iou_threshold: float,
) -> str:
    """A focusable button placed on the track, labelled for screen readers."""
    start_s, end_s = sorted((segment.start_s, segment.end_s))
    left = 100.0 * min(max(start_s / duration_s, 0.0), 1.0)
    width = 100.0 * min(max((end_s - start_s) / duration_s, 0.0), 1.0 - left / 100.0)
    label = f"{segment.label}, {start_s:.2f} s to {end_s:.2f} s"
    classes = ["seg", kind]
    style = f"left:{left:.3f}%;width:{width:.3f}%;background-color:{colour}"
    data = f' data-start="{start_s:.3f}"'
    if kind == "det":
        score = segment.score
        label = f"detection {label}, score {score:.3f}"
        style += f";opacity:{0.25 + 0.75 * min(max(score, 0.0), 1.0):.3f}"
        data += f' data-score="{score:.6f}"'
        if verdict is not None:
            classes.append("tp" if verdict else "fp")
            label += f", {'true' if verdict else 'false'} positive at IoU {iou_threshold:g}"
    else:
        label = f"ground truth {label}"
    return (
        f'<button type="button" class="{" ".join(classes)}" style="{style}"{data} '
        f'aria-label="{html.escape(label)}" title="{html.escape(label)}"></button>'
    )


def _ticks(duration_s: float) -> str:
    raw_step = duration_s / TICK_COUNT
    magnitude = 10 ** np.floor(np.log10(max(raw_step, 1e-9)))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    times = np.arange(0.0, duration_s + 1e-9, step)
    return "".join(
        f'<span class="tick" style="left:{100.0 * t / duration_s:.3f}%">{t:g}</span>' for t in times
    )


def video_body(
    page: VideoPage,
    classes: Sequence[str],
    truth: Sequence[Instance],
    detections: Sequence[Detection],
    flags: Sequence[bool] | None,
    iou_threshold: float,
) -> str:
    """A video's page: player, note, score slider and a truth and a detection track per class
    (``flags``: true positive or not per detection, None without ground truth)."""
    duration_s = max(page.duration_s, 1e-6)
    colours = {name: _hex(c) for name, c in class_colours(classes).items()}
    parts = [
        '<p><a href="index.html">&larr; all videos</a></p>\n',
        f"<h1>{html.escape(page.name)}</h1>\n",
    ]
    if page.media is not None:
        parts.append(
            f'<video id="player" controls preload="auto" src="{quote(page.media)}"></video>\n'
        )
    parts.append(f'<p class="note">{html.escape(page.note)}</p>\n')
    parts.append(
        '<div class="controls"><label for="min-score">minimum score</label>'
        '<input id="min-score" type="range" min="0" max="1" step="0.01" value="0">'
        '<output id="min-score-value" for="min-score">0.00</output>'
        '<span id="shown" aria-live="polite"></span></div>\n'
    )
    if flags is not None:
        parts.append(
            '<div class="legend"><span><span class="swatch gt"></span> ground truth</span>'
            '<span><span class="swatch tp"></span> true positive at '
            f"IoU {iou_threshold:g}</span>"
            '<span><span class="swatch fp"></span> false positive</span>'
            "<span>colour: class; detections more opaque = higher score</span></div>\n"
        )
    parts.append(
        f'<div id="timeline" class="timeline" data-duration="{duration_s:.3f}">\n'
        f'<div class="row axis"><span class="name">time (s)</span>'
        f'<div class="track">{_ticks(duration_s)}</div></div>\n'
    )
    shown = [c for c in classes if any(s.label == c for s in (*truth, *detections))]
    for name in shown:
        if flags is not None:
            segments = "".join(
                _segment("gt", i, duration_s, colours[name], None, iou_threshold)
                for i in truth
                if i.label == name
            )
            parts.append(
                f'<div class="row truth"><span class="name">{html.escape(name)}: truth</span>'
                f'<div class="track">{segments}</div></div>\n'
            )
        segments = "".join(
            _segment(
                "det", d, duration_s, colours[name], None if flags is None else f, iou_threshold
            )
            for d, f in zip(detections, flags or [None] * len(detections), strict=True)
            if d.label == name
        )
        parts.append(
            f'<div class="row"><span class="name">{html.escape(name)}: detected</span>'
            f'<div class="track">{segments}</div></div>\n'
        )
    if not shown:
        parts.append('<p class="note">No ground truth and no detections in this video.</p>\n')
    parts.append('<div id="cursor" class="cursor" aria-hidden="true"></div>\n</div>\n')
    return "".join(parts)
