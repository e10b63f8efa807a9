"""Detection over many files: bad files recorded while the rest go on, each video probed
once, the results in every format, and `scnn detect`'s exit codes."""

import json
import subprocess
import sys

import pytest
from detecting import long_video
from tiny import MODEL_CLASSES as CLASSES
from tiny import small_model
from videos import numbered_frames, write_audio, write_video

from scnn import batch, cli, detect, lanes
from scnn.batch import detect_videos, write_results
from scnn.detect import Detector
from scnn.errors import ScnnError
from scnn.formats import load_detections
from scnn.formats.windows_csv import read_windows_csv
from scnn.video import find_videos


def test_batch_goes_past_bad_files_and_writes_every_format(model_dir, video, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(video.read_bytes())
    (folder / "broken.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("ignored: not a video suffix")
    detector = Detector.load(model_dir, proposal_threshold=0.0)
    paths = find_videos([folder])
    assert [p.name for p in paths] == ["broken.mp4", "good.mp4"]
    result = detect_videos(detector, paths, quiet=True)
    assert list(result.detections) == ["good"]
    assert list(result.failures) == [str(folder / "broken.mp4")]
    for suffix in (".json", ".csv", ".txt"):
        write_results(result, tmp_path / f"out{suffix}", CLASSES)
        loaded = load_detections(tmp_path / f"out{suffix}", classes=CLASSES)
        assert len(loaded) == len(result.detections["good"])
        assert {d.video for d in loaded} == {"good"}
    write_results(result, tmp_path / "out.vtt", CLASSES, windows_csv=tmp_path / "w.csv")
    vtt = (tmp_path / "out.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n1\n00:00:")
    assert len(read_windows_csv(tmp_path / "w.csv", CLASSES)) == len(result.windows[0])


def test_each_video_is_probed_once_for_the_progress_bar_and_the_lanes(
    model_dir, tmp_path, monkeypatch
):
    path = long_video(tmp_path / "long.mp4")
    probed, splits = [], []

    def counting_probe(video):
        probed.append(video)
        return real_probe(video)

    def recorded_split(*args):
        splits.append(real_split(*args))
        return splits[-1]

    real_probe, real_split = batch.probe, detect.lane_ends
    monkeypatch.setattr(batch, "probe", counting_probe)
    monkeypatch.setattr(lanes, "probe", counting_probe)
    monkeypatch.setattr(detect, "lane_ends", recorded_split)
    result = detect_videos(Detector.load(model_dir, lanes=2), [path], quiet=True)
    assert list(result.detections) == ["long"]
    assert probed == [path] and splits == [[1710, 0]]


def test_same_video_name_twice_is_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "v.mp4").write_bytes(b"")
    with pytest.raises(ScnnError, match="share the name 'v'"):
        find_videos([tmp_path / "a", tmp_path / "b"])


def test_cli_exit_code_reports_failures(model_dir, video, tmp_path):
    out = tmp_path / "det.json"
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    command = [
        sys.executable,
        "-m",
        "scnn",
        "detect",
        str(video),
        str(broken),
        "--model",
        str(model_dir),
        "-o",
        str(out),
        "--proposal-threshold",
        "0",
        "--quiet",
        "--threads",
        "1",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 3, run.stderr
    assert "broken.mp4: not a readable video" in run.stderr
    assert "Traceback" not in run.stderr
    assert list(json.loads(out.read_text())["results"]) == ["clip one"]


def detect_cli(*argv, out, capsys) -> tuple[int, str]:
    """``scnn detect`` in this process: its exit code and its error output."""
    code = cli.main(["--quiet", "detect", *map(str, argv), "-o", str(out)])
    return code, capsys.readouterr().err


def test_cli_missing_inputs_are_named_before_any_work(video, tmp_path, capsys):
    out = tmp_path / "det.json"
    out.write_text("earlier results\n")
    missing = [tmp_path / "missing.mp4", tmp_path / "gone"]
    # The model directory is bad too: the inputs are checked before it is loaded.
    code, err = detect_cli(
        video, *missing, "--model", tmp_path / "no_model", out=out, capsys=capsys
    )
    assert code == cli.EXIT_ERROR
    assert err.count("\n") == 1
    assert "no such file or folder" in err and all(str(path) in err for path in missing)
    assert out.read_text() == "earlier results\n"


def test_cli_folder_without_videos_is_an_error(model_dir, tmp_path, capsys):
    out = tmp_path / "det.json"
    out.write_text("earlier results\n")
    folder = tmp_path / "empty folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a video")
    code, err = detect_cli(folder, "--model", model_dir, out=out, capsys=capsys)
    assert code == cli.EXIT_ERROR
    assert f"{folder}: no video files" in err and err.count("\n") == 1
    assert out.read_text() == "earlier results\n"


def test_cli_writes_nothing_when_no_video_was_processed(model_dir, tmp_path, capsys):
    out = tmp_path / "det.json"
    out.write_text("earlier results\n")
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    code, err = detect_cli(broken, "--model", model_dir, out=out, capsys=capsys)
    assert code != cli.EXIT_OK
    assert "broken.mp4: not a readable video" in err
    assert f"{out}: no video could be processed" in err
    assert out.read_text() == "earlier results\n"


def test_cli_video_without_detections_is_listed_in_the_json(model_dir, video, tmp_path, capsys):
    out = tmp_path / "det.json"
    code, _ = detect_cli(video, "--model", model_dir, "--min-score", "2", out=out, capsys=capsys)
    assert code == cli.EXIT_OK
    assert json.loads(out.read_text())["results"] == {"clip one": []}


def test_detect_batch_goes_on_past_bad_videos_and_lists_them(tmp_path, capsys):
    model = small_model(tmp_path / "model")
    folder = tmp_path / "videos dossier"
    folder.mkdir()
    write_video(folder / "good one.mp4", numbered_frames(40), 25)  # 40 frames: 7 + 2 windows
    write_video(folder / "vfr.mkv", numbered_frames(10), 25, pts_ms=[0, 40, 80, 200, 240, 500,
                520, 540, 900, 1000])  # fmt: skip  # 26 frames: 3 windows of 16
    bad = {
        "empty.mp4": "empty file",
        "notes.mp4": "not a readable video",
        "cut.mp4": "not a readable video",
        "sound.mkv": "has no video stream",
        "five.mp4": "shorter than the shortest window",
        "folder.mp4": "is a directory",
    }
    (folder / "empty.mp4").touch()
    (folder / "notes.mp4").write_text("a shopping list\n" * 30)
    cut = write_video(tmp_path / "whole.mp4", numbered_frames(40), 25).read_bytes()
    (folder / "cut.mp4").write_bytes(cut[: len(cut) // 2])
    write_audio(folder / "sound.mkv")
    write_video(folder / "five.mp4", numbered_frames(5), 25)
    (folder / "folder.mp4").mkdir()
    out = tmp_path / "out" / "detections.json"
    windows_csv = tmp_path / "out" / "windows.csv"
    argv = [
        "--quiet", "detect", str(folder), "--model", str(model),
        "-o", str(out), "--save-windows", str(windows_csv), "--proposal-threshold", "0",
    ]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_SOME_FAILED
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed:")]
    assert len(errors) == len(bad)
    for name, words in bad.items():
        assert any(name in line and words in line for line in errors), name
    rows = windows_csv.read_text().splitlines()[1:]
    assert sorted({row.split(",")[0] for row in rows}) == ["good one", "vfr"]
    assert [row.split(",")[0] for row in rows].count("good one") == 9
    assert [row.split(",")[0] for row in rows].count("vfr") == 3
    assert "results" in json.loads(out.read_text())
    assert sorted(p.name for p in out.parent.iterdir()) == ["detections.json", "windows.csv"]
