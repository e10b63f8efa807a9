"""The boundary stages of ``scnn train``: the samples they draw (known answers), a tiny run
that writes a model directory with both networks, and resume after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny import SYNTH, TINY, toml_text

from scnn import cli, dataset, stages
from scnn.boundary_training import (
    BOUNDARIES,
    BOUNDARY_CLIPS,
    boundary_samples,
    jittered_segments,
    sample_offsets,
    train_boundaries,
    train_boundary_clips,
)
from scnn.config import config_from_dict
from scnn.dataset import Samples
from scnn.errors import ScnnError
from scnn.model import build_network
from scnn.modelfile import BOUNDARY_WEIGHTS, load_model
from scnn.records import GroundTruth, Instance
from scnn.synth import generate
from scnn.video import FPS

# Two instances: frames 101-200 of "a" (4.04-8.00 s at 25 fps) and 51-90 of "b".
GT = GroundTruth(
    ("Run",),
    (Instance("a", 101 / FPS, 200 / FPS, "Run"), Instance("b", 51 / FPS, 90 / FPS, "Run")),
    videos=("a", "b"),
)
NUM_FRAMES = {"a": 400, "b": 150}
# The boundary stages of a tiny run: few steps, no dropout (its random state aside).
BOUNDARY_TINY = {**TINY, "boundaries": True, "boundary_steps": 6, "boundary_clip_steps": 6}


def test_window_targets_are_the_offsets_to_the_best_instance():
    windows = Samples(
        ("a", "b"),
        np.array([0, 0, 1]),
        np.array([101, 91, 1]),  # the instance itself; 10 frames early, 120 long; in "b"
        np.array([100, 120, 100]),
        np.ones(3, np.int64),
        np.ones(3, np.float32),
    )
    offsets = sample_offsets(windows, GT)
    # window 2: frames 91-210 against the instance 101-200: +10 and -10 frames of 120
    # window 3: frames 1-100 against 51-90: +50 and -10 frames of 100
    assert offsets == pytest.approx(np.array([[0, 0], [10 / 120, -10 / 120], [0.5, -0.1]]))


def test_jittered_segments_hold_their_instance_and_its_true_offsets():
    samples, offsets = jittered_segments(GT, NUM_FRAMES, 300, np.random.default_rng(0))
    assert len(samples) == len(offsets) == 300
    instances = {"a": (101, 200), "b": (51, 90)}
    first, last = samples.start_frame, samples.start_frame + samples.length_frames - 1
    lengths = samples.length_frames
    for video, (start, end) in instances.items():
        rows = np.flatnonzero(np.array(samples.videos)[samples.video] == video)
        assert len(rows) > 50  # both instances drawn
        # moved by its offsets, each segment is its instance, to the frame
        assert first[rows] + offsets[rows, 0] * lengths[rows] == pytest.approx(start, abs=1e-3)
        assert last[rows] + offsets[rows, 1] * lengths[rows] == pytest.approx(end, abs=1e-3)
        assert (first[rows] >= 1).all() and (last[rows] <= NUM_FRAMES[video]).all()
        overlap = np.minimum(last[rows], end) - np.maximum(first[rows], start)
        union = np.maximum(last[rows], end) - np.minimum(first[rows], start)
        assert (overlap / union >= 0.4 - 1e-9).all()
    assert len(set(zip(first, lengths, strict=True))) > 100  # places and lengths vary


def test_boundary_clips_hold_their_boundary_and_its_offset_from_the_centre():
    samples, which, offsets = boundary_samples(GT, NUM_FRAMES, 400, 0.5, np.random.default_rng(1))
    assert len(samples) == len(which) == len(offsets) == 400
    assert set(which) == {0, 1}
    boundaries = {("a", 0): 101, ("a", 1): 200, ("b", 0): 51, ("b", 1): 90}
    videos = np.array(samples.videos)[samples.video]
    length = samples.length_frames
    centre = samples.start_frame + (length - 1) / 2
    wanted = np.array([boundaries[(v, w)] for v, w in zip(videos, which, strict=True)])
    assert centre + offsets * length == pytest.approx(wanted, abs=1e-3)
    # inside the clip by construction: at most 0.35 of it off its centre, plus rounding
    assert (np.abs(offsets) <= 0.35 + 1 / length).all()
    # a clip spans half its instance (99 frames from start to end in "a", 39 in "b")
    # × e^±0.4, at least 16 frames
    in_a = videos == "a"
    assert length[in_a].min() >= round(49.5 * np.exp(-0.4))
    assert length[in_a].max() <= round(49.5 * np.exp(0.4))
    assert length[~in_a].min() == 16 and length[~in_a].max() <= round(19.5 * np.exp(0.4))
    assert (samples.start_frame >= 1).all()
    assert (samples.start_frame + length - 1 <= np.where(in_a, 400, 150)).all()


def test_no_instances_is_a_clear_error():
    empty = GroundTruth(("Run",), (), ("a",))
    with pytest.raises(ScnnError, match="no instances"):
        jittered_segments(empty, {"a": 100}, 10, np.random.default_rng(0))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SYNTH, quiet=True)
    return root


@pytest.fixture(scope="module")
def data(synth_root, tmp_path_factory):
    config = config_from_dict(BOUNDARY_TINY)
    return stages.prepare_data(
        config,
        synth_root / "annotations.json",
        synth_root / "videos",
        tmp_path_factory.mktemp("cache"),
        progress=False,
    )


def with_localization(out, config):
    """``out/localization/weights.safetensors``: a localization network (random weights)."""
    torch.manual_seed(3)
    network = build_network(len(SYNTH.classes) + 1, config.model, config.clip)
    (out / "localization").mkdir(parents=True)
    save_file(network.state_dict(), out / "localization" / "weights.safetensors")
    return network


def test_scnn_train_with_boundaries_writes_a_model_with_both_networks(synth_root, tmp_path):
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(toml_text(BOUNDARY_TINY))
    out = tmp_path / "run"
    argv = ["--quiet", "train", str(synth_root), "--out", str(out), "--config", str(config_file)]
    assert cli.main([*argv, "--steps", "3"]) == 0
    model = load_model(out / "model")
    assert model.boundaries is not None and model.boundary_clips is not None
    assert (model.boundary_clips.rounds, model.boundary_clips.scale) == (2, 0.5)
    for name, network in (
        (BOUNDARIES, model.boundaries),
        (BOUNDARY_CLIPS, model.boundary_clips.network),
    ):
        weights = load_file(out / name / "weights.safetensors")
        assert weights["fc8.weight"].shape[0] == 2
        assert not torch.equal(weights["fc8.weight"], torch.zeros_like(weights["fc8.weight"]))
        assert all(torch.equal(network.state_dict()[k], v) for k, v in weights.items())
        log = [json.loads(line) for line in (out / name / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [5, 6]  # log_every 5, and the last step
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics == model.metrics[name] and metrics["offset_error"] > 0
    # the body starts from the run's localization network: conv1's weights moved only a little
    localization = load_file(out / "localization" / "weights.safetensors")
    clip_body = load_file(out / BOUNDARY_CLIPS / "weights.safetensors")
    change = (clip_body["conv1.weight"] - localization["conv1.weight"]).abs().max()
    assert 0 < change < 0.1 * localization["conv1.weight"].abs().max()

    # resumed, the finished boundary stages are skipped: their files stay as they were
    weights = (out / BOUNDARY_CLIPS / "weights.safetensors").stat().st_mtime_ns
    assert cli.main([*argv, "--steps", "3", "--resume"]) == 0
    assert (out / BOUNDARY_CLIPS / "weights.safetensors").stat().st_mtime_ns == weights
    assert len((out / BOUNDARIES / "log.jsonl").read_text().splitlines()) == 2

    # without the key the boundary stages cannot be chosen, and none is trained
    plain = tmp_path / "plain.toml"
    plain.write_text(toml_text({**BOUNDARY_TINY, "boundaries": False}))
    assert cli.main([*argv, "--config", str(plain), "--stage", BOUNDARIES]) == 1


def test_without_boundary_steps_the_model_has_the_boundary_clips_alone(synth_root, tmp_path):
    config_file = tmp_path / "clips.toml"
    config_file.write_text(toml_text({**BOUNDARY_TINY, "boundary_steps": 0}))
    out = tmp_path / "run"
    argv = ["--quiet", "train", str(synth_root), "--out", str(out), "--config", str(config_file)]
    assert cli.main([*argv, "--steps", "3"]) == 0
    model = load_model(out / "model")
    assert model.boundaries is None and model.boundary_clips is not None
    assert not (out / BOUNDARIES).exists() and not (out / "model" / BOUNDARY_WEIGHTS).exists()
    assert set(model.metrics) == {"proposal", "classification", "localization", BOUNDARY_CLIPS}
    # the boundary network's stage cannot be chosen
    assert cli.main([*argv, "--stage", BOUNDARIES]) == 1


def test_a_boundary_stage_needs_the_localization_stage(data, tmp_path):
    with pytest.raises(ScnnError, match="train the localization stage first"):
        train_boundaries(config_from_dict(BOUNDARY_TINY), data, tmp_path, progress=False)


# a draw of each stage's 4th step: 16 windows and 16 segments a step, or 32 clips
@pytest.mark.parametrize(
    ("train_stage", "position"),
    [(train_boundaries, 3 * 16 + 1), (train_boundary_clips, 3 * 32 + 1)],
)
def test_resume_after_ctrl_c_reaches_the_weights_of_one_run(
    train_stage, position, data, tmp_path, monkeypatch
):
    config = config_from_dict(
        {**BOUNDARY_TINY, "checkpoint_every": 2, "model": {**TINY["model"], "dropout": 0.5}}
    )
    for out in (tmp_path / "once", tmp_path / "twice"):
        with_localization(out, config)
    name = train_stage.__name__.removeprefix("train_")
    train_stage(config, data, tmp_path / "once", progress=False)

    real_getitems = dataset.ClipDataset.__getitems__

    def ctrl_c_during_step_4(self, indices):
        if self.train and position in indices:
            os.kill(os.getpid(), signal.SIGINT)
        return real_getitems(self, indices)

    monkeypatch.setattr(dataset.ClipDataset, "__getitems__", ctrl_c_during_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_stage(config, data, tmp_path / "twice", progress=False)
    checkpoint = torch.load(tmp_path / "twice" / name / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 4  # the step under way, finished
    assert not (tmp_path / "twice" / name / "weights.safetensors").exists()
    monkeypatch.setattr(dataset.ClipDataset, "__getitems__", real_getitems)
    train_stage(config, data, tmp_path / "twice", resume=True, progress=False)

    once = load_file(tmp_path / "once" / name / "weights.safetensors")
    twice = load_file(tmp_path / "twice" / name / "weights.safetensors")
    assert once.keys() == twice.keys()
    assert all(torch.equal(once[k], twice[k]) for k in once)
    assert (tmp_path / "twice" / name / "metrics.json").read_text() == (
        tmp_path / "once" / name / "metrics.json"
    ).read_text()
