"""docs/thumos14.md's recipe, its commands read from the page, run on a replica of the
official downloads (tests/thumos14_replica.py): full-size C3D from a Caffe file, so only a
few steps of a few clips."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from launch import torchrun
from thumos14_replica import CLASSES, write_replica

from scnn.cli import EXIT_OK, main

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "thumos14.md"
TORCHRUN_PAGE = DOCS / "distributed.md"
SHORT_RUN = ["--steps", "2", "--batch-size", "2", "--workers", "0"]  # the page allows these


def page_commands(page: Path = PAGE, containing: str = "scnn train --config thumos14"):
    """The commands of the page's ``sh`` block that holds ``containing``, continuation lines
    joined."""
    blocks = re.findall(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    texts = [block.replace("\\\n", " ") for block in blocks]
    text = next((text for text in texts if containing in " ".join(text.split())), None)
    assert text is not None, f"{page} has no sh block with {containing!r}"
    return [shlex.split(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("downloads")
    write_replica(root)
    return root


def test_the_page_shows_the_three_commands():
    commands = page_commands()
    assert [command[:2] for command in commands] == [
        ["scnn", "train"],
        ["scnn", "detect"],
        ["scnn", "evaluate"],
    ]
    assert "--val-annotations" not in commands[0]  # the test annotations stay unseen


@pytest.mark.slow
def test_the_recipe_runs_on_a_replica_of_the_downloads(replica, monkeypatch, capsys):
    monkeypatch.chdir(replica)
    train, detect, evaluate = page_commands()
    assert main([*train[1:], *SHORT_RUN]) == EXIT_OK
    model = json.loads((replica / "runs/thumos14/model/model.json").read_text())
    assert model["classes"] == list(CLASSES)
    assert model["input"] == {
        "frame_size": [171, 128],
        "crop_size": 112,
        "clip_frames": 16,
        "channels": "BGR",
        "mean": "mean_cube.safetensors",
        "std": [1.0, 1.0, 1.0],
    }
    assert model["model"]["pooling"] == "caffe" and model["model"]["width"] == 1.0
    assert (replica / "runs/thumos14/model/mean_cube.safetensors").is_file()
    assert model["config"]["data"]["val_subset"] == ""
    assert model["metrics"]["localization"] == {"windows": 0}  # nothing validated
    capsys.readouterr()
    assert main(detect[1:]) == EXIT_OK
    assert (replica / "test.txt").is_file()
    assert main(evaluate[1:]) == EXIT_OK
    report = capsys.readouterr().out
    assert "mAP" in report and "scnn" in report


@pytest.mark.slow
def test_the_recipe_runs_under_torchrun_on_two_gloo_processes(replica, monkeypatch, capsys):
    """distributed.md's form: 3 GPUs there, 2 gloo processes on a CPU here (batch 2: one clip
    each; detection on the CPU)."""
    train, detect, evaluate = page_commands(TORCHRUN_PAGE, "-m scnn train --config thumos14")
    assert train[:5] == ["torchrun", "--nproc-per-node", "3", "-m", "scnn"]
    assert detect[:5] == train[:5] and detect[-2:] == ["--device", "cuda"]
    one_train, one_detect, one_evaluate = page_commands()  # the one-process recipe
    assert (train[5:], detect[5:-2], evaluate) == (one_train[1:], one_detect[1:], one_evaluate)
    shutil.rmtree(replica / "runs", ignore_errors=True)
    (replica / "test.txt").unlink(missing_ok=True)
    done = torchrun(*train[5:], *SHORT_RUN, cwd=replica, timeout_s=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((replica / "runs/thumos14/config.json").read_text())
    assert (saved["processes"], saved["batch_per_process"], saved["clip"]["bgr"]) == (2, 1, True)
    done = torchrun(*detect[5:-2], "--device", "cpu", cwd=replica, timeout_s=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.chdir(replica)
    capsys.readouterr()
    assert main(evaluate[1:]) == EXIT_OK
    assert "mAP" in capsys.readouterr().out
