"""A static HTML report of detections: where the detector is right and wrong, beside the video.

``index.html`` lists the videos and, with ground truth, the metrics of all three protocols, the
per-class AP and a precision-recall picture. Each video gets a page with a player, timelines
(ground truth and detections per class, detections shaded by score, true and false positives
marked) that seek the player when clicked, and a score slider. Everything is inline or in the
folder, so the report opens from file:// with no server and no network.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

import av
import numpy as np

from scnn.annotations import (
    Detection,
    GroundTruth,
    Instance,
    load_detections,
    load_ground_truth,
)
from scnn.encode import write_h264
from scnn.errors import ScnnError, VideoError
from scnn.evaluate import PROTOCOLS, EvaluationResult, evaluate
from scnn.fileio import atomic_write, atomic_write_text
from scnn.report import class_colours, plot_precision_recall
from scnn.video import iter_frames, probe
from scnn.windows import temporal_iou

log = logging.getLogger(__name__)

REPORT_IOU = 0.5  # default IoU at which detections are marked true or false positives
MAX_VIDEO_HEIGHT_PX = 360  # re-encoded copies are scaled down to at most this height
REENCODE_FPS = 25  # frames/s of re-encoded copies (scnn's own timeline: frame i at i/25 s)
X264_CRF = 28  # libx264 quality of re-encoded copies: small files, fine for looking
TICK_COUNT = 10  # about this many time labels under the timeline
MEDIA_DIR = "media"
PR_PICTURE = "precision_recall.png"
# What Chromium and Firefox play without plugins: (container, video codecs, audio codecs).
PLAYABLE = {
    ".mp4": ({"h264"}, {"aac", "mp3"}),
    ".m4v": ({"h264"}, {"aac", "mp3"}),
    ".webm": ({"vp8", "vp9", "av1"}, {"opus", "vorbis"}),
}
PLAYABLE_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}


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


# ---------------------------------------------------------------- matching


def match_detections(
    detections: Sequence[Detection], instances: Sequence[Instance], iou_threshold: float
) -> list[bool]:
    """Whether each detection is a true positive at ``iou_threshold``.

    ActivityNet's rule, per video and class: detections in descending score order (stable for
    equal scores) each take the still-unmatched instance of highest tIoU >= the threshold.
    Returned in the order of ``detections``.
    """
    matched = [False] * len(detections)
    truths = _grouped(instances, lambda i: (i.video, i.label))
    groups = _grouped(range(len(detections)), lambda n: (detections[n].video, detections[n].label))
    for key, members in groups.items():
        truth = truths.get(key)
        if not truth:
            continue
        order = sorted(members, key=lambda n: -detections[n].score)
        overlap = temporal_iou(
            np.array([(detections[n].start_s, detections[n].end_s) for n in order]),
            np.array([(i.start_s, i.end_s) for i in truth]),
        )
        free = np.ones(len(truth), dtype=bool)
        for row, n in enumerate(order):
            candidates = np.where(free & (overlap[row] >= iou_threshold), overlap[row], -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] >= 0:
                free[best] = False
                matched[n] = True
    return matched


def _grouped(items, key) -> dict:
    """Items in lists by ``key(item)``, in their order."""
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def precision_recall(
    scores: Sequence[float], true_positive: Sequence[bool], num_instances: int
) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) after each detection, in descending score order (stable)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(true_positive, dtype=bool)[order]
    tp_cumsum = np.cumsum(hits)
    precision = tp_cumsum / np.arange(1, len(hits) + 1)
    recall = tp_cumsum / max(num_instances, 1)
    return recall, precision


# ---------------------------------------------------------------- videos


def is_browser_playable(path: str | Path) -> bool:
    """True for H.264 (4:2:0) MP4 and VP8/VP9/AV1 WebM with browser audio codecs, if any."""
    path = Path(path)
    codecs = PLAYABLE.get(path.suffix.lower())
    if codecs is None:
        return False
    video_codecs, audio_codecs = codecs
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False
            video = container.streams.video[0].codec_context
            audio = {s.codec_context.name for s in container.streams.audio}
            pixel_format = video.format.name if video.format else ""
            return (
                video.name in video_codecs
                and pixel_format in PLAYABLE_PIXEL_FORMATS
                and video.width % 2 == 0
                and video.height % 2 == 0
                and audio <= audio_codecs
            )
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open: {exc}", path) from exc


def reencoded_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a re-encoded copy: the source's aspect, at most MAX_VIDEO_HEIGHT_PX
    high, both even (H.264 4:2:0 needs even sides)."""
    scale = min(1.0, MAX_VIDEO_HEIGHT_PX / height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def reencode(source: str | Path, target: str | Path) -> None:
    """Write an H.264 (yuv420p) MP4 of ``source`` without audio, at REENCODE_FPS and
    :func:`reencoded_size`, decoded as ``scnn detect`` decodes it so detection times match."""
    info = probe(source)
    size = reencoded_size(info.width, info.height)
    chunks = iter_frames(source, fps=REENCODE_FPS, size=size)
    frames = (picture for chunk in chunks for picture in chunk)
    write_h264(target, frames, fps=REENCODE_FPS, size=size, crf=X264_CRF)


def _copy(source: Path, target: Path) -> None:
    with source.open("rb") as reader, atomic_write(target, "wb") as writer:
        shutil.copyfileobj(reader, writer)


def _prepare_video(source: Path, out: Path, stem: str) -> tuple[str | None, str]:
    """Put a playable copy of ``source`` under ``out/media``: (relative path, note)."""
    try:
        if is_browser_playable(source):
            relative = f"{MEDIA_DIR}/{stem}{source.suffix.lower()}"
            _copy(source, out / relative)
            return relative, f"copied from {source.name}"
        info = probe(source)
        relative = f"{MEDIA_DIR}/{stem}.mp4"
        reencode(source, out / relative)
        return relative, (
            f"re-encoded to H.264 without audio from {source.name} ({info.codec}, "
            f"{info.width}x{info.height})"
        )
    except VideoError as exc:
        log.warning("report: %s", exc)
        return None, f"video unavailable: {exc}"


# ---------------------------------------------------------------- the report


def write_html_report(
    out: str | Path,
    detections: Sequence[Detection],
    *,
    gt: GroundTruth | None = None,
    videos: Mapping[str, str | Path] | None = None,
    classes: Sequence[str] | None = None,
    iou_threshold: float = REPORT_IOU,
) -> Path:
    """Write the report folder ``out`` and return the path of its ``index.html``.

    ``videos`` maps video names to files; each is copied (or re-encoded when a browser cannot
    play it) into ``out/media``. Rows: every video with detections, ground truth or a file.
    ``classes`` orders the classes (default: the ground truth's, else first seen).
    """
    out = Path(out)
    if not 0.0 < iou_threshold <= 1.0:
        raise ScnnError(f"report IoU must be in (0, 1], got {iou_threshold}")
    videos = {name: Path(path) for name, path in (videos or {}).items()}
    if classes is None:
        classes = (
            gt.classes if gt is not None else tuple(dict.fromkeys(d.label for d in detections))
        )
    classes = tuple(classes) + tuple(
        dict.fromkeys(d.label for d in detections if d.label not in classes)
    )
    instances = gt.instances if gt is not None else ()
    flags = match_detections(detections, instances, iou_threshold) if gt is not None else None
    names = sorted(
        {d.video for d in detections}
        | {i.video for i in instances}
        | set(videos)
        | set(gt.videos if gt is not None else ())
    )
    stems = _file_stems(names)
    css = _asset("report.css")
    own_detections = _grouped(range(len(detections)), lambda n: detections[n].video)
    own_truth = _grouped(instances, lambda i: i.video)
    pages = []
    for name in names:
        own = own_detections.get(name, [])
        video_detections = [detections[n] for n in own]
        video_flags = None if flags is None else [flags[n] for n in own]
        truth = own_truth.get(name, [])
        media, note = (None, "no video file given")
        if name in videos:
            media, note = _prepare_video(videos[name], out, stems[name])
        duration_s = _duration_s(name, gt, videos, video_detections, truth)
        page = VideoPage(
            name,
            f"{stems[name]}.html",
            duration_s,
            media,
            note,
            len(truth),
            len(video_detections),
            None if video_flags is None else sum(video_flags),
        )
        body = _video_body(page, classes, truth, video_detections, video_flags, iou_threshold)
        atomic_write_text(out / page.page, _document(name, css, body, _asset("report.js")))
        pages.append(page)
    results = {}
    if gt is not None:
        results = {name: evaluate(gt, detections, name) for name in PROTOCOLS}
        curves = {
            label: precision_recall(
                [d.score for d in detections if d.label == label],
                [f for d, f in zip(detections, flags, strict=True) if d.label == label],
                sum(i.label == label for i in instances),
            )
            for label in classes
        }
        plot_precision_recall(
            out / PR_PICTURE, curves, classes, f"precision-recall at IoU {iou_threshold:g}"
        )
    index = out / "index.html"
    atomic_write_text(
        index, _document("scnn report", css, _index_body(pages, results, iou_threshold))
    )
    return index


def _asset(name: str) -> str:
    return (files("scnn") / "report_assets" / name).read_text(encoding="utf-8")


def _file_stems(names: Sequence[str]) -> dict[str, str]:
    """A distinct, URL- and file-system-safe stem per video name."""
    stems: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "video"
        candidate, n = stem, 1
        while candidate.lower() in used or candidate.lower() == "index":
            n += 1
            candidate = f"{stem}_{n}"
        used.add(candidate.lower())
        stems[name] = candidate
    return stems


def _duration_s(
    name: str,
    gt: GroundTruth | None,
    videos: Mapping[str, Path],
    detections: Sequence[Detection],
    truth: Sequence[Instance],
) -> float:
    """The ground truth's duration, else the file's, else the last segment's end."""
    if gt is not None and gt.durations_s.get(name):
        return float(gt.durations_s[name])
    if name in videos:
        try:
            return probe(videos[name]).duration_s
        except VideoError:
            pass  # the page says why the video is missing; the segments still get a scale
    ends = [max(s.start_s, s.end_s) for s in (*detections, *truth)]
    return max(ends, default=1.0)


# ---------------------------------------------------------------- HTML


def _document(title: str, css: str, body: str, script: str = "") -> str:
    script_tag = f"<script>\n{script}</script>\n" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{css}</style>\n</head>\n"
        f"<body>\n{body}{script_tag}</body>\n</html>\n"
    )


def _index_body(
    pages: Sequence[VideoPage], results: Mapping[str, EvaluationResult], iou_threshold: float
) -> str:
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
            f"instance of its class with IoU &ge; {iou_threshold:g} (ActivityNet's rule).</p>\n"
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


def _video_body(
    page: VideoPage,
    classes: Sequence[str],
    truth: Sequence[Instance],
    detections: Sequence[Detection],
    flags: Sequence[bool] | None,
    iou_threshold: float,
) -> str:
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


def report_from_files(
    out: str | Path,
    results: str | Path,
    *,
    gt: str | Path | None = None,
    subset: str | None = None,
    videos_dir: str | Path | None = None,
    class_table: Mapping[int, str] | None = None,
    iou_threshold: float = REPORT_IOU,
) -> Path:
    """:func:`write_html_report` from files: detections in any format ``load_detections``
    reads, optional ground truth, optional folder of ``<video>.<ext>`` files."""
    truth = None if gt is None else load_ground_truth(gt, subset)
    classes = truth.classes if truth is not None else None
    if classes is None and class_table is not None:
        classes = tuple(class_table[k] for k in sorted(class_table))
    detections = load_detections(results, classes, class_table)
    videos: dict[str, Path] = {}
    if videos_dir is not None:
        from scnn.detect import find_videos  # imports torch: only when a folder is given

        if not Path(videos_dir).is_dir():
            raise ScnnError("not a folder of videos", videos_dir)
        videos = {path.stem: path for path in find_videos([videos_dir])}
    return write_html_report(
        out, detections, gt=truth, videos=videos, classes=classes, iou_threshold=iou_threshold
    )
