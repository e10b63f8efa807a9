"""A static HTML report of detections: where the detector is right and wrong, beside the video.

``index.html`` lists the videos and, with ground truth, the metrics of all three protocols, the
per-class AP and a precision-recall picture. Each video gets a page with a player, timelines
(ground truth and detections per class, detections shaded by score, true and false positives
marked) that seek the player when clicked, and a score slider. Everything is inline or in the
folder, so the report opens from file:// with no server and no network.

This module gathers what the report shows; ``pages`` writes the HTML and ``videos`` the
playable copies of the videos.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from scnn.diagnose import html_section
from scnn.errors import ScnnError, VideoError
from scnn.evaluate import PROTOCOLS, evaluate, match_detections, precision_recall
from scnn.fileio import atomic_write_text
from scnn.formats import load_detections, load_ground_truth
from scnn.html_report.pages import PR_PICTURE, VideoPage, asset, document, index_body, video_body
from scnn.html_report.videos import file_stems, prepare_video
from scnn.records import Detection, GroundTruth, Instance
from scnn.report import plot_precision_recall
from scnn.video import find_videos, probe

REPORT_IOU = 0.5  # default IoU at which detections are marked true or false positives
REPORT_PROTOCOL = "activitynet"  # whose matching marks them, so pages agree with its table


def _grouped(items, key) -> dict:
    """Items in lists by ``key(item)``, in their order."""
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


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
    flags = None
    if gt is not None:
        flags = (match_detections(gt, detections, iou_threshold, REPORT_PROTOCOL) >= 0).tolist()
    names = sorted(
        {d.video for d in detections}
        | {i.video for i in instances}
        | set(videos)
        | set(gt.videos if gt is not None else ())
    )
    stems = file_stems(names)
    css = asset("report.css")
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
            media, note = prepare_video(videos[name], out, stems[name])
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
        body = video_body(page, classes, truth, video_detections, video_flags, iou_threshold)
        atomic_write_text(out / page.page, document(name, css, body, asset("report.js")))
        pages.append(page)
    results = {}
    if gt is not None:
        results = {name: evaluate(gt, detections, name) for name in PROTOCOLS}
        curves = {
            label: precision_recall(
                [d.score for d in detections if d.label == label],
                [f for d, f in zip(detections, flags, strict=True) if d.label == label],
                npos,
            )
            for label, npos in Counter(i.label for i in instances).items()
        }
        plot_precision_recall(
            out / PR_PICTURE, curves, classes, f"precision-recall at IoU {iou_threshold:g}"
        )
    index = out / "index.html"
    body = index_body(pages, results, iou_threshold, REPORT_PROTOCOL)
    if gt is not None:
        body += html_section(out, gt, detections, iou_threshold)
    atomic_write_text(index, document("scnn report", css, body))
    return index


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
        if not Path(videos_dir).is_dir():
            raise ScnnError("not a folder of videos", videos_dir)
        videos = {path.stem: path for path in find_videos([videos_dir])}
    return write_html_report(
        out, detections, gt=truth, videos=videos, classes=classes, iou_threshold=iou_threshold
    )
