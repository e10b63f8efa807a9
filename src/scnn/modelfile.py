"""The model directory: everything `scnn detect` needs, in one folder.

    proposal.safetensors      weights of the proposal network (2 outputs)
    localization.safetensors  weights of the localization network (K+1 outputs)
    model.json                classes, window lengths, window-length prior, network options,
                              fps, input convention, clip config, default thresholds,
                              training config, metrics
    mean_cube.safetensors     only when the input's mean is a per-pixel cube (C3D's Caffe
                              mean file)
    boundaries.safetensors    only with a boundary network: C3D with 2 outputs, the offsets
                              of an action's start and end from its window's, as fractions
                              of the window's length (model.json: ``"boundaries": true``)
    boundary_clips.safetensors  only with a boundary-clip network: C3D with 2 outputs, a
                              start's and an end's offset from the centre of a clip around
                              it, as fractions of the clip's length (model.json:
                              ``"boundary_clips": {"rounds": 2, "scale": 0.5}``,
                              scnn.boundary_clips)

Directories written before model.json held the input convention (``"input"``) have it made
from their clip config and mean cube, as it was then.

``load_model`` rebuilds both networks from model.json alone, as whisper rebuilds its model
from the dimensions stored in the checkpoint, and refuses a directory whose parts disagree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from scnn.boundary_clips import MAX_ROUNDS, BoundaryClips
from scnn.clips import ClipConfig, InputConvention
from scnn.errors import ModelError, ScnnError
from scnn.fileio import atomic_write_bytes, atomic_write_text, replaced_directory
from scnn.model import ModelOptions, Network, network_for_weights
from scnn.postprocess import NMS_THRESHOLD, window_length_prior
from scnn.records import GroundTruth
from scnn.video import FPS
from scnn.windows import WindowConfig

MODEL_JSON = "model.json"
PROPOSAL_WEIGHTS = "proposal.safetensors"
LOCALIZATION_WEIGHTS = "localization.safetensors"
MEAN_CUBE = "mean_cube.safetensors"
BOUNDARY_WEIGHTS = "boundaries.safetensors"
BOUNDARY_CLIP_WEIGHTS = "boundary_clips.safetensors"
FORMAT_VERSION = 1
PROPOSAL_THRESHOLD = 0.7  # P(action) a window needs to reach the localization network (§4)
# The range of each number model.json holds (low, high, whole): a value outside is refused,
# as an fps of 1e9 would decode for ever and a width of 1e12 allocate without end.
_RANGES = {
    "fps": (1, 1000, False),
    "window_lengths_frames": (1, 2**20, True),
    "window_overlap": (0, 1, False),
    "frame_size": (1, 8192, True),
    "crop_size": (1, 8192, True),
    "clip_frames": (1, 1024, True),
    "mean_rgb": (0, 255, False),
    "std_rgb": (1e-6, 1e6, False),
    "width": (1e-3, 8, False),
    "dropout": (0, 1, False),
    "proposal": (0, 1, False),
    "nms": (0, 1, False),
    "vote_iou": (0, 1, False),
    "rounds": (1, MAX_ROUNDS, True),
    "scale": (0.05, 4, False),
}
_FLAGS = ("bgr", "mirror", "batch_norm", "use_prior", "boundaries")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model directory in memory: what :func:`load_model` gives (both networks in eval mode
    on the CPU) and :func:`save_model` writes."""

    proposal: Network
    localization: Network
    classes: tuple[str, ...]
    prior: Mapping[int, np.ndarray]  # window length (frames) -> weight of each class (§4)
    windows: WindowConfig
    convention: InputConvention  # how decoded frames become the networks' input
    clip: ClipConfig  # the clip config the networks trained with
    options: ModelOptions
    fps: float = FPS
    # detection's defaults: the proposal threshold, NMS, the prior (method.md §4)
    proposal_threshold: float = PROPOSAL_THRESHOLD
    nms_threshold: float = NMS_THRESHOLD
    use_prior: bool = True  # whether detection weights scores by the prior by default
    config: Mapping[str, Any] = field(default_factory=dict)  # the resolved training config
    metrics: Mapping[str, Any] = field(default_factory=dict)  # validation metrics by stage
    # boundary voting's IoU by default (postprocess.vote_boundaries); None: off, as S-CNN
    vote_iou: float | None = None
    # moves each window labelled with an action before NMS (docs/accuracy.md); None: S-CNN's grid
    boundaries: Network | None = None
    # moves each detection's start and end after NMS and voting; None: not moved
    boundary_clips: BoundaryClips | None = None
    directory: Path | None = None  # where load_model read it (for messages); None: in memory


def state_bytes(model: torch.nn.Module) -> bytes:
    """A module's state as safetensors bytes (CPU, contiguous, as the format requires)."""
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    return safetensors_bytes(state)


def load_state(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; any missing, extra or misshapen tensor is a
    ModelError naming the tensor and both shapes."""
    if not path.is_file():
        raise ModelError("weights file missing", path)
    try:
        state = load_file(path)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelError(f"cannot read weights: {exc}", path) from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ModelError(f"tensors missing {missing[:3]} / unexpected {extra[:3]}", path)
    for name in expected:
        tensor = state[name]
        if tensor.shape != expected[name].shape:
            raise ModelError(
                f"tensor {name} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name].shape)}",
                path,
            )
    model.load_state_dict(state)


def _num_outputs(weights: Path) -> int:
    """Outputs of the network stored in ``weights``: the length of its fc8 bias."""
    if not weights.is_file():
        raise ModelError("weights file missing", weights)
    try:
        with safe_open(weights, "pt") as tensors:
            return tensors.get_slice("fc8.bias").get_shape()[0]
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelError(f"cannot read fc8.bias: {exc}", weights) from exc


def save_model(path: str | Path, model: LoadedModel) -> None:
    """Write ``model`` as the model directory at ``path`` all at once
    (fileio.replaced_directory): a run killed while writing leaves the one that was there.
    The prior holds a row per window length of ``model.windows``; model.json holds them in
    the order of those lengths."""
    prior_rows = _prior_rows(model.prior, model.windows, len(model.classes), path)
    path = Path(path)
    check_convention(model.convention, model.clip, path)
    cube = model.convention.mean_cube
    description = {
        "format_version": FORMAT_VERSION,
        "classes": list(model.classes),
        "window_lengths_frames": list(model.windows.lengths_frames),
        "window_overlap": model.windows.overlap,
        "prior": prior_rows.tolist(),
        "fps": model.fps,
        "input": model.convention.describe(MEAN_CUBE),
        "clip": dataclasses.asdict(model.clip),
        "model": dataclasses.asdict(model.options),
        "thresholds": {
            "proposal": model.proposal_threshold,
            "nms": model.nms_threshold,
            "use_prior": model.use_prior,
            "vote_iou": model.vote_iou,
        },
        "mean_cube": cube is not None,
        "config": model.config,
        "metrics": model.metrics,
    }
    if model.boundaries is not None:
        description["boundaries"] = True
    if model.boundary_clips is not None:
        clips = model.boundary_clips
        description["boundary_clips"] = {"rounds": clips.rounds, "scale": clips.scale}
    with replaced_directory(path) as folder:
        atomic_write_bytes(folder / PROPOSAL_WEIGHTS, state_bytes(model.proposal))
        atomic_write_bytes(folder / LOCALIZATION_WEIGHTS, state_bytes(model.localization))
        if model.boundaries is not None:
            atomic_write_bytes(folder / BOUNDARY_WEIGHTS, state_bytes(model.boundaries))
        if model.boundary_clips is not None:
            weights = state_bytes(model.boundary_clips.network)
            atomic_write_bytes(folder / BOUNDARY_CLIP_WEIGHTS, weights)
        if cube is not None:
            mean = safetensors_bytes({"mean": cube.cpu().contiguous()})
            atomic_write_bytes(folder / MEAN_CUBE, mean)
        atomic_write_text(folder / MODEL_JSON, json.dumps(description, indent=1) + "\n")


def training_prior(ground_truth: GroundTruth, windows: WindowConfig) -> dict[int, np.ndarray]:
    """The window-length prior a trained model directory holds (method.md §4): computed on
    the training ground truth, over its classes and the model's window lengths."""
    return window_length_prior(ground_truth.instances, ground_truth.classes, windows.lengths_frames)


def _prior_rows(
    prior: Mapping[int, np.ndarray], windows: WindowConfig, num_classes: int, path: str | Path
) -> np.ndarray:
    """The prior's rows in the order of ``windows.lengths_frames``; a prior of other window
    lengths or classes is a ModelError."""
    lengths = windows.lengths_frames
    if sorted(prior) != sorted(lengths):
        raise ModelError(
            f"prior is for window lengths {sorted(prior)}, the model has {list(lengths)}", path
        )
    rows = np.asarray([prior[length] for length in lengths], dtype=np.float64)
    if rows.shape != (len(lengths), num_classes):
        raise ModelError(
            f"prior has shape {rows.shape}, expected ({len(lengths)}, {num_classes}) for the "
            "window lengths and classes",
            path,
        )
    return rows


def _tuples(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the frozen configs hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild a model directory written by :func:`save_model`."""
    path = Path(path)
    description_path = path / MODEL_JSON
    if not description_path.is_file():
        raise ModelError(f"not a model directory ({MODEL_JSON} missing)", path)
    try:
        description = json.loads(description_path.read_text(encoding="utf-8"))
        if description["format_version"] != FORMAT_VERSION:
            raise ModelError(
                f"format version {description['format_version']}, this scnn reads {FORMAT_VERSION}",
                description_path,
            )
        _check_values(description, description_path)
        classes = tuple(description["classes"])
        windows = WindowConfig(
            tuple(description["window_lengths_frames"]), description["window_overlap"]
        )
        clip = ClipConfig(**_tuples(description["clip"]))
        # Directories written before the pooling option pooled with the padded rule.
        options = ModelOptions(**{"pooling": "padded", **description["model"]})
        prior = np.asarray(description["prior"], dtype=np.float64)
        fps = float(description["fps"])
        proposal_threshold = float(description["thresholds"]["proposal"])
        nms_threshold = float(description["thresholds"]["nms"])
        use_prior = bool(description["thresholds"].get("use_prior", True))
        vote_iou = description["thresholds"].get("vote_iou")
        vote_iou = None if vote_iou is None else float(vote_iou)
        config, metrics = description["config"], description["metrics"]
        has_mean_cube = bool(description.get("mean_cube", False))
        has_boundaries = description.get("boundaries", False)
        clip_settings = description.get("boundary_clips")
        if clip_settings is not None:
            clip_settings = {"rounds": clip_settings["rounds"], "scale": clip_settings["scale"]}
        stored_input = description.get("input")
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"malformed model description: {exc!r}", description_path) from exc
    except ScnnError as exc:  # a config's own check, which knows no file
        if exc.path is not None:
            raise
        raise ModelError(exc.message, description_path) from exc
    if not np.isfinite(prior).all() or (prior < 0).any():
        raise ModelError("prior holds a value that is not a finite weight >= 0", description_path)
    if prior.shape != (len(windows.lengths_frames), len(classes)):
        raise ModelError(
            f"prior has shape {prior.shape} but there are {len(windows.lengths_frames)} window "
            f"lengths and {len(classes)} classes",
            description_path,
        )
    outputs = _num_outputs(path / LOCALIZATION_WEIGHTS)
    if outputs != len(classes) + 1:
        raise ModelError(
            f"the localization network has {outputs} outputs ({outputs - 1} classes + "
            f"background) but {MODEL_JSON} lists {len(classes)} classes",
            path,
        )
    proposal = network_for_weights(2, options, clip)
    localization = network_for_weights(len(classes) + 1, options, clip)
    load_state(proposal, path / PROPOSAL_WEIGHTS)
    load_state(localization, path / LOCALIZATION_WEIGHTS)
    boundaries = (
        _boundary_network(path / BOUNDARY_WEIGHTS, options, clip) if has_boundaries else None
    )
    boundary_clips = None
    if clip_settings is not None:
        network = _boundary_network(path / BOUNDARY_CLIP_WEIGHTS, options, clip)
        boundary_clips = BoundaryClips(network, **clip_settings)
    cube = _load_mean_cube(path / MEAN_CUBE) if has_mean_cube else None
    try:
        if stored_input is None:  # written before model.json held the input convention
            convention = clip.convention(cube)
        else:
            convention = InputConvention.from_description(stored_input, cube)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"malformed input convention: {exc}", description_path) from exc
    check_convention(convention, clip, description_path)
    return LoadedModel(
        proposal=proposal.eval(),
        localization=localization.eval(),
        classes=classes,
        prior=dict(zip(windows.lengths_frames, prior, strict=True)),
        windows=windows,
        convention=convention,
        clip=clip,
        options=options,
        fps=fps,
        proposal_threshold=proposal_threshold,
        nms_threshold=nms_threshold,
        use_prior=use_prior,
        config=config,
        metrics=metrics,
        vote_iou=vote_iou,
        boundaries=boundaries,
        boundary_clips=boundary_clips,
        directory=path,
    )


def _boundary_network(weights: Path, options: ModelOptions, clip: ClipConfig) -> Network:
    """A boundary (or boundary-clip) network in ``weights``: two outputs, in eval mode."""
    outputs = _num_outputs(weights)
    if outputs != 2:
        raise ModelError(f"the network has {outputs} outputs, a boundary network has 2", weights)
    network = network_for_weights(2, options, clip)
    load_state(network, weights)
    return network.eval()


def _check_values(description: dict[str, Any], path: Path) -> None:
    """Each value of model.json of a known range or kind (_RANGES, _FLAGS) within it, and the
    classes distinct names; the structure itself is checked as the values are read."""
    classes = description["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise ModelError("classes must be names: a list of distinct, non-empty strings", path)
    if len(set(classes)) != len(classes):
        raise ModelError("classes must be names: a list of distinct, non-empty strings", path)
    values = {**description, **description["clip"], **description["model"]}
    values.update(description["thresholds"])
    clip_settings = description.get("boundary_clips")
    if clip_settings is not None:
        if not isinstance(clip_settings, dict):
            raise ModelError(f"boundary_clips {clip_settings!r} is not an object", path)
        values.update(clip_settings)
    for name, value in values.items():
        if name in _FLAGS and not isinstance(value, bool):
            raise ModelError(f"{name} {value!r} is not true or false", path)
        if name not in _RANGES or (name == "vote_iou" and value is None):
            continue
        low, high, whole = _RANGES[name]
        label = "window length" if name == "window_lengths_frames" else name
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise ModelError(f"{label} {number!r} is not a number", path)
            if whole and number != int(number):
                raise ModelError(f"{label} {number:g} is not a whole number", path)
            if not low <= number <= high:  # NaN is in no range
                raise ModelError(f"{label} {number:g} is not in [{low:g}, {high:g}]", path)


def check_convention(convention: InputConvention, clip: ClipConfig, path: str | Path) -> None:
    """The networks are built from ``clip``'s frames and crop: the input convention must give
    clips of that shape."""
    ours = (convention.frame_size, convention.crop_size, convention.clip_frames)
    theirs = (clip.frame_size, clip.crop_size, clip.clip_frames)
    if tuple(ours) != tuple(theirs):
        raise ModelError(
            f"input convention of frames, crop, clip frames {ours}; the networks take {theirs}",
            path,
        )


def _load_mean_cube(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise ModelError("mean cube file missing", path)
    try:
        return load_file(path)["mean"].float()
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelError(f"cannot read the mean cube: {exc}", path) from exc
