"""The tiny synthetic dataset and training config that the trainer tests share.

A CPU-sized problem: 2 classes, 3 training videos of 8-10 s, tiny frames, a 1/16-width C3D
that learns something in a few dozen steps. A test that depends on other values changes them
where it uses these, and says why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from scnn.synth import SynthConfig

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
    "model": {"width": 0.0625, "dropout": 0.0, "batch_norm": True},
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
