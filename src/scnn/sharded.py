"""``torchrun ... scnn detect``: the videos shared out by duration, one record per finished
video in ``OUT.parts/`` (so a killed job goes on where it stopped), rank 0 merging them.

A record is ``<video>.json`` (settings key, status, detections or the failure) and, for a
video done, ``<video>.windows.csv``, its scored windows in the windows-CSV format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from scnn import distributed
from scnn.batch import BatchResult, detect_videos, write_results
from scnn.detect import Detector
from scnn.distributed import SINGLE, World
from scnn.errors import ScnnError
from scnn.fileio import atomic_write_text
from scnn.formats.windows_csv import read_windows_csv, write_windows_csv
from scnn.modelfile import state_bytes
from scnn.records import Detection
from scnn.video import probe

log = logging.getLogger(__name__)

PARTS_SUFFIX = ".parts"  # OUT.parts/ holds the records of the finished videos
WINDOWS_SUFFIX = ".windows.csv"  # beside <video>.json, the windows of a video done
# Ranks that finish their share early wait for the slowest at the final barrier.
SHARDED_WAIT_TIMEOUT_S = 7 * 24 * 3600
_SPEED_ONLY = ("batch_size", "compile")  # prediction settings that leave detections alike


def parts_dir(out: Path) -> Path:
    """The folder of per-video records beside ``out``."""
    return out.with_name(out.name + PARTS_SUFFIX)


def detect_sharded(
    detector: Detector,
    videos: Sequence[Path],
    out: Path,
    *,
    world: World = SINGLE,
    windows_csv: Path | None = None,
    quiet: bool = False,
) -> BatchResult | None:
    """``torchrun ... scnn detect``: the videos split over the ranks, balanced by duration.

    Each finished video (detected or failed) is recorded atomically in ``parts_dir(out)``;
    a video whose record holds the same model and settings is not run again, so a killed job
    re-run goes on where it stopped (failed videos are retried). After every rank is done,
    rank 0 merges the records of ``videos`` into ``out`` (and ``windows_csv``) and returns
    the merged result; other ranks return None. One process (``world`` of size 1) runs the
    same way.
    """
    parts = parts_dir(out)
    with distributed.process_group(world, "gloo", timeout_s=SHARDED_WAIT_TIMEOUT_S):
        plan: list[list[str]] = []
        key = ""
        if world.is_main:
            key = _settings_key(detector)
            todo = [v for v in videos if _record(parts, v, key).get("status") != "done"]
            log.info(
                "%d of %d videos already done (%s)", len(videos) - len(todo), len(videos), parts
            )
            durations_s = [duration_s(v) for v in todo]
            shards = distributed.shard_by_duration(durations_s, world.size)
            plan = [[str(todo[i]) for i in shard] for shard in shards]
        plan, key = distributed.broadcast((plan, key), world)
        for video in map(Path, plan[world.rank]):
            result = detect_videos(detector, [video], quiet=quiet)
            _write_record(parts, video, key, result)
        distributed.barrier(world)
        if not world.is_main:
            return None
        merged = _merge_records(parts, videos, key, detector.classes)
        write_results(merged, out, detector.classes, windows_csv)
        return merged


def detect_files(
    detector: Detector,
    videos: Sequence[Path],
    out: Path,
    *,
    world: World | None = None,
    windows_csv: Path | None = None,
    quiet: bool = False,
    on_failures: Callable[[Mapping[str, str]], None] = lambda failures: None,
) -> BatchResult | None:
    """``scnn detect``: in one process the videos in turn and the results written; under
    torchrun (``world``) shared out by duration and resumable (``detect_sharded``), None on
    every rank but 0. The failures go to ``on_failures`` before anything is written, so they
    are told even when no video could be processed."""
    if world is None:
        result = detect_videos(detector, videos, quiet=quiet, keep_windows=windows_csv is not None)
        on_failures(result.failures)
        write_results(result, out, detector.classes, windows_csv)
        return result
    merged = detect_sharded(
        detector,
        videos,
        out,
        world=world,
        windows_csv=windows_csv,
        quiet=quiet or not world.is_main,
    )
    if merged is not None:
        on_failures(merged.failures)
    return merged


def _settings_key(detector: Detector) -> str:
    """A fingerprint of what the detections depend on: both networks, the model's settings
    and the prediction settings."""
    digest = hashlib.sha256()
    model = detector.model
    for network in (model.proposal, model.localization):
        digest.update(state_bytes(network))
    if model.convention.mean_cube is not None:
        digest.update(model.convention.mean_cube.numpy().tobytes())
    extra = {
        "config": {
            k: v for k, v in dataclasses.asdict(detector.config).items() if k not in _SPEED_ONLY
        },
        "device": detector.device.type,  # precision "auto" depends on it
        "prior": [weights.tolist() for weights in model.prior.values()],
        "thresholds": [
            model.proposal_threshold,
            model.nms_threshold,
            model.use_prior,
            model.vote_iou,
        ],
        "windows": dataclasses.asdict(model.windows),
        "input": model.convention.describe(),
        "fps": model.fps,
    }
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def duration_s(video: Path) -> float:
    """The video's duration for balancing; 0 for one that cannot be probed (it fails fast)."""
    try:
        return probe(video).duration_s
    except ScnnError:
        return 0.0


def _record_path(parts: Path, video: Path) -> Path:
    return parts / f"{video.stem}.json"


def _windows_path(parts: Path, video: Path) -> Path:
    return parts / f"{video.stem}{WINDOWS_SUFFIX}"


def _record(parts: Path, video: Path, key: str) -> dict:
    """The record of ``video`` made with settings ``key`` (see :func:`read_record`)."""
    return read_record(_record_path(parts, video), video, key, _windows_path(parts, video))


def read_record(path: Path, video: Path, key: str, output: Path) -> dict:
    """The record at ``path`` of ``video`` made with settings ``key``; {} when absent, stale
    or damaged (one of another video of the same name, or a video done whose ``output`` file
    is gone, counts as absent)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("key") != key:
        return {}
    if record.get("video") != str(video.resolve()):
        return {}
    if record.get("status") == "done" and not output.is_file():
        return {}
    return record


def _write_record(parts: Path, video: Path, key: str, result: BatchResult) -> None:
    """Record ``video``'s result. The old record goes first and the JSON is written last, so
    a record on disk never pairs with windows of another run."""
    _record_path(parts, video).unlink(missing_ok=True)
    record: dict = {"video": str(video.resolve()), "key": key}
    if result.failures:
        record.update(status="failed", failure=next(iter(result.failures.values())))
    else:
        write_windows_csv(_windows_path(parts, video), result.windows[0])
        record.update(
            status="done",
            detections=[
                [d.start_s, d.end_s, d.label, d.score] for d in result.detections[video.stem]
            ],
        )
    atomic_write_text(_record_path(parts, video), json.dumps(record) + "\n")


def _merge_records(
    parts: Path, videos: Sequence[Path], key: str, classes: Sequence[str]
) -> BatchResult:
    """The BatchResult one process would have made of ``videos``, from their records."""
    merged = BatchResult({}, [], {})
    for video in videos:
        record = _record(parts, video, key)
        if record.get("status") != "done":
            merged.failures[str(video)] = record.get("failure", f"{video}: no result recorded")
            continue
        name = video.stem
        merged.detections[name] = [Detection(name, *row) for row in record["detections"]]
        merged.windows.append(read_windows_csv(_windows_path(parts, video), classes))
    return merged
