"""``torchrun ... scnn detect``: the videos shared out by duration, one record per finished
video in ``OUT.parts/`` (so a killed job goes on where it stopped), rank 0 merging them.

A record is ``<video>.json`` (settings key, status, detections or the failure) and, for a
video done, ``<video>.windows.csv``, its scored windows in the windows-CSV format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from scnn.batch import BatchResult, detect_videos, write_results
from scnn.detect import Detector
from scnn.distributed import SINGLE, World
from scnn.formats.windows_csv import read_windows_csv, write_windows_csv
from scnn.records import Detection
from scnn.resume import Records, fingerprint, shared_out

PARTS_SUFFIX = ".parts"  # OUT.parts/ holds the records of the finished videos
WINDOWS_SUFFIX = ".windows.csv"  # beside <video>.json, the windows of a video done
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
    records = Records(parts, settings_key(detector), lambda video: _windows_path(parts, video))
    with shared_out(videos, records, world) as mine:
        for video in mine:
            _write_record(records, video, detect_videos(detector, [video], quiet=quiet))
    if not world.is_main:
        return None
    merged = _merge_records(records, videos, detector.classes)
    write_results(merged, out, detector.classes, windows_csv)
    return merged


def settings_key(detector: Detector) -> str:
    """The fingerprint of what the detections depend on: the networks, the model's settings
    and the prediction settings (a model without boundary networks keeps the key it had)."""
    model, clips = detector.model, detector.boundary_clips
    leave_out = (*_SPEED_ONLY, "boundary_clip_rounds")  # the rounds run are below
    settings = {
        "config": {
            k: v for k, v in dataclasses.asdict(detector.config).items() if k not in leave_out
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
        "fps": model.fps,
    }
    networks = [model.proposal, model.localization]
    if model.boundaries is not None:
        networks.append(model.boundaries)
    if clips is not None:
        networks.append(model.boundary_clips.network)
        settings["boundary_clips"] = [clips.rounds, clips.scale]
    return fingerprint(networks, model.convention, settings)


def _windows_path(parts: Path, video: Path) -> Path:
    return parts / f"{video.stem}{WINDOWS_SUFFIX}"


def _write_record(records: Records, video: Path, result: BatchResult) -> None:
    """Record ``video``'s result, its windows before the record that vouches for them."""
    records.forget(video)
    if result.failures:
        records.write(video, {"status": "failed", "failure": next(iter(result.failures.values()))})
        return
    write_windows_csv(records.output(video), result.windows[0])
    detections = [[d.start_s, d.end_s, d.label, d.score] for d in result.detections[video.stem]]
    records.write(video, {"status": "done", "detections": detections})


def _merge_records(records: Records, videos: Sequence[Path], classes: Sequence[str]) -> BatchResult:
    """The BatchResult one process would have made of ``videos``, from their records."""
    merged = BatchResult({}, [], {})
    for video in videos:
        record = records.read(video)
        if record.get("status") != "done":
            merged.failures[str(video)] = record.get("failure", f"{video}: no result recorded")
            continue
        name = video.stem
        merged.detections[name] = [Detection(name, *row) for row in record["detections"]]
        merged.windows.append(read_windows_csv(records.output(video), classes))
    return merged
