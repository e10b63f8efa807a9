"""The scnn command itself: every subcommand's help, choices from the library's constants,
exit codes, and errors as one line on stderr."""

import argparse
import logging
import os
import subprocess
import sys

import pytest
from tiny import small_model
from videos import numbered_frames, write_video

from scnn import cli
from scnn.boundary_training import BOUNDARY_STAGES
from scnn.cli import build_parser
from scnn.detect import BUNDLED_MODEL
from scnn.evaluate import PROTOCOLS
from scnn.modelfile import load_model
from scnn.runtime import PRECISIONS
from scnn.stages import STAGES


def choices(command: str, option: str) -> tuple[str, ...]:
    """The choices of ``scnn COMMAND OPTION``."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = subparsers.choices[command]._actions
    return tuple(next(a for a in actions if option in a.option_strings).choices)


def test_choices_are_the_librarys_constants():
    stages = ("all", *(stage.name for stage in STAGES), *BOUNDARY_STAGES)
    assert choices("train", "--stage") == stages
    assert choices("detect", "--precision") == PRECISIONS
    assert choices("evaluate", "--protocol") == tuple(PROTOCOLS)


def test_output_path_that_is_a_folder_is_one_error_line(tmp_path, capsys):
    model = small_model(tmp_path / "model")
    video = write_video(tmp_path / "v.mp4", numbered_frames(20), 25)
    out = tmp_path / "taken.json"
    out.mkdir()
    argv = ["--quiet", "detect", str(video), "--model", str(model), "-o", str(out)]
    assert cli.main(argv) == cli.EXIT_ERROR
    error = capsys.readouterr().err.strip()
    assert error.startswith("scnn: error: ") and str(out) in error and "\n" not in error


def subcommands() -> tuple[str, ...]:
    """The names ``scnn --help`` lists."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return tuple(subparsers.choices)


def test_every_subcommand_is_there():
    assert set(subcommands()) == {
        "synth", "train", "postprocess", "evaluate", "diagnose", "detect", "demo", "report",
        "import-caffe",
        "features",
    }  # fmt: skip


@pytest.mark.parametrize("command", subcommands())
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: scnn {command} ") and "--quiet" in shown


def test_bad_command_line_exits_2_with_usage(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["evaluate", "--protocol", "nope"])
    assert exited.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_input_error_is_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    argv = ["evaluate", "--gt", str(missing), "--pred", str(missing), "--protocol", "scnn"]
    assert cli.main(argv) == cli.EXIT_ERROR
    error = capsys.readouterr().err
    assert error.startswith("scnn: error: ") and str(missing) in error
    assert error.count("\n") == 1


def test_set_without_a_value_is_an_error_line(tmp_path, capsys):
    argv = ["train", str(tmp_path), "--out", str(tmp_path / "out"), "--set", "steps"]
    assert cli.main(argv) == cli.EXIT_ERROR
    assert capsys.readouterr().err == "scnn: error: --set steps: expected KEY=VALUE\n"


def test_python_m_scnn_is_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "scnn", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: scnn ")


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--threads", "-1", "synth", "out"], "--threads"),
        (["detect", "v.mp4", "--batch-size", "-1"], "--batch-size"),
        (["detect", "v.mp4", "--batch-size", "0"], "--batch-size"),
        (["features", "v.mp4", "-o", "f", "--batch-size", "0"], "--batch-size"),
        (["detect", "v.mp4", "--top-k", "-1"], "--top-k"),
        (["detect", "v.mp4", "--nms", "-1"], "--nms"),
        (["detect", "v.mp4", "--nms", "5"], "--nms"),
        (["detect", "v.mp4", "--min-score", "nan"], "--min-score"),
        (["detect", "v.mp4", "--proposal-threshold", "nan"], "--proposal-threshold"),
        (["postprocess", "w.csv", "--nms", "nan", "-o", "d.json"], "--nms"),
        (["postprocess", "w.csv", "--top-k", "0", "-o", "d.json"], "--top-k"),
        (
            ["evaluate", "--gt", "g.csv", "--pred", "p.csv", "--protocol", "scnn", "--iou", "1.5"],
            "--iou",
        ),  # fmt: skip
        (
            ["evaluate", "--gt", "g.csv", "--pred", "p.csv", "--protocol", "scnn", "--iou", "-0.2"],
            "--iou",
        ),  # fmt: skip
    ],
)
def test_numbers_out_of_range_are_a_bad_command_line(argv, option, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert f"argument {option}" in error and "Traceback" not in error


@pytest.mark.parametrize("lr", ["nan", "-1", "inf"])
def test_a_learning_rate_that_is_no_finite_number_ge_0_is_one_line(lr, tmp_path, capsys):
    argv = ["--quiet", "train", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert cli.main([*argv, "--config", "synthetic_cpu", "--lr", lr]) == cli.EXIT_ERROR
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "lr must be a number >= 0" in error


def test_live_lines_to_a_closed_standard_output_are_one_line(tmp_path):
    model = small_model(tmp_path / "model")
    video = write_video(tmp_path / "v.mp4", numbered_frames(20), 25)
    argv = [sys.executable, "-m", "scnn", "--quiet", "detect", str(video), "--live"]
    argv += ["--model", str(model)]
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
        preexec_fn=lambda: os.close(1), timeout=600,
    )  # fmt: skip
    assert done.returncode == cli.EXIT_ERROR
    assert done.stderr == "scnn: error: standard output is closed: nowhere to write the lines\n"


@pytest.mark.parametrize("command", ["detect", "features"])
def test_the_bundled_model_names_its_classes_on_one_stderr_line(command, tmp_path):
    video = write_video(tmp_path / "v.mp4", numbered_frames(20), 25)
    out = tmp_path / ("out.json" if command == "detect" else "features")
    argv = [sys.executable, "-m", "scnn", "--threads", "1", command, str(video), "-o", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "bundled model" in line]
    assert len(notes) == 1
    for name in load_model(BUNDLED_MODEL).classes:
        assert name in notes[0]
    assert "scnn import-caffe" in notes[0] and "path (a)" in notes[0]
    quiet = subprocess.run([*argv, "--quiet"], capture_output=True, text=True, check=False)
    assert quiet.returncode == 0 and "bundled model" not in quiet.stderr


def test_a_model_of_ones_own_gets_no_bundled_model_line(tmp_path, caplog):
    model = small_model(tmp_path / "model")
    video = write_video(tmp_path / "v.mp4", numbered_frames(20), 25)
    argv = ["detect", str(video), "--model", str(model), "-o", str(tmp_path / "out.json")]
    with caplog.at_level(logging.INFO):
        assert cli.main(argv) == cli.EXIT_OK
    assert "bundled model" not in caplog.text
