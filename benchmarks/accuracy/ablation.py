"""Does each S-CNN stage earn its place? The paper's ablations on the synthetic benchmark.

Issue 9. One command trains, scores and evaluates every variant for every seed, caches each
result on disk and writes benchmarks/accuracy/ABLATIONS.md with figures:

    python3 benchmarks/accuracy/ablation.py --budget tiny --threads 1   # smoke run, minutes
    python3 benchmarks/accuracy/ablation.py --budget full --threads 2   # the real run, hours

Protocol. One synthetic dataset (scnn.synth, data seed 0) for every training seed; the seeds
change weight initialisation, dropout and the draw of training clips. Per seed each network
is trained once and reused: proposal, classification, localization (λ = 1, α = 0.25), six
more localization networks from the same classification weights (λ ∈ {0, 0.5, 2} at
α = 0.25, α ∈ {0.125, 0.5, 1} at λ = 1), and the single-frame proposal and localization
networks (single_frame.py). Each network scores every window of every test video
once (softmax, proposal threshold 0); thresholds, the prior and NMS are applied offline
(tests/offline_detection.py). mAP at IoU 0.1…0.7 under the ``scnn`` and ``activitynet``
protocols; NMS at evaluation IoU − 0.1 (the authors' rule) unless a variant says otherwise.

Resuming: a finished stage, score array or result JSON is never recomputed; an interrupted
stage continues from its checkpoint. Layout under --work::

    data/                         the synthetic dataset
    frame_cache/                  decoded frames of every video
    seed<S>/base/                 proposal, classification, localization (scnn.train layout)
    seed<S>/loc_<variant>/        localization stages of the λ/α variants
    seed<S>/single_frame/         the 2-D networks (safetensors)
    seed<S>/scores/<network>.npy  (windows, outputs) softmax on the test grid
    seed<S>/times.json            wall seconds of each training and scoring step
    results/<variant>/seed<S>.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from ablation_report import write_report  # noqa: E402
from offline_detection import (  # noqa: E402
    VideoGrid,
    grid_of_videos,
    map_table,
    oracle_windows,
    pooled_pr_curve,
    proposal_stage_recall,
    scored_windows,
    softmax,
    window_logits,
)
from single_frame import SingleFrameNet, train_single_frame  # noqa: E402

from scnn.config import TrainConfig, load_config, write_run_config  # noqa: E402
from scnn.dataset import cache_videos  # noqa: E402
from scnn.fileio import atomic_write, atomic_write_bytes, atomic_write_text  # noqa: E402
from scnn.formats import load_ground_truth  # noqa: E402
from scnn.model import build_network  # noqa: E402
from scnn.modelfile import load_state, state_bytes  # noqa: E402
from scnn.postprocess import window_length_prior  # noqa: E402
from scnn.records import GroundTruth  # noqa: E402
from scnn.stages import (  # noqa: E402
    LOCALIZATION,
    PROPOSAL,
    STAGES,
    Stage,
    TrainingData,
    prepare_data,
)
from scnn.synth import SynthConfig, generate  # noqa: E402
from scnn.train import METRICS, WEIGHTS, train  # noqa: E402
from scnn.video import FPS, video_files  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
PROPOSAL_THRESHOLDS = (0.0, 0.5, 0.7, 0.9)  # 0: every window passes
ORACLE = "oracle"
# Localization networks retrained from the same classification weights: name -> (λ, α).
LOSS_VARIANTS = {
    "loc_lambda0": (0.0, 0.25),
    "loc_lambda0.5": (0.5, 0.25),
    "loc_lambda2": (2.0, 0.25),
    "loc_alpha0.125": (1.0, 0.125),
    "loc_alpha0.5": (1.0, 0.5),
    "loc_alpha1": (1.0, 1.0),
}


@dataclass(frozen=True)
class Budget:
    """A dataset, config overrides on top of configs/synthetic_cpu.toml, and the seeds."""

    synth: SynthConfig
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)


BUDGETS = {
    # Minutes on one thread: proves every step of the harness, says nothing about the claims.
    "tiny": Budget(
        SynthConfig(
            num_classes=3,
            train_videos=4,
            val_videos=1,
            test_videos=2,
            duration_range_s=(24.0, 32.0),
            instance_duration_range_s=(0.6, 8.0),
        ),
        {
            "steps": 30,
            "batch_size": 8,
            "log_every": 10,
            "checkpoint_every": 30,
            "workers": 0,
            "data.val_samples": 64,
        },
        (0,),
    ),
    # The default synthetic dataset and the CPU default config (1200 steps per stage), in
    # fp32: the run behind ABLATIONS.md predates bf16 training on CPUs, and a resumed run
    # must train the remaining networks the same way.
    "full": Budget(SynthConfig(), {"amp": False}),
}


@dataclass(frozen=True)
class Variant:
    """One row of the table: which networks score the windows and how they are post-processed."""

    name: str
    question: str  # the item it answers
    description: str
    localization: str  # network giving the class scores, or ORACLE
    proposal: str | None = "proposal"  # network giving P(action); None: every window goes on
    threshold: float = 0.7  # proposal threshold
    prior: bool = True  # window-length prior
    nms: float | None = None  # None: the authors' evaluation IoU − 0.1; else this fixed IoU


VARIANTS = (
    Variant("full", "1", "full S-CNN", "localization"),
    Variant("no_proposal", "2", "no proposal network", "localization", proposal=None),
    Variant("classification", "3", "classification net as localization", "classification"),
    *(
        Variant(name, "4", f"λ = {lam:g}, α = {alpha:g}", name)
        for name, (lam, alpha) in LOSS_VARIANTS.items()
    ),
    Variant("no_prior", "5", "no window-length prior", "localization", prior=False),
    Variant("nms_fixed_0.4", "6", "NMS at a fixed 0.4", "localization", nms=0.4),
    Variant("proposal_0.5", "7", "proposal threshold 0.5", "localization", threshold=0.5),
    Variant("proposal_0.9", "7", "proposal threshold 0.9", "localization", threshold=0.9),
    Variant("oracle", "8", "oracle windows (score = IoU)", ORACLE, proposal=None),
    Variant("oracle_no_prior", "8", "oracle, no prior", ORACLE, proposal=None, prior=False),
    Variant("single_frame", "8", "single frame (2-D CNN)", "sf_localization", "sf_proposal"),
)
# The same questions with the prior off: the prior may hurt on this benchmark (item 5), which
# would hide what the other stages do. ``no_prior`` and ``oracle_no_prior`` are the
# references of this half.
VARIANTS += tuple(
    replace(v, name=f"{v.name}_no_prior", description=f"{v.description}, no prior", prior=False)
    for v in VARIANTS
    if v.prior and v.name not in ("full", "oracle")
)


class Ledger:
    """Wall seconds of each finished step of a seed, in one JSON file. A step is redone only
    when it is missing from the file or its output is missing."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds: dict[str, float] = (
            json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        )

    def run(self, key: str, output: Path, step: Callable[[], object]) -> None:
        if key in self.seconds and output.is_file():
            return
        print(f"[ablation] {self.path.parent.name}: {key}", flush=True)
        tick = time.perf_counter()
        step()
        self.seconds[key] = time.perf_counter() - tick
        atomic_write_text(self.path, json.dumps(self.seconds, indent=1) + "\n")


# --- networks --------------------------------------------------------------------------------


def _train_stage(stage: Stage, config: TrainConfig, data: TrainingData, out: Path) -> None:
    train(stage, config, data, out, resume=True, progress=False)


def _train_single_frame(stage: Stage, config: TrainConfig, data: TrainingData, path: Path) -> None:
    atomic_write_bytes(path, state_bytes(train_single_frame(stage, config, data)))


def train_networks(seed_dir: Path, config: TrainConfig, data: TrainingData, ledger: Ledger) -> None:
    """Every network of one seed, each trained once (see the module docstring)."""
    base = seed_dir / "base"
    write_run_config(base, config, resume=True)
    for stage in STAGES:
        step = partial(_train_stage, stage, config, data, base)
        ledger.run(f"train/{stage.name}", base / stage.name / METRICS, step)
    for name, (lam, alpha) in LOSS_VARIANTS.items():
        out = seed_dir / name
        variant = replace(config, overlap_lambda=lam, overlap_alpha=alpha)
        write_run_config(out, variant, resume=True)
        start = out / "classification" / WEIGHTS  # the localization stage starts from it
        if not start.is_file():
            atomic_write_bytes(start, (base / "classification" / WEIGHTS).read_bytes())
        step = partial(_train_stage, LOCALIZATION, variant, data, out)
        ledger.run(f"train/{name}", out / "localization" / METRICS, step)
    for stage in (PROPOSAL, LOCALIZATION):
        path = seed_dir / "single_frame" / f"{stage.name}.safetensors"
        step = partial(_train_single_frame, stage, config, data, path)
        ledger.run(f"train/sf_{stage.name}", path, step)


def network_weights(seed_dir: Path) -> dict[str, tuple[Stage, Path]]:
    """Each scoring network's stage (its outputs) and weights file."""
    networks = {stage.name: (stage, seed_dir / "base" / stage.name / WEIGHTS) for stage in STAGES}
    for name in LOSS_VARIANTS:
        networks[name] = (LOCALIZATION, seed_dir / name / "localization" / WEIGHTS)
    for stage in (PROPOSAL, LOCALIZATION):
        path = seed_dir / "single_frame" / f"{stage.name}.safetensors"
        networks[f"sf_{stage.name}"] = (stage, path)
    return networks


# Training steps each network's scores depend on (for the wall time of a variant).
def training_keys(network: str) -> tuple[str, ...]:
    if network == "localization":
        return ("train/classification", "train/localization")
    if network in LOSS_VARIANTS:
        return ("train/classification", f"train/{network}")
    return (f"train/{network}",)


def score_networks(
    seed_dir: Path,
    config: TrainConfig,
    classes: tuple[str, ...],
    grid: VideoGrid,
    frames: Mapping[str, np.ndarray],
    ledger: Ledger,
) -> None:
    device = torch.device("cpu" if config.device == "auto" else config.device)
    for name, (stage, weights) in network_weights(seed_dir).items():
        outputs = stage.num_outputs(len(classes))
        if name.startswith("sf_"):
            network: torch.nn.Module = SingleFrameNet(outputs, config.model.dropout)
        else:
            network = build_network(outputs, config.model, config.clip)
        load_state(network, weights)
        path = seed_dir / "scores" / f"{name}.npy"

        def step(network=network, path=path) -> None:
            with atomic_write(path, "wb") as handle:
                np.save(handle, softmax(window_logits(network, grid, frames, config.clip, device)))

        ledger.run(f"score/{name}", path, step)


# --- variants --------------------------------------------------------------------------------


def evaluate_variant(
    variant: Variant,
    seed_dir: Path,
    grid: VideoGrid,
    gt: GroundTruth,
    prior: Mapping[int, np.ndarray],
    ledger: Ledger,
) -> dict[str, Any]:
    """mAP table, pooled PR curve and wall times of one variant on one seed.

    ``detect_s`` is what detection would cost: the proposal network on every window plus the
    localization network on the windows that pass (per-window times measured while scoring).
    """
    tick = time.perf_counter()

    def scores(network: str) -> np.ndarray:
        return np.load(seed_dir / "scores" / f"{network}.npy")

    keep = None
    if variant.localization == ORACLE:
        windows = oracle_windows(grid, gt)
    else:
        if variant.proposal is not None:
            keep = scores(variant.proposal)[:, 1] >= variant.threshold
        windows = scored_windows(grid, scores(variant.localization), gt.classes, keep)
    used_prior = prior if variant.prior else None
    table = map_table(gt, windows, used_prior, variant.nms)
    curve = pooled_pr_curve(gt, windows, used_prior, variant.nms)
    post_s = time.perf_counter() - tick

    kept_fraction = 1.0 if keep is None else float(keep.mean())
    train_s = detect_s = 0.0
    if variant.localization != ORACLE:
        networks = [variant.localization] + ([variant.proposal] if variant.proposal else [])
        keys = {key for network in networks for key in training_keys(network)}
        train_s = sum(ledger.seconds[key] for key in keys)
        detect_s = ledger.seconds[f"score/{variant.localization}"] * kept_fraction
        if variant.proposal is not None:
            detect_s += ledger.seconds[f"score/{variant.proposal}"]
    return {
        "variant": variant.name,
        "windows": len(grid),
        "kept_fraction": kept_fraction,
        "mAP": table,
        "pr_curve": curve,
        "train_s": train_s,
        "detect_s": detect_s,
        "post_s": post_s,
    }


# --- the run ---------------------------------------------------------------------------------


def run_seed(
    seed: int,
    budget: Budget,
    work: Path,
    data_dir: Path,
    args: argparse.Namespace,
) -> None:
    config = load_config("synthetic_cpu", {**budget.overrides, "seed": seed, "device": args.device})
    seed_dir = work / f"seed{seed}"
    ledger = Ledger(seed_dir / "times.json")
    data = prepare_data(
        config,
        data_dir / "annotations.json",
        data_dir / "videos",
        work / "frame_cache",
        progress=False,
    )
    train_networks(seed_dir, config, data, ledger)

    gt = load_ground_truth(data_dir / "annotations.json", "testing", classes=data.classes)
    paths = video_files(data_dir / "videos", gt.videos)
    num_frames = cache_videos(data.cache, paths, progress=False)
    frames = {video: data.cache.frames(video, path) for video, path in paths.items()}
    grid = grid_of_videos(num_frames, config.windows, FPS)
    score_networks(seed_dir, config, data.classes, grid, frames, ledger)

    prior = window_length_prior(
        data.train_gt.instances, data.classes, config.windows.lengths_frames
    )
    for variant in VARIANTS:
        path = work / "results" / variant.name / f"seed{seed}.json"
        if not path.is_file():
            result = evaluate_variant(variant, seed_dir, grid, gt, prior, ledger)
            record = {**result, "seed": seed, "budget": args.budget}
            atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    path = work / "results" / "proposal_recall" / f"seed{seed}.json"
    if not path.is_file():
        p_action = np.load(seed_dir / "scores" / "proposal.npy")[:, 1]
        rows = [proposal_stage_recall(gt, grid, p_action, t) for t in PROPOSAL_THRESHOLDS]
        atomic_write_text(path, json.dumps({"seed": seed, "rows": rows}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the budget's)")
    parser.add_argument("--work", type=Path, help="cache folder (default: runs/ablation-BUDGET)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--markdown", type=Path, default=BENCHMARKS / "ABLATIONS.md", help="report to write"
    )
    parser.add_argument(
        "--figures",
        type=Path,
        default=BENCHMARKS / "ablation_figures",
        help="folder of the PNG figures",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = BUDGETS[args.budget]
    seeds = budget.seeds if args.seeds is None else tuple(range(args.seeds))
    work = args.work or Path("runs") / f"ablation-{args.budget}"
    data_dir = work / "data"
    if not (data_dir / "annotations.json").is_file():
        print(f"[ablation] generating the synthetic dataset in {data_dir}", flush=True)
        generate(data_dir, budget.synth, quiet=True)
    for seed in seeds:
        run_seed(seed, budget, work, data_dir, args)
    write_report(
        work,
        args.markdown,
        args.figures,
        {
            "budget": args.budget,
            "seeds": list(seeds),
            "synth": budget.synth,
            "overrides": dict(budget.overrides),
            "threads": args.threads,
            "device": args.device,
            "machine": f"{platform.processor() or platform.machine()}, "
            f"torch threads: {torch.get_num_threads()}",
            "command": "python3 benchmarks/accuracy/ablation.py " + " ".join(sys.argv[1:]),
        },
        [(v.name, v.question, v.description) for v in VARIANTS],
    )
    print(f"[ablation] wrote {args.markdown} and {args.figures}/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
