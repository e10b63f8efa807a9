"""docs/thumos14.md's recipe, its commands read from the page, run on a replica of the
official downloads (tests/thumos14_replica.py): full-size C3D from a Caffe file, so only a
few steps of a few clips."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from thumos14_replica import CLASSES, write_replica

from scnn.cli import EXIT_OK, main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "thumos14.md"
SHORT_RUN = ["--steps", "2", "--batch-size", "2", "--workers", "0"]  # the page allows these


def page_commands(page: Path = PAGE) -> list[list[str]]:
    """The ``scnn`` commands of the page's first ``sh`` block, continuation lines joined."""
    block = re.search(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert block, f"{page} has no sh block"
    text = block.group(1).replace("\\\n", " ")
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
    capsys.readouterr()
    assert main(detect[1:]) == EXIT_OK
    assert (replica / "test.txt").is_file()
    assert main(evaluate[1:]) == EXIT_OK
    report = capsys.readouterr().out
    assert "mAP" in report and "scnn" in report
