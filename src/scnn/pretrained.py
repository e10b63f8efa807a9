"""Starting weights for training (``init_from``), told apart by what the file or folder is.

- an scnn model directory (a folder with ``model.json``): fine-tuning. Its proposal network
  (for the proposal stage) or its localization network (for the classification and
  localization stages) carries over whole, except the rows of fc8 for classes the model does
  not know, which start fresh; the network and clip options must be those of the model;
- a C3D-v1.0 Caffe model, e.g. the authors' Sports-1M C3D (scnn.caffe): conv1a … fc7-1;
- else a ``torch.save``-d state dict, the PyTorch port of the Sports-1M C3D: conv1 … fc7.

From a model directory only the stages of ``config.finetune_stages`` train; the proposal
network, when left out, is the model's own (:func:`trained_stages`). The input convention a
run trains with and records follows its weights (:func:`training_convention`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scnn.caffe import is_caffe_model, load_caffe_weights, read_mean_cube
from scnn.clips import ClipConfig, InputConvention
from scnn.config import TrainConfig
from scnn.errors import ModelError, ScnnError
from scnn.fileio import atomic_write_bytes
from scnn.model import C3D, ModelOptions, build_network, copy_pretrained, load_sports1m_weights
from scnn.modelfile import MODEL_JSON, LoadedModel, load_model, state_bytes
from scnn.stages import LOCALIZATION, PROPOSAL, STAGES, Stage

BACKGROUND = "background"  # fc8 row 0 of both networks
ACTION = "action"  # fc8 row 1 of the proposal network


def is_model_dir(init_from: str | Path) -> bool:
    """Whether ``init_from`` is an scnn model directory (rather than a weights file)."""
    return bool(init_from) and (Path(init_from) / MODEL_JSON).is_file()


def trained_stages(config: TrainConfig) -> tuple[Stage, ...]:
    """The stages a run trains: all three, or from a model directory ``config.finetune_stages``
    (which must include localization: its fc8 holds the new class list)."""
    if not is_model_dir(config.init_from):
        return STAGES
    names = {stage.name: stage for stage in STAGES}
    unknown = [name for name in config.finetune_stages if name not in names]
    if unknown or LOCALIZATION.name not in config.finetune_stages:
        raise ScnnError(
            f"finetune_stages {list(config.finetune_stages)}: expected some of "
            f"{list(names)}, localization among them"
        )
    return tuple(stage for stage in STAGES if stage.name in config.finetune_stages)


def load_pretrained(
    model: C3D,
    init_from: str | Path,
    *,
    binary: bool,
    options: ModelOptions,
    clip: ClipConfig,
    classes: tuple[str, ...],
) -> None:
    """Copy the starting weights of ``init_from`` into ``model``. ``binary``: the network being
    trained is the proposal network; ``options``, ``clip``, ``classes``: its own."""
    path = Path(init_from)
    if is_model_dir(path):
        source = load_model(path)
        check_compatible(source, options, clip, path)
        network = source.proposal if binary else source.localization
        state = network.state_dict()
        keys = [key for key in model.state_dict() if not key.startswith("fc8.")]
        copy_pretrained(model, state, keys, path)
        kept = fc8_rows(fc8_names(source.classes, binary=binary), fc8_names(classes, binary=binary))
        with torch.no_grad():
            for target, row in kept.items():
                model.fc8.weight[target] = state["fc8.weight"][row]
                model.fc8.bias[target] = state["fc8.bias"][row]
    elif path.is_dir():
        raise ScnnError(f"a folder without {MODEL_JSON}: give a model directory (OUT/model)", path)
    elif is_caffe_model(path):
        load_caffe_weights(model, path, fc8=False)
    else:
        load_sports1m_weights(model, path)


def training_convention(config: TrainConfig) -> InputConvention:
    """The input convention a run trains with and writes into its model directory: that of
    the model directory it starts from, so the network sees the input its weights learnt on;
    else the clip config's, with the per-pixel cube of ``config.mean`` (C3D's mean file)
    instead of ``clip.mean_rgb`` when given."""
    if is_model_dir(config.init_from):
        if config.mean:
            raise ScnnError(
                "the model directory has its own input convention: leave out --mean",
                config.init_from,
            )
        return load_model(config.init_from).convention
    if not config.mean:
        return config.clip.convention()
    try:
        return config.clip.convention(read_mean_cube(config.mean))
    except ValueError as exc:
        raise ModelError(str(exc), config.mean) from exc


def copy_proposal(config: TrainConfig, weights: Path) -> None:
    """Write the proposal network of the model directory ``config.init_from`` as this run's
    trained ``weights``, checked against the config like any starting weights."""
    network = build_network(PROPOSAL.num_outputs(0), config.model, config.clip)
    load_pretrained(
        network, config.init_from, binary=True, options=config.model, clip=config.clip, classes=()
    )
    atomic_write_bytes(weights, state_bytes(network))


def check_compatible(
    source: LoadedModel, options: ModelOptions, clip: ClipConfig, path: Path
) -> None:
    """A model's weights fit the run only with the same network shape and input (channel order
    and normalisation included: the network learnt on that input): one ScnnError naming each
    value that differs, the model's and the config's (dropout may differ)."""
    pairs = {
        "model.width": (source.options.width, options.width),
        "model.batch_norm": (source.options.batch_norm, options.batch_norm),
        "model.pooling": (source.options.pooling, options.pooling),
        "clip.frame_size": (source.clip.frame_size, clip.frame_size),
        "clip.crop_size": (source.clip.crop_size, clip.crop_size),
        "clip.clip_frames": (source.clip.clip_frames, clip.clip_frames),
        "clip.bgr": (source.clip.bgr, clip.bgr),
        "clip.std_rgb": (source.clip.std_rgb, clip.std_rgb),
    }
    if source.convention.mean_cube is None:  # a model's mean cube replaces the per-channel mean
        pairs["clip.mean_rgb"] = (source.clip.mean_rgb, clip.mean_rgb)
    differ = [
        f"{key}={theirs!r} in the model, {key}={ours!r} in the config"
        for key, (theirs, ours) in pairs.items()
        if theirs != ours
    ]
    if differ:
        raise ScnnError(f"cannot start from this model: {'; '.join(differ)}", path)


def fc8_names(classes: tuple[str, ...], *, binary: bool) -> tuple[str, ...]:
    """What each fc8 row of a network stands for."""
    return (BACKGROUND, ACTION) if binary else (BACKGROUND, *classes)


def fc8_rows(source: tuple[str, ...], target: tuple[str, ...]) -> dict[int, int]:
    """Target fc8 row → source row, for each name both have; the other rows stay fresh."""
    return {i: source.index(name) for i, name in enumerate(target) if name in source}


def started_from(config: TrainConfig, classes: tuple[str, ...]) -> dict[str, Any]:
    """What a run started from, for its model.json: the ``init_from`` path (resolved), the
    stages it trained, and from a model directory which classes kept their fc8 rows."""
    if not config.init_from:
        return {"init_from": None, "trained_stages": [stage.name for stage in STAGES]}
    record: dict[str, Any] = {
        "init_from": str(Path(config.init_from).resolve()),
        "trained_stages": [stage.name for stage in trained_stages(config)],
    }
    if is_model_dir(config.init_from):
        known = load_model(config.init_from).classes
        record["kept_classes"] = [name for name in classes if name in known]
        record["new_classes"] = [name for name in classes if name not in known]
    return record
