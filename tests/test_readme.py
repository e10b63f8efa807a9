"""README.md, run: each command of its ```sh blocks is run by a test here or named where
another test runs it, at tiny scale (fewer demo videos, the tiny training config and 3 steps,
a 1/16-width Sports-1M C3D), so the page cannot drift from the code."""

from __future__ import annotations

import contextlib
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
from caffe_writer import c3d_arrays, write_caffemodel
from readme import readme_blocks, readme_command, readme_commands
from test_own_data import lay_out_own_data
from tiny import TINY, toml_text
from videos import numbered_frames, write_video

from scnn import cli, features
from scnn.caffe import CAFFE_OPTIONS, SPORTS1M_FC8
from scnn.model import build_network

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"

IMPORTED_DETECT = "test_caffe_res3d.py::test_the_readmes_detect_command_runs_on_the_imported_model"
# Every README command, in order, and the test that runs it.
RUN_BY = [
    (("python3", "-m", "pip"), ".ci/run (test_setup_and_tests_are_what_ci_runs)"),
    (("python3", "-m", "pip"), ".ci/run (test_setup_and_tests_are_what_ci_runs)"),
    (("python3", "-m", "pytest"), ".ci/run (test_setup_and_tests_are_what_ci_runs)"),
    (("scnn", "demo"), "test_demo"),
    (("python3", "-m", "venv"), "test_the_virtual_environment_lines"),
    ((".", ".venv/bin/activate"), "test_the_virtual_environment_lines"),
    (("python3", "-m", "pip"), "test_the_virtual_environment_lines (the setup lines)"),
    (("python3", "-m", "pip"), "test_the_virtual_environment_lines (the setup lines)"),
    (("scnn", "import-caffe"), "test_caffe_res3d.py::authors_res3d"),
    (
        ("scnn", "detect"),
        IMPORTED_DETECT,
    ),
    (("scnn", "train"), "test_path_b_train_detect_evaluate"),
    (("scnn", "detect"), "test_path_b_train_detect_evaluate"),
    (("scnn", "evaluate"), "test_path_b_train_detect_evaluate"),
    (("scnn", "features"), "test_path_c_features_of_the_sports1m_c3d"),
]


def test_every_command_has_its_test():
    commands = readme_commands()
    assert len(commands) == len(RUN_BY)
    for command, (prefix, _) in zip(commands, RUN_BY, strict=True):
        assert tuple(command[: len(prefix)]) == prefix


def test_setup_and_tests_are_what_ci_runs():
    """The README's first block is, line for line, what .ci/run runs from nothing."""
    ci_lines = [line.strip() for line in CI.read_text().splitlines()]
    first = readme_blocks()[0].splitlines()
    assert first[0].startswith("python3 -m pip install torch==") and "-m pytest" in first[1]
    for line in first:
        assert line in ci_lines


def test_the_virtual_environment_lines(tmp_path):
    """The install block: a virtual environment made and entered as typed, then the setup
    lines (which .ci/run runs)."""
    (block,) = [b for b in readme_blocks() if "venv" in b]
    lines = block.splitlines()
    setup = readme_blocks()[0].splitlines()[0].split(" && ")
    assert [line.split("#")[0].strip() for line in lines[1:]] == setup
    script = f"{lines[0]} && python3 -c 'import sys; print(sys.prefix)'"
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == tmp_path / ".venv"


def test_demo(tmp_path, monkeypatch):
    command = readme_command("scnn", "demo")
    monkeypatch.chdir(tmp_path)
    assert cli.main([*command[1:], "--videos", "1", "--quiet"]) == 0
    metrics = json.loads(Path(command[command.index("-o") + 1], "metrics.json").read_text())
    assert set(metrics) >= {"thumos14", "scnn", "activitynet"}


def test_path_b_train_detect_evaluate(tmp_path, monkeypatch, capsys):
    lay_out_own_data(tmp_path)
    (tmp_path / "tiny.toml").write_text(toml_text(TINY))
    monkeypatch.chdir(tmp_path)
    for prefix in (("train",), ("detect", "my_test_videos"), ("evaluate",)):
        command = readme_command("scnn", *prefix)
        extra = ["--config", "tiny.toml", "--steps", "3"] if prefix == ("train",) else []
        assert cli.main(["--quiet", *command[1:], *extra]) == 0, command
    assert Path("detections.csv").read_text().startswith("video,start,end,label,score")
    assert "mAP" in capsys.readouterr().out


def test_path_c_features_of_the_sports1m_c3d(tmp_path, monkeypatch):
    """The Sports-1M C3D-v1.0 Caffe file where the README has it, at 1/16 width (the
    extraction builds the same small network), on a one-second video."""
    small = replace(CAFFE_OPTIONS, width=1 / 16)
    monkeypatch.setattr(
        features,
        "network_for_weights",
        lambda outputs, _, clip: build_network(outputs, small, clip),
    )
    command = readme_command("scnn", "features")
    weights = tmp_path / command[command.index("--init-from") + 1]
    weights.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = c3d_arrays(rng, 487, (4, 8, 16, 16, 32, 32, 32, 32), 256)
    write_caffemodel(weights, arrays, rename={"fc8": SPORTS1M_FC8})
    videos = tmp_path / command[2]
    videos.mkdir()
    write_video(videos / "clip.mp4", numbered_frames(25), 25)
    with contextlib.chdir(tmp_path):
        assert cli.main(["--quiet", *command[1:]]) == 0
    index = json.loads((tmp_path / "features" / "features.json").read_text())
    assert index["feature_dim"] == 256 and index["snippet_frames"] == 16
    assert np.load(tmp_path / "features" / "clip.npy").shape == (2, 256)
