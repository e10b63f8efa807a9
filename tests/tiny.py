"""The tiny synthetic dataset, training config and random-weight model that tests share.

A CPU-sized problem: 2 classes, 3 training videos of 8-10 s, tiny frames, a 1/16-width C3D
that learns something in a few dozen steps. A test that depends on other values changes them
where it uses these, and says why.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scnn.boundary_clips import BoundaryClips
from scnn.clips import ClipConfig, InputConvention
from scnn.model import ModelOptions, build_network
from scnn.modelfile import LoadedModel, load_model, save_model
from scnn.synth import SynthConfig
from scnn.windows import WindowConfig

SYNTH = SynthConfig(
    num_classes=2,
    train_videos=3,
    val_videos=1,
    test_videos=0,
    duration_range_s=(8.0, 10.0),
    instance_duration_range_s=(0.6, 2.5),
    width=48,
    height=36,
)
TINY = {
    "windows": {"lengths_frames": [16, 32, 64]},
    "clip": {"frame_size": [40, 32], "crop_size": 32, "std_rgb": [58.0, 57.0, 57.0]},
    # the padded pooling rule keeps fc6 4x wider at 32x32 crops: the steps below were tuned with it
    "model": {"width": 0.0625, "dropout": 0.0, "batch_norm": True, "pooling": "padded"},
    "optimizer": "adamw",
    "lr": 3e-3,
    "fc8_lr_mult": 1.0,
    "weight_decay": 0.0,
    "batch_size": 8,
    "steps": 30,
    "log_every": 5,
    "checkpoint_every": 10,
    "workers": 0,
    "device": "cpu",
    "data": {"val_samples": 64},
}


def toml_text(values: Mapping[str, Any]) -> str:
    """``values`` (a config dict like TINY: plain keys, then one level of tables) as a TOML
    file's text, for ``scnn train --config``."""
    keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items() if not isinstance(v, dict))
    tables = "".join(
        f"[{table}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entries.items())
        for table, entries in values.items()
        if isinstance(entries, dict)
    )
    return keys + tables


# A detector small enough to run whole videos in a test: 1/16-width C3D on 32x32 crops.
MODEL_CLASSES = ("Jump", "Run", "Throw")
MODEL_CLIP = ClipConfig(frame_size=(64, 48), crop_size=32, std_rgb=(58.0, 57.0, 57.0))
MODEL_OPTIONS = ModelOptions(width=0.0625, dropout=0.0, batch_norm=False)
MODEL_WINDOWS = WindowConfig()  # the faithful grid, 16..512 frames


def random_model(
    path: Path,
    *,
    classes: tuple[str, ...] = MODEL_CLASSES,
    clip: ClipConfig = MODEL_CLIP,
    options: ModelOptions = MODEL_OPTIONS,
    windows: WindowConfig = MODEL_WINDOWS,
    prior: Mapping[int, np.ndarray] | None = None,
    convention: InputConvention | None = None,
    vote_iou: float | None = None,
) -> Path:
    """A model directory with seeded random weights: detection runs end to end, nothing is
    learnt. The prior defaults to uniform (1 / number of window lengths)."""
    torch.manual_seed(0)
    lengths = windows.lengths_frames
    uniform = {length: np.full(len(classes), 1 / len(lengths)) for length in lengths}
    model = LoadedModel(
        proposal=build_network(2, options, clip),
        localization=build_network(len(classes) + 1, options, clip),
        classes=classes,
        prior=uniform if prior is None else prior,
        windows=windows,
        convention=convention or clip.convention(),
        clip=clip,
        options=options,
        vote_iou=vote_iou,
    )
    save_model(path, model)
    return path


SMALL_CLIP = ClipConfig(frame_size=(64, 48), crop_size=32)
SMALL_OPTIONS = ModelOptions(width=0.0625, dropout=0.0)
SMALL_WINDOWS = WindowConfig((16, 32))
SMALL_CLASSES = ("jump", "run")


def small_model(path: Path, vote_iou: float | None = None) -> Path:
    """A random model with two classes and two window lengths (16, 32 frames) on 64x48 frames:
    cheap enough to load once per bad input."""
    prior = {length: np.full(len(SMALL_CLASSES), 0.5) for length in SMALL_WINDOWS.lengths_frames}
    return random_model(
        path,
        classes=SMALL_CLASSES,
        clip=SMALL_CLIP,
        options=SMALL_OPTIONS,
        windows=SMALL_WINDOWS,
        prior=prior,
        vote_iou=vote_iou,
    )


def constant_network(model, offsets: tuple[float, float]) -> torch.nn.Module:
    """A two-output network of ``model``'s architecture that gives every clip ``offsets``:
    its last layer's weights are zeros and its bias is the offsets."""
    torch.manual_seed(1)
    network = build_network(2, model.options, model.clip)
    torch.nn.init.zeros_(network.fc8.weight)
    with torch.no_grad():
        network.fc8.bias.copy_(torch.tensor(offsets))
    return network.eval()


def with_boundaries(model_dir: Path, out: Path, offsets: tuple[float, float]) -> Path:
    """A copy of ``model_dir`` with a boundary network that gives every window ``offsets``."""
    model = load_model(model_dir)
    save_model(out, dataclasses.replace(model, boundaries=constant_network(model, offsets)))
    return out


def with_boundary_clips(
    model_dir: Path, out: Path, offsets: tuple[float, float], rounds: int = 2
) -> Path:
    """A copy of ``model_dir`` with a boundary-clip network that gives every clip ``offsets``."""
    model = load_model(model_dir)
    clips = BoundaryClips(constant_network(model, offsets), rounds=rounds)
    save_model(out, dataclasses.replace(model, boundary_clips=clips))
    return out


class CreatesAFileWhenUnpickled:
    """Unpickling it creates ``marker``: proof that a loader ran code from a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))
