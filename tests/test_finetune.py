"""Fine-tuning from an scnn model directory: fc8 rows by class name, the stages that train, the
mismatches refused, and what the run's model.json says it started from."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from caffe_writer import write_mean
from tiny import SYNTH, TINY, random_model

from scnn import cli, dataset, train, training_job
from scnn.cli.train import config_overrides
from scnn.clips import ClipConfig
from scnn.config import config_from_dict
from scnn.errors import ModelError, ScnnError
from scnn.model import ModelOptions, build_network
from scnn.modelfile import MEAN_CUBE, LoadedModel, load_model, load_state
from scnn.pretrained import fc8_rows, load_pretrained, trained_stages, training_convention
from scnn.synth import generate

# The source model has the tiny problem's network and input, and one of its two classes.
TINY_CLIP = ClipConfig(frame_size=(40, 32), crop_size=32, std_rgb=(58.0, 57.0, 57.0))
TINY_OPTIONS = ModelOptions(width=0.0625, dropout=0.0, batch_norm=True, pooling="padded")
KNOWN, NEW = SYNTH.classes  # the source knows KNOWN (as its second class), not NEW
SOURCE_CLASSES = ("Jump", KNOWN)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return random_model(
        tmp_path_factory.mktemp("source") / "model",
        classes=SOURCE_CLASSES,
        clip=TINY_CLIP,
        options=TINY_OPTIONS,
    )


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SYNTH, quiet=True)
    return root


def body_equal(a: torch.nn.Module, b: torch.nn.Module, *, fc8: bool = False) -> bool:
    """Learnt parameters equal, fc8's too if ``fc8`` (batch norm statistics move in any
    forward pass in training)."""
    theirs = dict(b.named_parameters())
    return all(
        torch.equal(p, theirs[n])
        for n, p in a.named_parameters()
        if fc8 or not n.startswith("fc8.")
    )


def test_fc8_rows_follow_the_class_names():
    source = ("background", "Jump", "Run", "Throw")
    assert fc8_rows(source, ("background", "Run", "Swim", "Jump")) == {0: 0, 1: 2, 3: 1}
    assert fc8_rows(("background", "action"), ("background", "action")) == {0: 0, 1: 1}


def test_kept_rows_are_the_models_and_new_rows_are_fresh(source):
    model = load_model(source)
    torch.manual_seed(1)
    network = build_network(4, TINY_OPTIONS, TINY_CLIP)
    fresh = network.fc8.weight.detach().clone()
    classes = (NEW, KNOWN, "Jump")
    load_pretrained(
        network, source, binary=False, options=TINY_OPTIONS, clip=TINY_CLIP, classes=classes
    )
    theirs = model.localization.fc8
    for row, their_row in ((0, 0), (2, 2), (3, 1)):  # background, KNOWN, Jump
        assert torch.equal(network.fc8.weight[row], theirs.weight[their_row])
        assert torch.equal(network.fc8.bias[row], theirs.bias[their_row])
    assert torch.equal(network.fc8.weight[1], fresh[1])  # NEW: as initialised
    assert all(
        torch.equal(t, model.localization.state_dict()[n])
        for n, t in network.state_dict().items()
        if not n.startswith("fc8.")
    )


def test_a_model_of_another_shape_is_one_error_naming_both_values(source):
    options = replace(TINY_OPTIONS, width=0.125, dropout=0.3)  # dropout may differ, width not
    clip = replace(TINY_CLIP, crop_size=24)
    network = build_network(3, options, clip)
    with pytest.raises(ScnnError) as error:
        load_pretrained(network, source, binary=False, options=options, clip=clip, classes=())
    message = str(error.value)
    assert "model.width=0.0625 in the model, model.width=0.125 in the config" in message
    assert "clip.crop_size=32 in the model, clip.crop_size=24 in the config" in message
    assert "dropout" not in message and str(source) in message and "\n" not in message


@pytest.mark.parametrize(
    ("key", "value"), [("bgr", True), ("std_rgb", (1.0, 1.0, 1.0)), ("mean_rgb", (0.0, 0.0, 0.0))]
)
def test_a_model_trained_on_other_input_is_refused(source, key, value):
    clip = replace(TINY_CLIP, **{key: value})
    network = build_network(3, TINY_OPTIONS, clip)
    with pytest.raises(ScnnError, match=f"clip.{key}=.* in the model, clip.{key}=.* in the config"):
        load_pretrained(network, source, binary=False, options=TINY_OPTIONS, clip=clip, classes=())


def test_a_folder_that_is_not_a_model_directory_is_named(source):
    network = build_network(3, TINY_OPTIONS, TINY_CLIP)
    with pytest.raises(ScnnError, match=r"source\S*: a folder without model.json"):
        load_pretrained(
            network, source.parent, binary=False, options=TINY_OPTIONS, clip=TINY_CLIP, classes=()
        )


def test_finetune_stages_come_from_the_command_line():
    args = cli.build_parser().parse_args(
        [
            "train",
            "data",
            "--out",
            "run",
            "--init-from",
            "m",
            "--finetune-stages",
            "proposal",
            "localization",
        ]
    )
    overrides = config_overrides(args)
    assert overrides["init_from"] == "m"
    assert config_from_dict({"finetune_stages": overrides["finetune_stages"]}).finetune_stages == (
        "proposal",
        "localization",
    )


def test_finetune_stages_must_include_localization(source):
    config = config_from_dict({**TINY, "init_from": str(source)})
    assert [stage.name for stage in trained_stages(config)] == ["localization"]
    assert len(trained_stages(config_from_dict(TINY))) == 3  # not a model directory: all
    for bad in (["proposal"], ["localization", "detection"]):
        with pytest.raises(ScnnError, match="localization among them"):
            trained_stages(replace(config, finetune_stages=tuple(bad)))


def finetune(source, synth_root, out, **values) -> tuple[LoadedModel, LoadedModel, dict]:
    """Fine-tune at learning rate 0, so every weight carried over is still the source's; the
    source model, the fine-tuned one, and the fine-tuned one's model.json."""
    config = config_from_dict({**TINY, "init_from": str(source), "lr": 0.0, "steps": 2, **values})
    annotations, videos = synth_root / "annotations.json", synth_root / "videos"
    model_dir = training_job.train_model(config, annotations, videos, out, progress=False)
    description = json.loads((model_dir / "model.json").read_text())
    return load_model(source), load_model(model_dir), description


def test_localization_only_keeps_the_models_proposal_network(source, synth_root, tmp_path):
    before, after, description = finetune(source, synth_root, tmp_path)
    assert sorted(after.classes) == sorted(SYNTH.classes)
    assert all(
        torch.equal(t, before.proposal.state_dict()[n])
        for n, t in after.proposal.state_dict().items()
    )
    assert body_equal(after.localization, before.localization)
    kept = after.classes.index(KNOWN) + 1
    assert torch.equal(after.localization.fc8.weight[kept], before.localization.fc8.weight[2])
    assert not (tmp_path / "classification").exists()
    assert set(after.metrics) == {"localization"}
    assert description["config"]["started_from"] == {
        "init_from": str(source.resolve()),
        "trained_stages": ["localization"],
        "kept_classes": [KNOWN],
        "new_classes": [NEW],
    }


def test_classification_starts_from_the_models_localization_body(source, synth_root, tmp_path):
    names = ["proposal", "classification", "localization"]
    before, after, description = finetune(source, synth_root, tmp_path, finetune_stages=names)
    classification = build_network(3, TINY_OPTIONS, TINY_CLIP)
    load_state(classification, tmp_path / "classification" / train.WEIGHTS)
    assert body_equal(classification, before.localization)
    assert body_equal(after.localization, before.localization)
    assert body_equal(after.proposal, before.proposal, fc8=True)
    assert set(after.metrics) == set(names)
    assert description["config"]["started_from"]["trained_stages"] == names


def test_a_models_mean_cube_is_trained_with_and_carried_over(synth_root, tmp_path, monkeypatch):
    """A model imported from Caffe subtracts a per-pixel mean: fine-tuning subtracts it from
    every clip and the fine-tuned model directory holds the same file, byte for byte."""
    cube = torch.rand(16, 32, 40, 3, generator=torch.Generator().manual_seed(0)) * 255
    source = random_model(
        tmp_path / "source",
        classes=SOURCE_CLASSES,
        clip=TINY_CLIP,
        options=TINY_OPTIONS,
        convention=TINY_CLIP.convention(cube),
    )
    means, original = [], dataset.normalize_clips

    def normalize(clips, convention, mean_crops):
        means.append(mean_crops)
        return original(clips, convention, mean_crops=mean_crops)

    monkeypatch.setattr(dataset, "normalize_clips", normalize)
    finetune(source, synth_root, tmp_path / "run")
    crops = [mean for mean in means if mean is not None]  # validation: the centre crop
    assert crops and all(mean.shape[1:] == (16, 32, 32, 3) for mean in crops)
    copied = (tmp_path / "run" / "model" / MEAN_CUBE).read_bytes()
    assert copied == (source / MEAN_CUBE).read_bytes()
    with pytest.raises(ScnnError, match="own input convention: leave out --mean"):
        training_convention(config_from_dict({**TINY, "init_from": str(source), "mean": "m"}))


def test_a_mean_file_is_subtracted_and_written_into_the_model(synth_root, tmp_path):
    """``--mean MEAN.binaryproto`` (as with the Sports-1M Caffe weights): the model directory
    carries its cube, and the config names the file."""
    cube_bgr = np.random.default_rng(0).uniform(0, 255, (3, 16, 32, 40)).astype(np.float32)
    mean = write_mean(tmp_path / "mean.binaryproto", cube_bgr)
    args = cli.build_parser().parse_args(["train", "data", "--out", "run", "--mean", str(mean)])
    config = config_from_dict({**TINY, "steps": 2, **config_overrides(args)})
    annotations, videos = synth_root / "annotations.json", synth_root / "videos"
    model_dir = training_job.train_model(
        config, annotations, videos, tmp_path / "run", progress=False
    )
    model = load_model(model_dir)
    expected = torch.from_numpy(cube_bgr[::-1].copy()).permute(1, 2, 3, 0)
    assert torch.equal(model.convention.mean_cube, expected)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mean"] == str(mean)
    wrong = write_mean(tmp_path / "wrong.binaryproto", cube_bgr[:, :, :16])
    with pytest.raises(ModelError, match=r"wrong.binaryproto: mean cube has shape \(16, 16, 40"):
        training_convention(replace(config, mean=str(wrong)))
