"""The model directory: save → load round trip and the errors of inconsistent directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import CreatesAFileWhenUnpickled, small_model

from scnn.clips import ClipConfig
from scnn.detect import BUNDLED_MODEL
from scnn.errors import ModelError
from scnn.model import ModelOptions, build_network
from scnn.modelfile import (
    LOCALIZATION_WEIGHTS,
    MODEL_JSON,
    PROPOSAL_WEIGHTS,
    LoadedModel,
    load_model,
    save_model,
    training_prior,
)
from scnn.records import GroundTruth, Instance
from scnn.windows import WindowConfig

CLASSES = ("jump", "run", "throw")
CLIP = ClipConfig(frame_size=(40, 32), crop_size=32, std_rgb=(58.0, 57.0, 57.0))
OPTIONS = ModelOptions(width=1 / 16, dropout=0.5, batch_norm=True)
WINDOWS = WindowConfig()


def write(path, classes=CLASSES, prior=None) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    proposal = build_network(2, OPTIONS, CLIP)
    localization = build_network(len(CLASSES) + 1, OPTIONS, CLIP)
    # Move batch-norm statistics off their defaults so the round trip must carry them.
    localization.norm1.running_mean.fill_(0.25)
    uniform = {length: np.full(len(classes), 1 / 6) for length in WINDOWS.lengths_frames}
    prior = uniform if prior is None else prior
    model = LoadedModel(
        proposal=proposal,
        localization=localization,
        classes=classes,
        prior=prior,
        windows=WINDOWS,
        convention=CLIP.convention(),
        clip=CLIP,
        options=OPTIONS,
        config={"steps": 5},
        metrics={"proposal": {"accuracy": 0.9}},
    )
    save_model(path, model)
    return proposal.eval(), localization.eval()


def test_save_then_load_gives_identical_outputs(tmp_path):
    proposal, localization = write(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    clips = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.proposal(clips), proposal(clips))
        assert torch.equal(loaded.localization(clips), localization(clips))
    assert not loaded.proposal.training and not loaded.localization.training
    assert loaded.classes == CLASSES
    assert loaded.clip == CLIP and loaded.options == OPTIONS and loaded.windows == WINDOWS
    assert list(loaded.prior) == [16, 32, 64, 128, 256, 512]
    assert all(weights.tolist() == [1 / 6] * 3 for weights in loaded.prior.values())
    assert loaded.proposal_threshold == 0.7 and loaded.nms_threshold == 0.4
    assert loaded.fps == 25.0
    assert loaded.metrics == {"proposal": {"accuracy": 0.9}}
    assert loaded.config == {"steps": 5}


def test_model_json_records_the_input_convention(tmp_path):
    """model.json's "input" is what detection applies; a directory written before it had the
    record (the bundled model's) gets the one its clip config and mean cube made."""
    write(tmp_path / "model")
    description = json.loads((tmp_path / "model" / MODEL_JSON).read_text())
    assert description["input"] == {
        "frame_size": [40, 32],
        "crop_size": 32,
        "clip_frames": 16,
        "channels": "RGB",
        "mean": list(CLIP.mean_rgb),
        "std": [58.0, 57.0, 57.0],
    }
    del description["input"]
    (tmp_path / "model" / MODEL_JSON).write_text(json.dumps(description))
    assert load_model(tmp_path / "model").convention.describe() == CLIP.convention().describe()
    bundled = load_model(BUNDLED_MODEL)
    assert bundled.convention.describe() == bundled.clip.convention().describe()


def test_an_input_convention_that_does_not_fit_the_networks_is_refused(tmp_path):
    write(tmp_path / "model")
    description = json.loads((tmp_path / "model" / MODEL_JSON).read_text())
    description["input"]["crop_size"] = 24
    (tmp_path / "model" / MODEL_JSON).write_text(json.dumps(description))
    with pytest.raises(ModelError, match="the networks take"):
        load_model(tmp_path / "model")


def test_missing_weights_file_is_named(tmp_path):
    write(tmp_path / "model")
    (tmp_path / "model" / LOCALIZATION_WEIGHTS).unlink()
    with pytest.raises(ModelError, match=LOCALIZATION_WEIGHTS):
        load_model(tmp_path / "model")


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelError, match=MODEL_JSON):
        load_model(tmp_path)


def test_wrong_class_count_names_both_shapes(tmp_path):
    write(tmp_path / "model")
    description_path = tmp_path / "model" / MODEL_JSON
    description = json.loads(description_path.read_text())
    description["classes"].append("swim")
    description["prior"] = [row + [0.0] for row in description["prior"]]
    description_path.write_text(json.dumps(description))
    with pytest.raises(ModelError, match="has 4 outputs .* lists 4 classes"):
        load_model(tmp_path / "model")


def test_wrong_shape_names_the_tensor_and_both_shapes(tmp_path):
    write(tmp_path / "model")
    description_path = tmp_path / "model" / MODEL_JSON
    description = json.loads(description_path.read_text())
    description["model"]["width"] = 1 / 8  # twice the channels of the stored weights
    description_path.write_text(json.dumps(description))
    with pytest.raises(ModelError, match=r"conv1.weight has shape \(4, 3, 3, 3, 3\).*\(8, 3,"):
        load_model(tmp_path / "model")


def test_prior_must_match_classes_and_window_lengths(tmp_path):
    with pytest.raises(ModelError, match=r"\(6, 2\)"):
        write(tmp_path / "model", prior={length: np.ones(2) for length in WINDOWS.lengths_frames})
    with pytest.raises(ModelError, match=r"window lengths \[16, 32, 64\], the model has \[16,"):
        write(tmp_path / "model", prior={length: np.ones(3) for length in (16, 32, 64)})
    write(tmp_path / "model")
    description_path = tmp_path / "model" / MODEL_JSON
    description = json.loads(description_path.read_text())
    description["prior"] = description["prior"][:5]
    description_path.write_text(json.dumps(description))
    with pytest.raises(ModelError, match="prior has shape"):
        load_model(tmp_path / "model")


def test_training_prior_is_over_the_models_window_lengths():
    # Windows of 16, 32 and 64 frames last 0.64, 1.28 and 2.56 s; a 1 s instance fits the
    # first two (W/2 ≤ d ≤ 2W), not the third. "run" has no instance: uniform.
    ground_truth = GroundTruth(("jump", "run"), (Instance("v", 1.0, 2.0, "jump"),))
    prior = training_prior(ground_truth, WindowConfig((16, 32, 64)))
    assert list(prior) == [16, 32, 64]
    np.testing.assert_allclose(
        np.stack(list(prior.values())), [[0.5, 1 / 3], [0.5, 1 / 3], [0, 1 / 3]]
    )


# ---------------------------------------------------------------- broken and hostile files


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.pop("fps"), r"malformed model description: KeyError\('fps'\)"),
        (lambda d: d.update(classes=5), "classes must be names"),
        (lambda d: d["thresholds"].update(nms="high"), "nms 'high' is not a number"),
        (lambda d: d["model"].update(depth=3), "malformed model description"),
        (lambda d: d.update(fps=float("nan")), "fps nan is not in"),
        (lambda d: d.update(fps=1e9), "fps 1e[+]?09 is not in"),
        (lambda d: d["clip"].update(clip_frames=0), "clip_frames 0 is not in"),
        (lambda d: d["clip"].update(std_rgb=[0, 1, 1]), "std_rgb 0 is not in"),
        (lambda d: d["clip"].update(mean_rgb=[0, "x", 1]), "mean_rgb 'x' is not a number"),
        (lambda d: d["model"].update(width="big"), "width 'big' is not a number"),
        (lambda d: d["model"].update(width=1e12), "width 1e[+]?12 is not in"),
        (lambda d: d["model"].update(batch_norm="no"), "batch_norm 'no' is not true or false"),
        (lambda d: d.update(classes=[1, {"a": 2}]), "classes must be names"),
        (lambda d: d.update(classes=["a", "a"]), "classes must be names"),
        (lambda d: d["thresholds"].update(nms=float("nan")), "nms nan is not in"),
        (lambda d: d["thresholds"].update(vote_iou=2), "vote_iou 2 is not in"),
        (lambda d: d.update(window_overlap=-3), "window_overlap -3 is not in"),
        (lambda d: d.update(window_lengths_frames=[16, 2.5]), "window length 2.5 is not a whole"),
        (lambda d: d.update(prior=[[float("inf")] * 2] * 2), "prior holds a value that is not"),
        (lambda d: d["model"].update(pooling="odd"), "pooling 'odd'"),
        (lambda d: d.update(boundaries="yes"), "boundaries 'yes' is not true or false"),
        (lambda d: d["input"].update(std=[0, 1, 1]), r"std \[0, 1, 1\]: expected 3 finite"),
        (lambda d: d["input"].update(std=[1, 1]), "std .1, 1.: expected 3 finite"),
        (lambda d: d["input"].update(mean=[float("nan"), 1, 1]), "mean .nan, 1, 1.: expected"),
        (lambda d: d["input"].update(mean="x"), "mean 'x' names a cube the model does not hold"),
        (lambda d: d["input"].update(channels="RBG"), "channels 'RBG'"),
    ],
)
def test_model_json_with_missing_keys_wrong_types_or_values_out_of_range(tmp_path, change, words):
    model = small_model(tmp_path / "model")
    description = json.loads((model / MODEL_JSON).read_text())
    change(description)
    (model / MODEL_JSON).write_text(json.dumps(description))
    with pytest.raises(ModelError, match=words) as caught:
        load_model(model)
    assert str(caught.value).startswith(f"{model / MODEL_JSON}: ")


def test_model_json_that_is_not_json(tmp_path):
    model = small_model(tmp_path / "model")
    (model / MODEL_JSON).write_text('{"format_version": 1,')
    with pytest.raises(ModelError, match="malformed model description"):
        load_model(model)


def test_pickle_instead_of_safetensors_weights_is_refused_unrun(tmp_path):
    model = small_model(tmp_path / "model")
    marker = tmp_path / "code_ran"
    torch.save({"conv1.weight": CreatesAFileWhenUnpickled(marker)}, model / PROPOSAL_WEIGHTS)
    with pytest.raises(ModelError, match="cannot read"):
        load_model(model)
    assert not marker.exists()
