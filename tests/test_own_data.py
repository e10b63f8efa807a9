"""docs/own_data.md, run: every command in its ```sh blocks, in order, on a tiny dataset laid
out as the page describes (videos in folders, CSVs of video,start,end,label). ``scnn train``
gets the tiny config and 3 steps, as the page says; nothing else is changed."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import replace
from pathlib import Path

from tiny import SYNTH, TINY, toml_text

from scnn import cli
from scnn.synth import generate

PAGE = Path(__file__).resolve().parents[1] / "docs" / "own_data.md"
TINY_TRAIN = ["--steps", "3"]  # after --config tiny.toml


def page_commands() -> list[list[str]]:
    """The command lines of the page's ```sh blocks, in order, as argument lists."""
    blocks = re.findall(r"```sh\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


def lay_out_own_data(root: Path) -> None:
    """The page's files from a tiny synthetic dataset: training and validation videos in
    my_videos, test videos in my_test_videos, a CSV for each set."""
    synth = root / "synth"
    generate(synth, replace(SYNTH, test_videos=1), quiet=True)
    for split, folder in (("train", "my_videos"), ("val", "my_videos"), ("test", "my_test_videos")):
        (root / folder).mkdir(exist_ok=True)
        for video in (synth / "videos").glob(f"synth_{split}_*.mp4"):
            shutil.copy(video, root / folder / video.name)
    shutil.copy(synth / "annotations" / "train.csv", root / "my_labels.csv")
    shutil.copy(synth / "annotations" / "val.csv", root / "my_val_labels.csv")
    shutil.copy(synth / "annotations" / "test.csv", root / "my_test_labels.csv")


def test_the_page_commands_run_in_order(tmp_path, monkeypatch, capsys):
    commands = page_commands()
    assert [c[:2] for c in commands] == [
        ["scnn", "train"],
        ["scnn", "train"],
        ["scnn", "detect"],
        ["scnn", "evaluate"],
        ["scnn", "report"],
    ]
    lay_out_own_data(tmp_path)
    (tmp_path / "tiny.toml").write_text(toml_text(TINY))
    monkeypatch.chdir(tmp_path)
    for command in commands:
        extra = ["--config", "tiny.toml", *TINY_TRAIN] if command[1] == "train" else []
        assert cli.main(["--quiet", *command[1:], *extra]) == 0, shlex.join(command)

    started = json.loads(Path("runs/mine_v2/model/model.json").read_text())["config"]
    assert started["started_from"]["init_from"] == str(Path("runs/mine/model").resolve())
    assert started["started_from"]["trained_stages"] == ["localization"]
    assert started["started_from"]["new_classes"] == []
    assert Path("detections.csv").read_text().startswith("video,start,end,label,score")
    assert "mAP" in capsys.readouterr().out
    assert Path("report/index.html").is_file()
