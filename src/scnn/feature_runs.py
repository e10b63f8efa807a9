"""``scnn features`` over many videos: ``OUT_DIR/<video>.npy`` each, a record per finished
video in ``OUT_DIR/features.parts/`` (a re-run skips the videos done with the same settings,
a video that fails is recorded while the rest go on), the videos shared out by duration under
torchrun as detection's are (resume.py), and ``OUT_DIR/features.json`` written by rank 0.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from scnn.distributed import SINGLE, World
from scnn.errors import ScnnError
from scnn.features import Extractor
from scnn.fileio import atomic_write_text
from scnn.resume import Records, fingerprint, shared_out
from scnn.video import num_frames, probe

FEATURES_JSON = "features.json"  # what was extracted, how, and each video's rows
PARTS_DIR = "features.parts"  # one record per finished video


@dataclass(frozen=True)
class FeatureRun:
    """Every video's record (rows, dim, frames, duration_s) and why each other one failed."""

    videos: dict[str, dict]  # video stem -> its record
    failures: dict[str, str]  # path -> one-line reason


def extract_files(
    extractor: Extractor,
    videos: Sequence[Path],
    out_dir: Path,
    *,
    world: World = SINGLE,
    quiet: bool = False,
    on_failures: Callable[[Mapping[str, str]], None] = lambda failures: None,
) -> FeatureRun | None:
    """Extract the features of ``videos`` into ``out_dir``, the videos split over the ranks
    by duration (one process: ``world`` of size 1). After every rank is done, rank 0 tells
    ``on_failures``, writes features.json and returns the run; other ranks return None."""
    _check_stems(videos)
    key = settings_key(extractor)
    _check_no_other_settings(out_dir, videos, key)
    records = Records(out_dir / PARTS_DIR, key, lambda video: out_dir / f"{video.stem}.npy")
    quiet = quiet or not world.is_main
    with shared_out(videos, records, world) as mine:
        for video in tqdm(mine, desc="videos", unit="video", disable=quiet or len(mine) < 2):
            records.write(video, _extract(extractor, video, out_dir, quiet))
    if not world.is_main:
        return None
    run = _merge_records(records, videos)
    on_failures(run.failures)
    if not run.videos:
        for video in videos:
            records.forget(video)
        with contextlib.suppress(OSError):  # not empty: records of other runs
            records.folder.rmdir()
        raise ScnnError(
            f"no video could be processed ({len(run.failures)} failed); nothing written",
            out_dir / FEATURES_JSON,
        )
    index = json.dumps(_index(extractor, run), indent=1)
    atomic_write_text(out_dir / FEATURES_JSON, index + "\n")
    return run


def settings_key(extractor: Extractor) -> str:
    """The fingerprint of what the rows depend on: the network's weights, its input, the
    layer, the snippets and the precision (not the batch size, which leaves them alike)."""
    config = {**asdict(extractor.config), "batch_size": None, "decode_processes": None}
    settings = {"config": config, "bf16": extractor.runtime.bf16, "fps": extractor.source.fps}
    settings["device"] = extractor.runtime.device.type
    return fingerprint([extractor.source.network], extractor.source.convention, settings)


def _check_stems(videos: Sequence[Path]) -> None:
    """Each video's file stem names its output: two videos may not share one."""
    seen: dict[str, Path] = {}
    for video in videos:
        if video.stem in seen:
            raise ScnnError(
                f"same file name as {seen[video.stem]}: both would write {video.stem}.npy", video
            )
        seen[video.stem] = video


def _check_no_other_settings(out_dir: Path, videos: Sequence[Path], key: str) -> None:
    """Refuse a folder that holds features of other videos made with other settings (another
    layer, say): they would sit beside these, unlisted in features.json, like them."""
    ours = {video.stem for video in videos}
    other = []
    for path in sorted((out_dir / PARTS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        npy = out_dir / f"{path.stem}.npy"
        stale = isinstance(record, dict) and record.get("key") != key
        if stale and path.stem not in ours and npy.is_file():
            other.append(npy.name)
    if other:
        raise ScnnError(
            f"holds {', '.join(other[:3])}{' and others' if len(other) > 3 else ''} made with "
            "other settings; write to another folder, or remove them first",
            out_dir,
        )


def _extract(extractor: Extractor, video: Path, out_dir: Path, quiet: bool) -> dict:
    """The record of one video: its sizes when done, the reason when it failed."""
    try:
        total = num_frames(probe(video), extractor.source.fps)
        with tqdm(total=total, desc=video.name, unit="frame", leave=False, disable=quiet) as bar:
            result = extractor(video, out_dir / f"{video.stem}.npy", progress=bar.update)
    except ScnnError as exc:  # told with the other failures, at the end
        (out_dir / f"{video.stem}.npy").unlink(missing_ok=True)  # of other settings
        return {"status": "failed", "failure": str(exc)}
    return {"status": "done", **asdict(result)}


def _merge_records(records: Records, videos: Sequence[Path]) -> FeatureRun:
    """The run one process would have made of ``videos``, from their records."""
    run = FeatureRun({}, {})
    for video in videos:
        record = records.read(video)
        if record.get("status") == "done":
            run.videos[video.stem] = record
        else:
            run.failures[str(video)] = record.get("failure", f"{video}: no result recorded")
    return run


def _index(extractor: Extractor, run: FeatureRun) -> dict:
    """features.json: the sampling and the network a detector's config needs
    (docs/features.md), and each video's rows."""
    source, config = extractor.source, extractor.config
    records = list(run.videos.values())
    return {
        "model": source.name,
        "network": source.network_name,
        "layer": config.layer,
        "feature_dim": records[0]["dim"],
        "dtype": config.dtype,
        "precision": "bf16" if extractor.runtime.bf16 else "fp32",
        "fps": source.fps,
        "snippet_frames": config.snippet_frames,
        "stride_frames": config.stride_frames,
        "frame_size": list(source.convention.frame_size),
        "crop_size": source.convention.crop_size,
        "mean": source.convention.describe(source.mean_file)["mean"],
        "videos": {
            stem: {
                "file": f"{stem}.npy",
                "features": record["rows"],
                "frames": record["frames"],
                "duration_s": record["duration_s"],
            }
            for stem, record in run.videos.items()
        },
        "failed": run.failures,
    }
