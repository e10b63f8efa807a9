"""Starting weights for training (``init_from``), told apart by what the file or folder is.

- an scnn model directory (a folder with ``model.json``): fine-tuning. Its proposal network
  (for the proposal stage) or its localization network (for the classification and
  localization stages) carries over whole, except the rows of fc8 for classes the model does
  not know, which start fresh; the network and clip options must be those of the model;
- a C3D-v1.0 Caffe model, e.g. the authors' Sports-1M C3D (scnn.caffe): conv1a … fc7-1;
- a C3D-v1.1 Caffe model for a Res3D-18 network, e.g. the Sports-1M Res3D
  (``c3d_resnet18_sports1m_r2_iter_2800000.caffemodel``, scnn.caffe_res3d): all but fc8;
- else a ``torch.save``-d state dict, the PyTorch port of the Sports-1M C3D: conv1 … fc7.

From a model directory only the stages of ``config.finetune_stages`` train; the proposal
network, when left out, is the model's own (:func:`trained_stages`). The input convention a
run trains with and records follows its weights (:func:`training_convention`); a Caffe file
sets the settings its network and input dictate (:func:`training_config`), and a config that
contradicts them is refused, so BGR-trained weights never get RGB frames by accident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from scnn.caffe import (
    CAFFE_OPTIONS,
    caffe_convention,
    is_caffe_model,
    load_caffe_weights,
    read_mean_cube,
)
from scnn.caffe_res3d import RES3D_CONVENTION, RES3D_OPTIONS, load_res3d_weights
from scnn.caffe_wire import V11, caffe_release
from scnn.clips import ClipConfig, InputConvention
from scnn.config import TrainConfig, config_from_dict, config_values, dotted_keys
from scnn.errors import ModelError, ScnnError
from scnn.fileio import atomic_write_bytes
from scnn.model import (
    ModelOptions,
    Network,
    copy_pretrained,
    load_sports1m_weights,
    network_for_weights,
)
from scnn.modelfile import MODEL_JSON, LoadedModel, load_model, state_bytes
from scnn.res3d import Res3D
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
    model: Network,
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
    elif is_caffe_model(path) and isinstance(model, Res3D):
        load_res3d_weights(model, path, fc8=False)
    elif is_caffe_model(path):
        load_caffe_weights(model, path, fc8=False)
    elif isinstance(model, Res3D):
        raise ScnnError("a Res3D-18 network starts from a C3D-v1.1 .caffemodel", path)
    else:
        load_sports1m_weights(model, path)


def weights_settings(init_from: str | Path) -> dict[str, Any]:
    """The config settings the starting weights dictate, by dotted key: for a C3D-v1.0 Caffe
    file (the Sports-1M C3D, the authors' networks) its network (caffe.CAFFE_OPTIONS) and
    input (caffe.caffe_convention: BGR frames of 171×128, crop 112, no scaling); for a
    C3D-v1.1 one (the Sports-1M Res3D-18) Res3D-18 and its input (the same frames minus 128,
    as the authors fine-tuned it); none otherwise (a model directory is checked against its
    own record, check_compatible)."""
    if not init_from or is_model_dir(init_from) or not is_caffe_model(init_from):
        return {}
    if caffe_release(init_from) == V11:
        options, convention = RES3D_OPTIONS, RES3D_CONVENTION
        network = {"model.backbone": options.backbone, "model.width": options.width}
        network["clip.mean_rgb"] = (float(convention.mean),) * 3
    else:
        options, convention = CAFFE_OPTIONS, caffe_convention()
        network = {
            "model.backbone": options.backbone,
            "model.width": options.width,
            "model.batch_norm": options.batch_norm,
            "model.pooling": options.pooling,
        }
    return {
        **network,
        "clip.frame_size": convention.frame_size,
        "clip.crop_size": convention.crop_size,
        "clip.clip_frames": convention.clip_frames,
        "clip.bgr": convention.bgr,
        "clip.std_rgb": convention.std,
    }


def training_config(name_or_path: str | Path, overrides: Mapping[str, Any] = {}) -> TrainConfig:
    """``scnn train``'s config (config.load_config) with the settings its ``init_from``
    weights dictate (:func:`weights_settings`) filled in; settings the config file or the
    command line give otherwise are one ScnnError naming each and the weights."""
    values, path = config_values(name_or_path, overrides)
    given = dotted_keys(values)
    dictated = weights_settings(given.get("init_from", ""))
    _check_settings(given, dictated, given.get("init_from", ""))
    for key, wanted in dictated.items():
        section, name = key.split(".")
        values.setdefault(section, {})[name] = list(wanted) if isinstance(wanted, tuple) else wanted
    return config_from_dict(values, path)


def check_follows_weights(config: TrainConfig) -> None:
    """A config must hold every setting its ``init_from`` weights dictate: a BGR-trained
    network is never trained on RGB frames, nor a Caffe-pooled one with another pooling."""
    dictated = weights_settings(config.init_from)
    given = {
        key: getattr(getattr(config, key.split(".")[0]), key.split(".")[1]) for key in dictated
    }
    _check_settings(given, dictated, config.init_from)


def _check_settings(given: Mapping[str, Any], dictated: Mapping[str, Any], weights: str) -> None:
    """One ScnnError naming every setting of ``given`` that differs from ``dictated``."""
    differ = [key for key in dictated if key in given and not _same(given[key], dictated[key])]
    if differ:
        ours = ", ".join(f"{key}={_toml(given[key])}" for key in differ)
        theirs = ", ".join(f"{key}={_toml(dictated[key])}" for key in differ)
        raise ScnnError(
            f"{ours} contradicts the weights, which need {theirs}: leave {', '.join(differ)} out",
            weights,
        )


def _same(value: Any, wanted: Any) -> bool:
    """Whether a setting has the value the weights need (a TOML list equals a tuple)."""
    if isinstance(value, list | tuple):
        return tuple(value) == tuple(wanted)
    return value is wanted if isinstance(wanted, bool) else value == wanted


def _toml(value: Any) -> str:
    """A setting as the command line writes it: ``true``, ``[171, 128]``, ``"caffe"``."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


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
    network = network_for_weights(PROPOSAL.num_outputs(0), config.model, config.clip)
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
        "model.backbone": (source.options.backbone, options.backbone),
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
