"""Fine-tuning against training from scratch: mAP@0.5 after N training steps per stage.

The bundled 6-class model (src/scnn/models/default) starts a run on an 8-class synthetic
dataset (``scnn synth --num-classes 8``: the six classes it knows, MoveUp and MoveDown new),
as ``scnn train DATA --init-from MODEL_DIR`` does, next to the same config trained from
scratch on the same data with the same seed. Each (variant, steps) pair is one whole run, its
learning-rate schedule fitted to its steps; the test videos are scored by the THUMOS14
protocol. Runs already finished in WORK are reused, so an interrupted benchmark continues.

    nice -n 10 python3 benchmarks/accuracy/finetune.py /tmp/finetune --threads 1 --steps 50 150
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch

from scnn import training_job
from scnn.batch import detect_videos
from scnn.config import CPU_DEFAULT_CONFIG, load_config
from scnn.detect import BUNDLED_MODEL, Detector
from scnn.evaluate import evaluate
from scnn.fileio import atomic_write_text
from scnn.formats import load_ground_truth
from scnn.modelfile import load_model
from scnn.synth import SynthConfig, generate

SEED = 2027  # a dataset the bundled model (seed 0's videos) never saw
PROTOCOL = "thumos14"
IOU = 0.5
# variant → config overrides; "finetune_stages" is only read when init_from is a model directory
VARIANTS = {
    "scratch": {},
    "finetune localization": {"init_from": str(BUNDLED_MODEL)},
    "finetune all three": {
        "init_from": str(BUNDLED_MODEL),
        "finetune_stages": ["proposal", "classification", "localization"],
    },
}


def dataset(work: Path, args: argparse.Namespace) -> Path:
    """The 8-class synthetic dataset, generated once."""
    root = work / "data"
    if not (root / "annotations.json").is_file():
        config = SynthConfig(
            num_classes=8,
            train_videos=args.train_videos,
            val_videos=2,
            test_videos=args.test_videos,
            duration_range_s=(40.0, 80.0),
            seed=SEED,
        )
        generate(root, config, quiet=True)
    return root


def train_run(root: Path, out: Path, overrides: dict, steps: int) -> float:
    """Train one variant for ``steps`` per stage (skipped when its model exists); seconds."""
    if (out / training_job.MODEL_DIR / "model.json").is_file():
        return json.loads((out / "seconds.json").read_text())["seconds"]
    config = load_config(CPU_DEFAULT_CONFIG, {**overrides, "steps": steps, "device": "cpu"})
    tick = time.perf_counter()
    training_job.train_model(
        config,
        root / "annotations.json",
        root / "videos",
        out,
        cache_dir=root.parent / "frame_cache",
        progress=False,
    )
    seconds = time.perf_counter() - tick
    atomic_write_text(out / "seconds.json", json.dumps({"seconds": seconds}) + "\n")
    return seconds


def score(root: Path, model_dir: Path) -> dict[str, float]:
    """mAP@0.5 on the test videos; AP@0.5 averaged over the classes the bundled model knows and
    over the new ones. Kept beside the model, so a rerun does not detect again."""
    saved = model_dir.parent / "score.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    gt = load_ground_truth(root / "annotations.json", "testing")
    detector = Detector.load(model_dir)
    paths = [root / "videos" / f"{video}.mp4" for video in gt.videos]
    detections = detect_videos(detector, paths, quiet=True).all_detections()
    result = evaluate(gt, detections, PROTOCOL)
    ap = result.average_precision[result.iou_thresholds.index(IOU)]
    known = set(load_model(BUNDLED_MODEL).classes)
    is_known = np.array([name in known for name in result.classes])
    scores = {
        "map": float(ap.mean()),
        "known_ap": float(ap[is_known].mean()),
        "new_ap": float(ap[~is_known].mean()),
    }
    atomic_write_text(saved, json.dumps(scores) + "\n")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="folder for the dataset, runs and results")
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 150])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--train-videos", type=int, default=8)
    parser.add_argument("--test-videos", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = dataset(args.work, args)
    rows = []
    for name in args.variants:
        for steps in args.steps:
            out = args.work / "runs" / f"{name.replace(' ', '_')}_{steps}"
            seconds = train_run(root, out, VARIANTS[name], steps)
            stages = json.loads((out / training_job.MODEL_DIR / "model.json").read_text())["config"]
            trained = len(stages["started_from"]["trained_stages"])
            row = {"variant": name, "steps": steps, "total_steps": trained * steps}
            rows.append(
                {**row, "train_s": round(seconds, 1), **score(root, out / training_job.MODEL_DIR)}
            )
            print(json.dumps(rows[-1]), flush=True)
    record = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes")}
    record |= {"threads": args.threads, "seed": SEED, "rows": rows}
    atomic_write_text(args.work / "results.json", json.dumps(record, indent=1) + "\n")
    print("| variant | steps per stage | steps in all | train s | mAP@0.5 | known AP | new AP |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['steps']} | {r['total_steps']} | {r['train_s']:.0f} | "
            f"{r['map']:.3f} | {r['known_ap']:.3f} | {r['new_ap']:.3f} |"
        )


if __name__ == "__main__":
    main()
