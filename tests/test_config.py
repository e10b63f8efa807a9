"""The training config: TOML files and overrides, their errors, the ready configs, the
resolved config of a run and its check on resume."""

from __future__ import annotations

import json

import pytest

from scnn.config import TrainConfig, load_config, write_run_config
from scnn.distributed import World
from scnn.errors import ScnnError


def test_config_overrides_and_resolved_values(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("steps = 7\nlr = 1\n[clip]\ncrop_size = 56\nframe_size = [86, 64]\n")
    config = load_config(path, {"model.width": 0.125, "device": "cpu"})
    assert config.steps == 7 and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.clip.frame_size == (86, 64) and config.clip.crop_size == 56
    assert config.model.width == 0.125 and config.device == "cpu"
    assert config.batch_size == TrainConfig().batch_size  # untouched keys keep the defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stpes = 7", "unknown key 'stpes'"),
        ("[clip]\ncrop = 56", "unknown key 'clip.crop'"),
        ('steps = "7"', "steps: expected int"),
        ("steps = 7.5", "steps: expected int"),
        ("[clip]\nframe_size = [86]", "clip.frame_size: expected 2 values"),
        ('optimizer = "adam"', "optimizer 'adam'"),
        ("[clip]\ncrop_size = 200", "crop 200 px does not fit"),
        ('compile = "fast"', "compile mode 'fast' is not one of default"),
    ],
)
def test_config_errors_name_the_key_and_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScnnError, match=message) as error:
        load_config(path)
    if "optimizer" not in message and "compile" not in message:
        assert str(path) in str(error.value)


def test_boundary_steps_may_be_0_the_boundary_clip_steps_may_not():
    assert TrainConfig(boundary_steps=0).boundary_steps == 0  # no boundary network
    with pytest.raises(ScnnError, match="boundary_steps must be at least 0, got -1"):
        TrainConfig(boundary_steps=-1)
    with pytest.raises(ScnnError, match="boundary_clip_steps must be at least 1, got 0"):
        TrainConfig(boundary_clip_steps=0)


def test_ready_configs_load():
    cpu = load_config("synthetic_cpu")
    assert cpu.clip.crop_size < TrainConfig().clip.crop_size
    faithful = load_config("thumos14")
    assert (faithful.model, faithful.clip, faithful.lr) == (
        TrainConfig().model,
        TrainConfig().clip,
        1e-4,
    )
    assert not faithful.boundaries  # S-CNN's three stages only


def test_an_override_inside_a_value_names_the_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("steps = 7\n")
    with pytest.raises(ScnnError, match="'steps.max' sets a key inside a value") as error:
        load_config(path, {"steps.max": 3})
    assert str(path) in str(error.value)


def test_run_config_is_written_resolved_and_checked_on_resume(tmp_path):
    config = TrainConfig(batch_size=4, steps=10)
    write_run_config(tmp_path, config, resume=False, world=World(rank=0, size=2, local_rank=0))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["batch_size"] == 4 and saved["steps"] == 10 and saved["model"]["width"] == 1.0
    assert (saved["processes"], saved["batch_per_process"]) == (2, 2)

    runtime_only = TrainConfig(batch_size=4, steps=10, workers=0, log_every=1, device="cpu")
    write_run_config(tmp_path, runtime_only, resume=True)  # what is computed stays the same
    assert json.loads((tmp_path / "config.json").read_text())["processes"] == 1
    with pytest.raises(ScnnError, match=r"--resume with a different config \(lr, steps changed\)"):
        write_run_config(tmp_path, TrainConfig(batch_size=4, steps=11, lr=0.5), resume=True)
