"""``scnn features`` over many videos: ``OUT_DIR/<video>.npy`` each, a record per finished
video in ``OUT_DIR/features.parts/`` (a re-run skips the videos done with the same settings,
a video that fails is recorded while the rest go on), the videos shared out by duration under
torchrun as detection's are (sharded.py), and ``OUT_DIR/features.json`` written by rank 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from scnn import distributed
from scnn.distributed import SINGLE, World
from scnn.errors import ScnnError
from scnn.features import Extractor
from scnn.fileio import atomic_write_text
from scnn.sharded import SHARDED_WAIT_TIMEOUT_S, duration_s, read_record
from scnn.video import num_frames, probe

log = logging.getLogger(__name__)

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
    _check_no_other_settings(out_dir, videos, extractor.settings_key())
    parts = out_dir / PARTS_DIR
    with distributed.process_group(world, "gloo", timeout_s=SHARDED_WAIT_TIMEOUT_S):
        plan: list[list[str]] = []
        key = ""
        if world.is_main:
            key = extractor.settings_key()
            todo = [v for v in videos if _record(out_dir, v, key).get("status") != "done"]
            log.info(
                "%d of %d videos already done (%s)", len(videos) - len(todo), len(videos), parts
            )
            shards = distributed.shard_by_duration([duration_s(v) for v in todo], world.size)
            plan = [[str(todo[i]) for i in shard] for shard in shards]
        plan, key = distributed.broadcast((plan, key), world)
        mine = [Path(v) for v in plan[world.rank]]
        quiet = quiet or not world.is_main
        for video in tqdm(mine, desc="videos", unit="video", disable=quiet or len(mine) < 2):
            _write_record(out_dir, video, key, _extract(extractor, video, out_dir, quiet))
        distributed.barrier(world)
        if not world.is_main:
            return None
        run = _merge_records(out_dir, videos, key)
        on_failures(run.failures)
        if not run.videos:
            for video in videos:
                _record_path(out_dir, video).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: records of other runs
                parts.rmdir()
            raise ScnnError(
                f"no video could be processed ({len(run.failures)} failed); nothing written",
                out_dir / FEATURES_JSON,
            )
        index = json.dumps(_index(extractor, run), indent=1)
        atomic_write_text(out_dir / FEATURES_JSON, index + "\n")
        return run


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


def _record(out_dir: Path, video: Path, key: str) -> dict:
    """The record of ``video`` made with settings ``key`` (sharded.read_record)."""
    return read_record(_record_path(out_dir, video), video, key, out_dir / f"{video.stem}.npy")


def _record_path(out_dir: Path, video: Path) -> Path:
    return out_dir / PARTS_DIR / f"{video.stem}.json"


def _write_record(out_dir: Path, video: Path, key: str, result: dict) -> None:
    atomic_write_text(
        _record_path(out_dir, video),
        json.dumps({"video": str(video.resolve()), "key": key, **result}) + "\n",
    )


def _merge_records(out_dir: Path, videos: Sequence[Path], key: str) -> FeatureRun:
    """The run one process would have made of ``videos``, from their records."""
    run = FeatureRun({}, {})
    for video in videos:
        record = _record(out_dir, video, key)
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
        "precision": "bf16" if extractor.bf16 else "fp32",
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
