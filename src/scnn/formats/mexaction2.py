"""MEXaction2 ground truth: ViPER-GT XML files (``.xgtf``), one or a folder of them.

A ViPER file has a ``config`` section declaring descriptors and a ``data`` section with one
``sourcefile`` per video, whose descriptor instances carry a ``framespan`` of inclusive frame
ranges (``"120:180 400:433"``). Each instance of a MEXaction2 class (``object`` or
``content`` descriptor named BullChargeCape or HorseRiding) becomes one instance per range;
other descriptors are ignored. Frames count from 1 and frame ``f`` covers
``[(f - 1) / fps, f / fps)``; fps is the ``FRAMERATE`` of the file's ``Information``
descriptor, unless given. docs/evaluation.md says which of these rules the dataset's
distributors state and which are scnn's reading.
"""

from __future__ import annotations

import logging
import pyexpat
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from scnn.errors import AnnotationError
from scnn.formats.parsing import number, shown, sorted_videos
from scnn.records import GroundTruth, Instance

CLASSES = ("BullChargeCape", "HorseRiding")
SUFFIX = ".xgtf"
UNSET_FPS = 1.0  # a FRAMERATE of 1 is read as "not set": no video is shot at 1 fps
SAFE_EXPAT = (2, 4, 1)  # the first expat that limits entity expansion ("billion laughs")

log = logging.getLogger(__name__)


def is_mexaction2(path: Path) -> bool:
    """A ``.xgtf`` file, or a folder holding one."""
    if path.is_dir():
        return any(path.glob(f"*{SUFFIX}"))
    return path.suffix.lower() == SUFFIX


def read_ground_truth(path: Path, subset: str | None, *, fps: float | None = None) -> GroundTruth:
    """The instances of a ``.xgtf`` file or of every ``.xgtf`` file in a folder. MEXaction2
    splits its videos by file, so ``subset`` is unused. ``fps``: the videos' frame rate, for
    files whose ``FRAMERATE`` is missing or 1 (read as not set)."""
    files = sorted(path.glob(f"*{SUFFIX}")) if path.is_dir() else [path]
    instances = [i for file in files for i in _file_instances(file, fps)]
    return GroundTruth(CLASSES, tuple(instances), (), sorted_videos(instances))


def _local(tag: str) -> str:
    """An element's name without its XML namespace (ViPER files use one or two)."""
    return tag.rpartition("}")[2]


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in element if _local(child.tag) == name]


def _parse(path: Path) -> ElementTree.Element:
    if pyexpat.version_info < SAFE_EXPAT:  # xml.etree parses with it
        found, needed = (".".join(map(str, v)) for v in (pyexpat.version_info, SAFE_EXPAT))
        raise AnnotationError(
            f"this Python's XML parser is expat {found}, which does not limit entity "
            f"expansion; reading untrusted XML needs expat {needed} or later",
            path,
        )
    try:
        root = ElementTree.parse(path).getroot()
    except OSError as exc:
        raise AnnotationError(f"cannot read file ({exc.strerror})", path) from exc
    except ElementTree.ParseError as exc:
        raise AnnotationError(f"not valid XML ({exc})", path, exc.position[0]) from None
    if _local(root.tag) != "viper":
        raise AnnotationError(f"not a ViPER file (root element {shown(root.tag)})", path)
    return root


def _file_instances(path: Path, fps: float | None) -> list[Instance]:
    """The MEXaction2 instances of every sourcefile in one ViPER file."""
    instances, ignored = [], set()
    for data in _children(_parse(path), "data"):
        for source in _children(data, "sourcefile"):
            name = source.get("filename")
            if not name:
                raise AnnotationError("a sourcefile has no filename", path)
            video = Path(name.replace("\\", "/")).stem
            rate = fps or _frame_rate(source, path)
            for descriptor in source:
                label = descriptor.get("name", "")
                if _local(descriptor.tag) not in ("object", "content"):
                    continue
                if label not in CLASSES:
                    ignored.add(label)
                    continue
                for first, last in _ranges(descriptor.get("framespan", ""), path):
                    instances.append(Instance(video, (first - 1) / rate, last / rate, label))
    if ignored:
        log.info("%s: ignored descriptors %s", path, ", ".join(sorted(ignored)))
    return instances


def _frame_rate(source: ElementTree.Element, path: Path) -> float:
    """The FRAMERATE attribute of the sourcefile's Information descriptor."""
    for info in _children(source, "file"):
        for attribute in _children(info, "attribute"):
            if attribute.get("name") == "FRAMERATE" and len(attribute):
                rate = number(attribute[0].get("value", ""), "FRAMERATE", path, None)
                if rate > 0 and rate != UNSET_FPS:
                    return rate
    raise AnnotationError(
        "no frame rate (FRAMERATE missing, or 1: read as not set): give the videos' fps",
        path,
    )


def _ranges(framespan: str, path: Path) -> list[tuple[int, int]]:
    """``"120:180 400:433"`` as [(120, 180), (400, 433)]: inclusive frame numbers from 1."""
    ranges = []
    for item in framespan.split():
        first, sep, last = item.partition(":")
        if not (sep and first.isdigit() and last.isdigit()):
            raise AnnotationError(f"framespan item {shown(item)} is not FIRST:LAST", path)
        if not 1 <= int(first) <= int(last):
            raise AnnotationError(f"framespan item {shown(item)} is not 1 <= FIRST <= LAST", path)
        ranges.append((int(first), int(last)))
    if not ranges:
        raise AnnotationError("a descriptor has an empty framespan", path)
    return ranges
