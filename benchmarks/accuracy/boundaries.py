"""Learned boundaries beside S-CNN's window grid: the boundary-clip network (and the optional
boundary network) of ``scnn train`` (scnn.boundary_training, ``boundaries = true``), measured.

    python3 benchmarks/accuracy/boundaries.py --threads 2 --part train --seed 0
    python3 benchmarks/accuracy/boundaries.py --threads 2 --part score --sets final

``train``: a training seed's whole ``scnn train`` run of the CPU config with ``boundaries =
true`` (the three S-CNN stages, then the boundary stages of the config's defaults from its
localization network), resumed where it stopped. ``score``: each seed's model on the test
sets without its boundary networks and with the boundary clips applied 1-4 times (the same
localization network, detection's settings otherwise the model's: no proposal filter, NMS
0.4, voting 0.4), mean ± std over the seeds, then the diagnosis at tIoU 0.5 summed; a model
with a boundary network also with the windows it moves, and how far its offsets are off.
The boundary clips are applied by scnn.boundary_clips.refine_segments on the cached frames,
as detection applies them (a round at a time: rounds k equal k single rounds).

Layout under --work (benchmarks/accuracy/accuracy.py's, shared with it)::

    train/data/, train/frame_cache/      the training set (scnn synth's defaults, data seed 0)
    train/seed<S>/                       a seed's scnn train run (model/ its model directory)
    logits/<network>-<hash>/test<T>.npy  a network's outputs on every window of test set T
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from accuracy import DEV_SEEDS, NMS_IOU, cached_logits, metrics, table, test_grid  # noqa: E402
from offline_detection import VideoGrid, scored_windows, softmax, window_logits  # noqa: E402

from scnn.boundary_clips import BoundaryClips, network_offsets, refine_segments  # noqa: E402
from scnn.boundary_training import (  # noqa: E402
    instance_segments,
    placed_segments_s,
    segment_offsets,
)
from scnn.config import TrainConfig, load_config  # noqa: E402
from scnn.fileio import atomic_write  # noqa: E402
from scnn.modelfile import (  # noqa: E402
    BOUNDARY_WEIGHTS,
    LOCALIZATION_WEIGHTS,
    LoadedModel,
    load_model,
)
from scnn.postprocess import postprocess  # noqa: E402
from scnn.records import Detection, GroundTruth  # noqa: E402
from scnn.synth import SynthConfig, generate  # noqa: E402
from scnn.training_job import MODEL_DIR, train_model  # noqa: E402
from scnn.windows import temporal_iou  # noqa: E402

# The boundary networks were chosen on 2201-2202 beside the bundled model (scored once on
# 2601-2603 and 2701-2703); the stages of scnn train were scored once on 2801-2803; the
# boundary clips' training steps and rounds were chosen on the development sets (all four).
SETS = {
    "dev": DEV_SEEDS[1:3],
    "development": DEV_SEEDS,
    "first": (2601, 2602, 2603),
    "fresh": (2701, 2702, 2703),
    "new": (2801, 2802, 2803),
    # made after the boundary clips' 1 500 steps, no boundary network and 2 rounds were chosen
    "final": (2901, 2902, 2903),
}
TRAIN_SEEDS = (0, 1, 2)
VOTE_IOU = 0.4  # the CPU config's
GRID = "S-CNN's grid, voting 0.4 (no boundary networks)"
ROUNDS = range(1, 5)  # the boundary clips' rounds scored
MOVED = "windows moved by the boundary network, then voting 0.4"


def trained_run(work: Path, seed: int) -> Path:
    """A seed's run of the CPU config with the boundary stages, trained unless there (its
    finished stages kept); returns its model directory."""
    data = work / "train" / "data"
    if not (data / "annotations.json").is_file():
        generate(data, SynthConfig(), quiet=True)
    out = work / "train" / f"seed{seed}"
    config = load_config("synthetic_cpu", {"seed": seed, "boundaries": True})
    print(f"[boundaries] training seed {seed}", flush=True)
    train_model(config, data / "annotations.json", data / "videos", out,
                cache_dir=work / "train" / "frame_cache", resume=True, progress=False)  # fmt: skip
    return out / MODEL_DIR


def cache_name(weights: Path) -> str:
    """The folder of a network's cached outputs: new weights, new outputs."""
    return f"{weights.stem}-{hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}"


def detections(
    grid: VideoGrid, logits: np.ndarray, offsets: np.ndarray | None, classes
) -> list[Detection]:
    """The model's detections (NMS, voting at VOTE_IOU) with each window moved by its
    boundary network's offsets first (None: the grid's own places), as scnn detect does."""
    windows = scored_windows(grid, softmax(logits), classes)
    if offsets is not None:
        length_s = grid.window_frames / grid.fps
        windows = dataclasses.replace(
            windows,
            start_offset_s=offsets[:, 0] * length_s,
            end_offset_s=offsets[:, 1] * length_s,
        )
    return postprocess(windows, NMS_IOU, vote_iou=VOTE_IOU)


def clip_refined(
    found: list[Detection],
    clips: BoundaryClips,
    frames: Mapping[str, np.ndarray],
    model: LoadedModel,
) -> list[Detection]:
    """Each detection's start and end moved by ``clips.rounds`` rounds of the boundary-clip
    network (scnn.boundary_clips), from the video's decoded frames."""
    offsets_of = network_offsets(clips.network)
    moved = list(found)
    for video in {d.video for d in found}:
        rows = [i for i, d in enumerate(found) if d.video == video]
        segments = np.array([(found[i].start_s, found[i].end_s) for i in rows])
        refined = refine_segments(
            segments, frames[video], 1, len(frames[video]), clips, offsets_of,
            model.convention, model.fps,
        )  # fmt: skip
        for i, (start, end) in zip(rows, refined, strict=True):
            moved[i] = dataclasses.replace(found[i], start_s=float(start), end_s=float(end))
    return moved


def action_offsets(
    name: str, test: int, work: Path, model: LoadedModel, grid: VideoGrid, logits
) -> np.ndarray:
    """The boundary network's offsets for the windows the localization network labels with an
    action (0 for the others, which detection drops), computed once."""
    path = work / "logits" / name / f"test{test}.npy"
    if not path.is_file():
        print(f"[boundaries] {name} on test set {test}", flush=True)
        action = np.flatnonzero(logits.argmax(axis=1) > 0)
        config = TrainConfig(clip=model.clip, windows=model.windows)
        frames = test_grid(test, work, model.classes, config)[2]
        part = VideoGrid(
            grid.videos[action],
            grid.window_frames[action],
            grid.start_frame[action],
            grid.end_frame[action],
            grid.fps,
        )
        offsets = np.zeros((len(grid), 2), np.float32)
        network = model.boundaries
        offsets[action] = window_logits(network, part, frames, model.clip, torch.device("cpu"))
        with atomic_write(path, "wb") as handle:
            np.save(handle, offsets)
    return np.load(path)


def offset_errors(
    gt: GroundTruth, grid: VideoGrid, logits: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the windows labelled with an action at tIoU ≥ 0.5 with an instance: the offsets'
    errors (fractions of the window), and each window's tIoU before and after moving."""
    errors, before, after = [], [], []
    lengths_s = grid.window_frames / grid.fps
    for video in dict.fromkeys(grid.videos):
        instances = instance_segments(gt, video)
        rows = np.flatnonzero((grid.videos == video) & (logits.argmax(axis=1) > 0))
        if len(instances) == 0 or len(rows) == 0:
            continue
        windows = placed_segments_s(grid.start_frame[rows], grid.window_frames[rows])
        iou = temporal_iou(windows, instances).max(axis=1)
        rows, windows, iou = rows[iou >= 0.5], windows[iou >= 0.5], iou[iou >= 0.5]
        errors.append(np.abs(offsets[rows] - segment_offsets(windows, instances)))
        moved_s = windows + offsets[rows] * lengths_s[rows, None]
        best = temporal_iou(windows, instances).argmax(axis=1)
        after.append(np.diag(temporal_iou(moved_s, instances[best])))
        before.append(iou)
    return np.concatenate(errors), np.concatenate(before), np.concatenate(after)


def score_part(work: Path, sets: Sequence[int], model_dirs: Mapping[int, Path]) -> None:
    """Each seed's model (``model_dirs``) on test sets ``sets``: S-CNN's grid, then the
    boundary clips 1…SCORED_ROUNDS times; with a boundary network also the windows it moves,
    and the boundary clips the model's rounds on those."""
    rows: dict[str, list] = {}
    for seed, model_dir in model_dirs.items():
        model = load_model(model_dir)
        if model.boundary_clips is None:
            raise SystemExit(f"{model_dir}: no boundary-clip network")
        config = TrainConfig(clip=model.clip, windows=model.windows)
        once = dataclasses.replace(model.boundary_clips, rounds=1)
        variants = [GRID] + [clip_variant(k, model.boundary_clips.rounds) for k in ROUNDS]
        if model.boundaries is not None:
            variants += [
                MOVED,
                f"windows moved, voting, boundary clips {model.boundary_clips.rounds}×",
            ]
        per_set, errors = [], []
        for test in sets:
            gt, grid, logits = cached_logits(
                cache_name(model_dir / LOCALIZATION_WEIGHTS),
                model.localization,
                test,
                work,
                model.classes,
                config,
            )
            frames = test_grid(test, work, model.classes, config)[2]
            found = detections(grid, logits, None, model.classes)
            scores = [metrics(gt, found)]
            for _ in ROUNDS:
                found = clip_refined(found, once, frames, model)
                scores.append(metrics(gt, found))
            if model.boundaries is not None:
                name = cache_name(model_dir / BOUNDARY_WEIGHTS)
                offsets = action_offsets(name, test, work, model, grid, logits)
                errors.append(offset_errors(gt, grid, logits, offsets))
                moved = detections(grid, logits, offsets, model.classes)
                scores += [
                    metrics(gt, moved),
                    metrics(gt, clip_refined(moved, model.boundary_clips, frames, model)),
                ]
            per_set.append(scores)
        if errors:
            error, before, after = (np.concatenate(parts) for parts in zip(*errors, strict=True))
            print(f"seed {seed}: {len(error)} windows labelled with an action at tIoU ≥ 0.5; "
                  f"offset error per end median {np.median(error):.3f}, mean {error.mean():.3f} "
                  f"of the window; mean tIoU {before.mean():.3f}, moved {after.mean():.3f}",
                  flush=True)  # fmt: skip
        print(f"seed {seed}:")
        for k, variant in enumerate(variants):
            found = [row[k] for row in per_set]
            mean = {key: np.mean([m[key] for m, _ in found]) for key in found[0][0]}
            rows.setdefault(variant, []).append((mean, sum(c for _, c in found)))
            print(f"  {variant}: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    print(f"\nThe CPU config with its boundary stages, training seeds {list(model_dirs)}, "
          f"test sets {list(sets)}; mean ± std over the seeds (each seed's mAP the mean over the "
          "sets):\n")  # fmt: skip
    print(table(rows))


def clip_variant(rounds: int, model_rounds: int) -> str:
    """The row of the boundary clips applied ``rounds`` times."""
    return f"boundary clips {rounds}×" + (" (the model)" if rounds == model_rounds else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs") / "accuracy")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--part", choices=("train", "score"), default="score")
    parser.add_argument("--seed", type=int, action="append", help="training seeds (default 0 1 2)")
    parser.add_argument("--sets", choices=tuple(SETS), default="new")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seed or list(TRAIN_SEEDS)
    if args.part == "train":
        for seed in seeds:
            trained_run(args.work, seed)
    else:
        score_part(args.work, SETS[args.sets], {s: trained_run(args.work, s) for s in seeds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
