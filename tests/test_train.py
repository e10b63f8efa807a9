"""The trainer: a tiny model that learns, checkpoints, resume, the `scnn train` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from pause import Pause
from safetensors.torch import load_file
from tiny import SYNTH, TINY, CreatesAFileWhenUnpickled, toml_text
from tiny import SYNTH as TINY_SYNTH

from scnn import cli, dataset, stages, train
from scnn.config import config_from_dict, load_config
from scnn.errors import ScnnError
from scnn.model import build_network
from scnn.modelfile import load_model
from scnn.stages import CLASSIFICATION, LOCALIZATION, PROPOSAL
from scnn.synth import generate


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SYNTH, quiet=True)
    return root


@pytest.fixture(scope="module")
def data(synth_root, tmp_path_factory):
    config = config_from_dict(TINY)
    cache = tmp_path_factory.mktemp("cache")
    return stages.prepare_data(
        config, synth_root / "annotations.json", synth_root / "videos", cache, progress=False
    )


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_tiny_model_trains_and_its_loss_drops(data, tmp_path):
    metrics = train.train(PROPOSAL, config_from_dict(TINY), data, tmp_path, progress=False)
    records = read_log(tmp_path / "proposal" / "log.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    assert records[-1]["lr"] == pytest.approx(3e-3 * 0.1**3)  # ×0.1 every third of the steps
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["windows"] > 0
    assert json.loads((tmp_path / "proposal" / "metrics.json").read_text()) == metrics


def test_checkpoint_holds_the_trained_weights(data, tmp_path):
    config = config_from_dict({**TINY, "steps": 4})
    train.train(PROPOSAL, config, data, tmp_path, progress=False)
    from_checkpoint = build_network(2, config.model, config.clip)
    state = torch.load(tmp_path / "proposal" / "checkpoint.pt", weights_only=True)
    from_checkpoint.load_state_dict(state["model"])
    from_weights = build_network(2, config.model, config.clip)
    from_weights.load_state_dict(load_file(tmp_path / "proposal" / "weights.safetensors"))
    clips = torch.randn(3, 3, 16, 32, 32)
    assert state["step"] == 4
    assert torch.equal(from_checkpoint.eval()(clips), from_weights.eval()(clips))


def test_compiled_training_step_learns_and_saves_plain_weights(data, tmp_path):
    """torch.compile wraps only what the loop calls: the saved weights keep the network's own
    names (no "_orig_mod." prefix) and load into a plain network."""
    config = config_from_dict({**TINY, "steps": 10, "log_every": 5, "compile": "default"})
    train.train(PROPOSAL, config, data, tmp_path, progress=False)
    state = load_file(tmp_path / "proposal" / "weights.safetensors")
    network = build_network(2, config.model, config.clip)
    network.load_state_dict(state)
    assert set(state) == set(network.state_dict())
    records = read_log(tmp_path / "proposal" / "log.jsonl")
    assert records[-1]["loss"] < records[0]["loss"]
    torch.manual_seed(config.seed)  # the trainer's initial weights
    initial = build_network(2, config.model, config.clip).state_dict()
    assert not torch.equal(state["fc8.weight"], initial["fc8.weight"])


def test_resume_after_ctrl_c_reaches_the_weights_of_one_run(data, tmp_path, monkeypatch):
    # Dropout on, so the restored random state matters too.
    config = config_from_dict(
        {**TINY, "steps": 6, "checkpoint_every": 4, "model": {**TINY["model"], "dropout": 0.5}}
    )
    train.train(CLASSIFICATION, config, data, tmp_path / "once", progress=False)

    real_getitems = dataset.ClipDataset.__getitems__

    def ctrl_c_during_step_3(self, indices):
        if self.train and 2 * config.batch_size + 1 in indices:
            os.kill(os.getpid(), signal.SIGINT)
        return real_getitems(self, indices)

    monkeypatch.setattr(dataset.ClipDataset, "__getitems__", ctrl_c_during_step_3)
    with pytest.raises(KeyboardInterrupt):
        train.train(CLASSIFICATION, config, data, tmp_path / "twice", progress=False)
    checkpoint = torch.load(
        tmp_path / "twice" / "classification" / "checkpoint.pt", weights_only=True
    )
    assert checkpoint["step"] == 3  # the step under way when Ctrl-C came, finished
    assert not (tmp_path / "twice" / "classification" / "weights.safetensors").exists()
    monkeypatch.setattr(dataset.ClipDataset, "__getitems__", real_getitems)
    train.train(CLASSIFICATION, config, data, tmp_path / "twice", resume=True, progress=False)

    once = load_file(tmp_path / "once" / "classification" / "weights.safetensors")
    twice = load_file(tmp_path / "twice" / "classification" / "weights.safetensors")
    assert once.keys() == twice.keys()
    assert all(torch.equal(once[name], twice[name]) for name in once)


def test_localization_needs_the_classification_stage(data, tmp_path):
    with pytest.raises(ScnnError, match="train the classification stage first"):
        train.train(LOCALIZATION, config_from_dict(TINY), data, tmp_path, progress=False)


def test_scnn_train_writes_a_model_directory(synth_root, tmp_path):
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(toml_text(TINY))
    out = tmp_path / "run"
    argv = [
        "--quiet",
        "train",
        str(synth_root),
        "--out",
        str(out),
        "--config",
        str(config_file),
        "--steps",
        "3",
        "--set",
        "log_every=1",
        "--set",
        "proposal_threshold=0.5",
        "--set",
        "vote_iou=0.3",
    ]
    assert cli.main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 3 and saved["log_every"] == 1 and saved["model"]["width"] == 0.0625
    model = load_model(out / "model")
    assert sorted(model.classes) == sorted(SYNTH.classes)  # ActivityNet JSON: first-seen order
    assert list(model.prior) == [16, 32, 64]  # the config's window lengths
    assert all(weights.shape == (2,) for weights in model.prior.values())  # 2 classes
    assert set(model.metrics) == {"proposal", "classification", "localization"}
    assert (model.proposal_threshold, model.vote_iou) == (0.5, 0.3)  # detection's defaults
    localization = build_network(3, model.options, model.clip)
    localization.load_state_dict(load_file(out / "localization" / "weights.safetensors"))
    clips = torch.randn(2, 3, 16, 32, 32)
    assert torch.equal(model.localization(clips), localization.eval()(clips))

    # A resumed run with a changed config is refused; with the same one, finished stages skip.
    assert cli.main([*argv, "--resume", "--lr", "0.5"]) == 1
    assert cli.main([*argv, "--resume"]) == 0
    assert len(read_log(out / "proposal" / "log.jsonl")) == 3


# ---------------------------------------------------------------- interrupted training

REPO = Path(__file__).resolve().parents[1]
# The shared tiny problem, changed where this test depends on it: fewer, shorter videos, half
# the batch and two window lengths, as the test trains five times; 40 deterministic steps,
# logged each step and checkpointed every 5, so that a resumed run can equal one run bit for
# bit; dropout, so that the resumed random state matters.
INTERRUPTED_SYNTH = replace(
    TINY_SYNTH,
    train_videos=2,
    duration_range_s=(6.0, 8.0),
    instance_duration_range_s=(0.6, 2.0),
)
TINY_TOML = toml_text(
    {
        **TINY,
        "batch_size": 4,
        "steps": 40,
        "log_every": 1,
        "checkpoint_every": 5,
        "deterministic": True,
        "windows": {"lengths_frames": [16, 32]},
        "model": {**TINY["model"], "dropout": 0.5},
        "data": {"val_samples": 8},
    }
)


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synth")
    generate(root / "data", INTERRUPTED_SYNTH, quiet=True)
    (root / "tiny.toml").write_text(TINY_TOML)
    return root / "data", root / "tiny.toml"


def scnn_train(synth_run, out: Path, *extra: str, pause: Pause | None = None) -> subprocess.Popen:
    data, config = synth_run
    scnn = pause.command if pause else [sys.executable, "-m", "scnn"]
    command = [
        *scnn, "--quiet", "--threads", "1", "train", str(data),
        "--out", str(out), "--config", str(config), "--stage", "proposal", *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO)


def logged_steps(out: Path) -> list[int]:
    log = out / "proposal" / "log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line)["step"] for line in log.read_text().splitlines() if line.strip()]


def checkpoint_step(out: Path) -> int:
    state = torch.load(out / "proposal" / "checkpoint.pt", weights_only=True)
    return int(state["step"])


def test_sigint_and_sigkill_then_resume_reach_the_weights_of_one_run(synth_run, tmp_path):
    once = tmp_path / "once"
    assert scnn_train(synth_run, once).wait(timeout=600) == 0
    reference = load_file(once / "proposal" / "weights.safetensors")

    # Ctrl-C during step 8: the step finishes, is checkpointed, and the command exits with 130.
    interrupted = tmp_path / "sigint"
    pause = Pause(tmp_path / "pause_sigint", "scnn.train:train_step", at_call=8)
    process = scnn_train(synth_run, interrupted, pause=pause)
    pause.wait(process)
    process.send_signal(signal.SIGINT)
    pause.release(process)
    assert process.wait() == cli.EXIT_INTERRUPTED
    assert "scnn: interrupted" in process.stderr.read()
    assert checkpoint_step(interrupted) == max(logged_steps(interrupted)) == 8
    assert not (interrupted / "proposal" / "weights.safetensors").exists()

    # SIGKILL before step 13: nothing runs on the way out; the steps since the last
    # checkpoint (every 5 steps) are lost.
    killed = tmp_path / "sigkill"
    pause = Pause(tmp_path / "pause_sigkill", "scnn.train:train_step", at_call=13)
    process = scnn_train(synth_run, killed, pause=pause)
    pause.wait(process)
    process.kill()
    process.wait()
    assert max(logged_steps(killed)) == 12
    assert checkpoint_step(killed) == 10

    for out in (interrupted, killed):
        assert scnn_train(synth_run, out, "--resume").wait(timeout=600) == 0
        resumed = load_file(out / "proposal" / "weights.safetensors")
        assert resumed.keys() == reference.keys()
        assert all(torch.equal(resumed[name], reference[name]) for name in reference), out


def test_checkpoint_with_a_pickle_payload_is_refused_unrun(synth_run, tmp_path):
    data, config_path = synth_run
    config = load_config(config_path)
    marker = tmp_path / "code_ran"
    out = tmp_path / "run"
    (out / "proposal").mkdir(parents=True)
    torch.save({"step": CreatesAFileWhenUnpickled(marker)}, out / "proposal" / "checkpoint.pt")
    prepared = stages.prepare_data(
        config, data / "annotations.json", data / "videos", tmp_path / "cache", progress=False
    )
    with pytest.raises(ScnnError, match="cannot read checkpoint") as caught:
        train.train(stages.PROPOSAL, config, prepared, out, resume=True, progress=False)
    assert "checkpoint.pt" in str(caught.value)
    assert not marker.exists()


def test_resume_finishes_a_stage_whose_weights_are_missing(data, tmp_path):
    """metrics.json without weights is no finished stage: resuming writes the weights again."""
    config = config_from_dict({**TINY, "steps": 4})
    train.train(PROPOSAL, config, data, tmp_path, progress=False)
    weights = tmp_path / "proposal" / "weights.safetensors"
    trained = weights.read_bytes()
    weights.unlink()
    train.train(PROPOSAL, config, data, tmp_path, resume=True, progress=False)
    assert weights.read_bytes() == trained
