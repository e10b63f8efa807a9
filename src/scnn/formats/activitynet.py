"""ActivityNet JSON: the ground-truth ``database`` file and the ``results`` file of detections,
as the official evaluation code reads them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from scnn.errors import AnnotationError
from scnn.fileio import atomic_write_text
from scnn.formats.parsing import (
    all_videos,
    detection,
    first_seen,
    number,
    read_lines,
    segment,
    shown,
    split_ambiguous,
)
from scnn.records import Detection, GroundTruth, Instance


def _load_json(path: Path, key: str) -> dict:
    """The whole file, which must hold an object under ``key`` at the top level; an empty file
    reads as ``{}`` (no key)."""
    try:
        data = json.loads("\n".join(read_lines(path)) or "{}")
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"invalid JSON ({exc.msg})", path, exc.lineno) from None
    except RecursionError:
        raise AnnotationError("invalid JSON (nested too deeply)", path) from None
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise AnnotationError(f"no {key!r} object at the top level", path)
    return data


def _json_segment(entry: object, path: Path, where: str) -> tuple[str, str]:
    segment_value = entry.get("segment") if isinstance(entry, dict) else None
    if not isinstance(segment_value, list) or len(segment_value) != 2:
        raise AnnotationError(f"{where}: 'segment' must be [start, end]", path)
    return segment_value[0], segment_value[1]


def _json_label(entry: dict, path: Path, where: str) -> str:
    label = entry.get("label")
    if not isinstance(label, str | int) or isinstance(label, bool):
        raise AnnotationError(f"{where}: 'label' must be a class name, got {shown(label)}", path)
    return str(label)


def _json_list(value: object, path: Path, where: str) -> list:
    if not isinstance(value, list):
        raise AnnotationError(f"{where}: expected a list, got {type(value).__name__}", path)
    return value


def read_ground_truth(path: Path, subset: str | None) -> GroundTruth:
    """The ``database`` of an ActivityNet file; ``subset`` keeps only that subset's videos.
    The class list is the file's ``taxonomy`` (its leaf nodes, in file order) where it has one,
    then any other labels in order of first appearance: a subset keeps every class, also
    those it has no instance of."""
    data = _load_json(path, "database")
    database, taxonomy = data["database"], _taxonomy_classes(data)
    instances: list[Instance] = []
    durations: dict[str, float] = {}
    subsets: dict[str, str] = {}
    for video, entry in database.items():
        if not isinstance(entry, dict):
            raise AnnotationError(f"{video}: expected an object, got {type(entry).__name__}", path)
        if not isinstance(entry.get("subset", ""), str):
            raise AnnotationError(f"{video}: 'subset' must be a string", path)
        if subset is not None and entry.get("subset") != subset:
            continue
        if "subset" in entry:
            subsets[video] = entry["subset"]
        if "duration" in entry:
            durations[video] = number(entry["duration"], f"{video}: duration", path, None)
        annotations = _json_list(entry.get("annotations", []), path, f"{video}: 'annotations'")
        for n, annotation in enumerate(annotations):
            where = f"{video} annotation {n}"
            start, end = _json_segment(annotation, path, where)
            try:
                start_s, end_s = segment(start, end, path, None)
            except AnnotationError as exc:
                raise AnnotationError(f"{where}: {exc.message}", path) from None
            label = _json_label(annotation, path, where)
            instances.append(Instance(video, start_s, end_s, label))
    real, ambiguous = split_ambiguous(instances)
    videos = tuple(v for v in database if subset is None or v in subsets)
    classes = first_seen([*taxonomy, *(i.label for i in real)])
    return GroundTruth(classes, real, ambiguous, videos, durations, subsets)


def _taxonomy_classes(data: dict) -> list[str]:
    """The leaf node names of the file's ``taxonomy`` (the classes), or [] without one."""
    nodes = data.get("taxonomy") if isinstance(data.get("taxonomy"), list) else []
    nodes = [n for n in nodes if isinstance(n, dict) and isinstance(n.get("nodeName"), str)]
    parents = {n.get("parentName") for n in nodes}
    return [n["nodeName"] for n in nodes if n["nodeName"] not in parents]


def write_ground_truth(path: Path, gt: GroundTruth) -> None:
    """Every video (with its subset and duration where known), and the classes as taxonomy."""
    database: dict[str, dict] = {}
    for video in all_videos(gt):
        entry: dict = {"annotations": []}
        if video in gt.subsets:
            entry["subset"] = gt.subsets[video]
        if video in gt.durations_s:
            entry["duration"] = gt.durations_s[video]
        database[video] = entry
    for i in (*gt.instances, *gt.ambiguous):
        database[i.video]["annotations"].append({"segment": [i.start_s, i.end_s], "label": i.label})
    taxonomy = [
        {"nodeId": n, "nodeName": name, "parentId": None, "parentName": None}
        for n, name in enumerate(gt.classes, start=1)
    ]
    data = {"version": "scnn", "taxonomy": taxonomy, "database": database}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def read_detections(
    path: Path, classes: Sequence[str] | None, class_table: Mapping[int, str] | None
) -> tuple[list[Detection], int]:
    """The ``results`` of an ActivityNet file; labels are names (``class_table`` is unused:
    the format has no numeric ids), so no row is skipped."""
    detections = []
    for video, entries in _load_json(path, "results")["results"].items():
        for n, entry in enumerate(_json_list(entries, path, video)):
            where = f"{video} result {n}"
            start, end = _json_segment(entry, path, where)
            label = _json_label(entry, path, where)
            if classes is not None and label not in classes:
                raise AnnotationError(f"{where}: unknown class {shown(label)}", path)
            fields = (start, end, entry.get("score"))
            detections.append(detection(video, fields, label, path, None, f"{where}: "))
    return detections, 0


def write_detections(
    path: Path,
    detections: Sequence[Detection],
    classes: Sequence[str] | None,
    videos: Sequence[str],
) -> None:
    """Each video of ``videos`` is listed, with an empty list when it has no detection."""
    results: dict[str, list] = {video: [] for video in videos}
    for d in detections:
        results.setdefault(d.video, []).append(
            {"label": d.label, "score": d.score, "segment": [d.start_s, d.end_s]}
        )
    data = {"version": "scnn", "results": results, "external_data": {"used": False, "details": ""}}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
