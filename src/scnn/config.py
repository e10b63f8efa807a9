"""The training configuration: :class:`TrainConfig` and the TOML files that set it.

A config file lists only what differs from the defaults (the authors' solver and the faithful
C3D); an unknown key or a wrongly typed value is an error naming the key. The resolved config
is written next to a run's outputs, and a resumed run must use the same one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scnn.clips import ClipConfig
from scnn.compiling import check_compile_mode
from scnn.dataset import DataConfig
from scnn.distributed import SINGLE, DrawPositions, World
from scnn.errors import ScnnError
from scnn.fileio import atomic_write_text
from scnn.model import ModelOptions
from scnn.modelfile import PROPOSAL_THRESHOLD
from scnn.windows import LabelConfig, WindowConfig

CONFIGS_DIR = Path(__file__).parent / "configs"  # the ready configs, usable by name
CPU_DEFAULT_CONFIG = "synthetic_cpu"  # the small model trained on the synthetic dataset
CONFIG_JSON = "config.json"

_OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on besides its data. Defaults: the authors' solver
    and the faithful C3D (configs/thumos14.toml); configs/synthetic_cpu.toml fits a CPU."""

    data: DataConfig = field(default_factory=DataConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    model: ModelOptions = field(default_factory=ModelOptions)
    init_from: str = ""  # starting weights (pretrained.py); "": from scratch
    # C3D's mean file (.binaryproto): its per-pixel cube replaces clip.mean_rgb, in training
    # and in the model directory written (pretrained.training_convention); "": none
    mean: str = ""
    # the stages trained when init_from is an scnn model directory (fine-tuning); the
    # proposal network, when left out, is the model's own
    finetune_stages: tuple[str, ...] = ("localization",)
    optimizer: str = "sgd"  # "sgd" (momentum) or "adamw"
    lr: float = 1e-4
    fc8_lr_mult: float = 100.0  # the new output layer learns this much faster
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 3  # clips per step
    steps: int = 30_000  # optimiser steps per stage
    overlap_lambda: float = 1.0  # λ of the overlap loss (localization stage)
    overlap_alpha: float = 0.25  # α of the overlap loss
    checkpoint_every: int = 1000  # steps
    log_every: int = 50  # steps
    workers: int = 1  # DataLoader worker processes (0: load in the training process)
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # bf16 autocast where the device computes bf16 natively (precision.py)
    channels_last: bool = True  # channels_last_3d memory format (faster on CPU and GPU)
    compile: str = ""  # torch.compile mode of the training step (COMPILE_MODES); "": eager
    # Detection's defaults written into the model directory (modelfile.LoadedModel):
    use_prior: bool = True  # weight scores by the window-length prior (method.md §4)
    proposal_threshold: float = PROPOSAL_THRESHOLD  # P(action) to reach localization; 0: no filter
    vote_iou: float = 0.0  # boundary voting (postprocess.vote_boundaries); 0: off, as S-CNN
    # Beyond S-CNN: a boundary-clip network (and optionally a boundary network) trained after
    # localization (boundary_training.py), written into the model directory; false: S-CNN's
    # stages only
    boundaries: bool = False
    boundary_steps: int = 0  # boundary network steps (16 windows + 16 segments each); 0: none
    boundary_clip_steps: int = 1500  # steps of the boundary-clip network (32 clips each)
    seed: int = 0
    deterministic: bool = False  # deterministic kernels: a resumed run equals an uninterrupted one

    def __post_init__(self) -> None:
        check_compile_mode(self.compile)
        if self.optimizer not in _OPTIMIZERS:
            raise ScnnError(f"optimizer '{self.optimizer}' is not one of {', '.join(_OPTIMIZERS)}")
        for name in (
            "batch_size",
            "steps",
            "checkpoint_every",
            "log_every",
            "boundary_clip_steps",
        ):
            if getattr(self, name) < 1:
                raise ScnnError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.boundary_steps < 0:
            raise ScnnError(f"boundary_steps must be at least 0, got {self.boundary_steps}")
        for name in ("proposal_threshold", "vote_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ScnnError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        solver = (
            "lr",
            "fc8_lr_mult",
            "momentum",
            "weight_decay",
            "overlap_lambda",
            "overlap_alpha",
        )
        for name in solver:
            if not 0.0 <= getattr(self, name) < math.inf:
                raise ScnnError(f"{name} must be a number >= 0, got {getattr(self, name)}")
        if self.workers < 0:
            raise ScnnError(f"workers must be at least 0, got {self.workers}")


# --- configs: TOML files that list only what differs from the defaults ---------------------


def config_from_dict(values: Mapping[str, Any], source: str | Path = "config") -> TrainConfig:
    """A TrainConfig from nested values; an unknown key or a wrongly typed value is a
    ScnnError naming the key (and ``source``)."""
    return _build(TrainConfig, values, "", source)


def _build(cls: type, values: Any, prefix: str, source: str | Path) -> Any:
    if not isinstance(values, Mapping):
        raise ScnnError(f"{prefix.rstrip('.') or 'config'}: expected a table", source)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ScnnError(
            f"unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(known))})", source
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}", source) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ScnnError(f"{prefix.rstrip('.') or 'config'}: {exc}", source) from exc


def _coerce(value: Any, hint: Any, key: str, source: str | Path) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.", source)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if isinstance(value, list | tuple):
            kinds = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
            if len(kinds) == len(value):
                return tuple(_coerce(v, t, key, source) for v, t in zip(value, kinds, strict=True))
        raise ScnnError(f"{key}: expected {len(args)} values, got {value!r}", source)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise ScnnError(f"{key}: type {hint} cannot be set from a config file", source)
    if not ok:
        raise ScnnError(f"{key}: expected {hint.__name__}, got {value!r}", source)
    return float(value) if hint is float else value


def config_path(name_or_path: str | Path) -> Path:
    """A config file: a path, or the name of a ready config (``synthetic_cpu``, ``thumos14``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    ready = CONFIGS_DIR / f"{name_or_path}.toml"
    if ready.is_file():
        return ready
    names = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.toml")))
    raise ScnnError(f"no such config file or ready config (ready: {names})", path)


def parse_override(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``scnn train --set`` as a config key and a TOML value; a bare word is a
    string, so ``--set device=cpu`` needs no quotes."""
    key, sep, text = item.partition("=")
    if not sep:
        raise ScnnError(f"--set {item}: expected KEY=VALUE")
    try:
        return key.strip(), tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), text


def load_config(name_or_path: str | Path, overrides: Mapping[str, Any] = {}) -> TrainConfig:
    """Read a TOML config and apply ``overrides`` (dotted keys, e.g. ``{"clip.crop_size": 64}``)."""
    values, path = config_values(name_or_path, overrides)
    return config_from_dict(values, path)


def config_values(
    name_or_path: str | Path, overrides: Mapping[str, Any] = {}
) -> tuple[dict[str, Any], Path]:
    """The nested values a TOML config and ``overrides`` set (what :func:`load_config` builds
    its TrainConfig from), and the config file's path."""
    path = config_path(name_or_path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScnnError(f"not valid TOML: {exc}", path) from exc
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        table = values
        for parent in parents:
            table = table.setdefault(parent, {})
            if not isinstance(table, dict):
                raise ScnnError(f"'{dotted}' sets a key inside a value", path)
        table[leaf] = value
    return values, path


def dotted_keys(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config values by dotted key: ``{"clip": {"bgr": True}}`` → ``{"clip.bgr": True}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(dotted_keys(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_dict(config: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain JSON values."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


# Keys that may change when a run resumes: they do not change what is computed.
_RUNTIME_KEYS = ("workers", "device", "log_every", "checkpoint_every", "compile")


def write_run_config(
    out_dir: str | Path, config: TrainConfig, *, resume: bool, world: World = SINGLE
) -> None:
    """Write the resolved config next to the outputs; a resumed run must use the same one.

    ``batch_size`` and ``lr`` are the global batch and its learning rate, whatever the number
    of processes; the file also states the processes and the clips each takes per step. Every
    rank checks a resumed config; rank 0 writes."""
    path = Path(out_dir) / CONFIG_JSON
    resolved = config_dict(config)
    if resume and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(
            k for k in resolved if k not in _RUNTIME_KEYS and saved.get(k) != resolved[k]
        )
        if changed:
            raise ScnnError(
                f"--resume with a different config ({', '.join(changed)} changed)", path
            )
    positions = DrawPositions(0, config.steps, config.batch_size, world)  # checks divisibility
    if world.is_main:
        processes = {"processes": world.size, "batch_per_process": positions.rank_batch}
        atomic_write_text(path, json.dumps({**resolved, **processes}, indent=1) + "\n")
