"""``scnn train``: the three networks trained from a config, the model directory written."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.boundary_training import BOUNDARY_STAGES
from scnn.bundled_data import resolve_ground_truth
from scnn.cli.common import EXIT_OK, keep_cpu_allocations, torchrun_world
from scnn.errors import ScnnError
from scnn.stages import STAGES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn train`` and its arguments."""
    parser = subparsers.add_parser(
        "train",
        help="train the proposal, classification and localization networks",
        description="Train S-CNN's three networks (proposal, classification, then localization "
        "from classification) and write OUT/model, the directory `scnn detect` uses. Settings "
        "come from a TOML config; the flags below override it; the resolved config is saved "
        "as OUT/config.json.",
    )
    parser.add_argument(
        "dataset",
        type=Path,
        nargs="?",
        help="folder with annotations.json and videos/ (as `scnn synth` writes it)",
    )
    parser.add_argument(
        "--annotations",
        type=resolve_ground_truth,
        help="ground truth: ActivityNet JSON, THUMOS14 folder or CSV, or thumos14-val (the "
        "bundled THUMOS14 validation set) (default: DATASET/annotations.json)",
    )
    parser.add_argument(
        "--videos", type=Path, help="folder of <video>.<ext> files (default: DATASET/videos)"
    )
    parser.add_argument(
        "--val-annotations",
        type=resolve_ground_truth,
        help="ground truth holding the validation subset, or thumos14-val (bundled) "
        "(default: the --annotations file)",
    )
    parser.add_argument(
        "--trimmed",
        type=Path,
        help="trimmed clips as FOLDER/<class>/<clip>.<ext>, each one positive sample",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--config",
        default="synthetic_cpu",
        help="TOML file, or a ready config: synthetic_cpu (default, small CPU model), "
        "thumos14 (the authors' setup)",
    )
    parser.add_argument(
        "--stage",
        choices=("all", *(stage.name for stage in STAGES), *BOUNDARY_STAGES),
        default="all",
        help="stage(s) to train (default: all; the boundary stages only with boundaries = true "
        "in the config)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip finished stages and continue the others from their last checkpoint",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="decoded-frame cache (default: OUT/frame_cache; 98.5 MB per video-minute at 171x128)",
    )
    parser.add_argument("--steps", type=int, help="optimiser steps per stage")
    parser.add_argument("--batch-size", type=int, help="clips per step")
    parser.add_argument("--lr", type=float, help="base learning rate")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes (0: none)")
    parser.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--seed", type=int, help="seed of weights, sample order and crops")
    parser.add_argument(
        "--init-from",
        help="starting weights: an scnn model directory to fine-tune (its classes' fc8 rows "
        "kept, new classes fresh; see --finetune-stages), or the Sports-1M C3D Caffe file "
        "(conv3d_deepnetA_sport1m_iter_1900000: the run then takes BGR frames and Caffe "
        "pooling, as those weights learnt) or its PyTorch port (a torch.save-d state dict, "
        "e.g. c3d.pickle) for the proposal and classification stages",
    )
    parser.add_argument(
        "--mean",
        metavar="MEAN.binaryproto",
        help="C3D's per-pixel mean file (e.g. sport1m_train16_128_mean.binaryproto, with the "
        "Sports-1M .caffemodel): subtracted instead of the per-channel mean, in training and "
        "by the model directory written (a model directory of --init-from brings its own)",
    )
    parser.add_argument(
        "--finetune-stages",
        nargs="+",
        choices=[stage.name for stage in STAGES],
        help="with --init-from MODEL_DIR, the stages to train (localization among them; "
        "default: localization); the model's proposal network is kept when left out",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic kernels, so --resume reaches the same weights as one run",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key with a TOML value, e.g. --set clip.crop_size=64",
    )
    parser.set_defaults(run=run)


# The flags that set a config key of the same name (the rest go through --set).
CONFIG_FLAGS = (
    "steps",
    "batch_size",
    "lr",
    "workers",
    "device",
    "seed",
    "init_from",
    "mean",
    "finetune_stages",
    "deterministic",
)


def config_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The config keys the command line sets: each ``--set KEY=VALUE``, then the flags."""
    from scnn.config import parse_override

    overrides: dict[str, object] = dict(parse_override(item) for item in args.set)
    overrides.update(
        {flag: getattr(args, flag) for flag in CONFIG_FLAGS if getattr(args, flag) is not None}
    )
    return overrides


def run(args: argparse.Namespace) -> int:
    """Train; torch's global determinism settings are made here, from the resolved config."""
    import os

    import torch

    from scnn.distributed import SINGLE
    from scnn.pretrained import training_config
    from scnn.train import training_device
    from scnn.training_job import train_model

    if args.dataset is None and (args.annotations is None or args.videos is None):
        raise ScnnError("give a DATASET folder, or both --annotations and --videos")
    config = training_config(args.config, config_overrides(args))
    if config.deterministic:  # cuBLAS needs a fixed workspace to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(config.deterministic)
    torch.backends.cudnn.benchmark = not config.deterministic
    world = torchrun_world() or SINGLE
    keep_cpu_allocations(training_device(config, world))
    model_dir = train_model(
        config,
        args.annotations or args.dataset / "annotations.json",
        args.videos or args.dataset / "videos",
        args.out,
        stage=args.stage,
        val_annotations=args.val_annotations,
        trimmed_dir=args.trimmed,
        cache_dir=args.cache_dir,
        resume=args.resume,
        progress=not args.quiet,
        world=world,
    )
    if model_dir is not None and world.is_main:
        print(f"model directory: {model_dir}")
    return EXIT_OK
