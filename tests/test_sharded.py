"""Sharded detection: 2 gloo processes under torchrun detect what one process does, each
finished video recorded, and a killed detection resumed without redoing videos."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from launch import free_port, torchrun
from pause import Pause
from tiny import MODEL_CLASSES, random_model
from videos import numbered_frames, write_video

from scnn.batch import detect_videos, write_results
from scnn.detect import Detector
from scnn.sharded import detect_sharded, parts_dir
from scnn.video import find_videos

VIDEO_FRAMES = {"a": 260, "b": 120, "c": 200, "d": 90}  # 4 small videos at 25 fps
SETTINGS = {"proposal_threshold": 0.3}


@pytest.fixture(scope="module")
def detect_setup(tmp_path_factory):
    """A random-weight model, a folder with 4 videos and a broken file, and one process's
    detections of it (the reference)."""
    root = tmp_path_factory.mktemp("detect")
    random_model(root / "model")
    folder = root / "videos"
    folder.mkdir()
    for offset, (name, count) in enumerate(VIDEO_FRAMES.items()):
        frames = numbered_frames(count + 40 * offset, 64, 48)[40 * offset :]
        write_video(folder / f"{name}.mp4", frames, 25, "libx264")
    (folder / "broken.mp4").write_text("not a video")
    detector = Detector.load(root / "model", **SETTINGS)
    result = detect_videos(detector, find_videos([folder]), quiet=True)
    write_results(result, root / "one.json", MODEL_CLASSES, root / "one_windows.csv")
    assert len(result.detections) == 4 and len(result.failures) == 1
    return root


def test_two_processes_detect_what_one_does(detect_setup):
    root = detect_setup
    out = root / "two.json"
    argv = ["detect", str(root / "videos"), "--model", str(root / "model"), "-o", str(out)]
    argv += ["--proposal-threshold", "0.3", "--save-windows", str(root / "two_windows.csv")]
    done = torchrun(*argv)
    # Rank 0 exits with EXIT_SOME_FAILED (3): torchrun reports it and exits with 1.
    assert done.returncode == 1 and re.search(r"exitcode\s*:\s*3\b", done.stderr), done.stderr
    assert "broken.mp4" in done.stderr  # reported by rank 0, not fatal
    assert json.loads(out.read_text()) == json.loads((root / "one.json").read_text())
    assert (root / "two_windows.csv").read_text() == (root / "one_windows.csv").read_text()
    records = {p.stem: json.loads(p.read_text()) for p in parts_dir(out).glob("*.json")}
    assert sorted(records) == ["a", "b", "broken", "c", "d"]
    assert records["broken"]["status"] == "failed"
    windows = sorted(p.name for p in parts_dir(out).glob("*.windows.csv"))
    assert windows == [f"{name}.windows.csv" for name in "abcd"]  # none for the broken file


def test_killed_sharded_detection_resumes_without_redoing_videos(detect_setup, monkeypatch):
    root = detect_setup
    videos = find_videos([root / "videos"])
    detector = Detector.load(root / "model", **SETTINGS)
    out = root / "resumed.json"
    calls: list[str] = []
    real_score_windows = Detector.score_windows

    def killed_on_the_third_video(self, video, progress=None, total_frames=None, background=True):
        calls.append(Path(video).stem)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies here: nothing of this video is written
        return real_score_windows(self, video, progress, total_frames, background)

    monkeypatch.setattr(Detector, "score_windows", killed_on_the_third_video)
    with pytest.raises(KeyboardInterrupt):
        detect_sharded(detector, videos, out, quiet=True)
    assert not out.exists()
    finished = sorted(p.stem for p in parts_dir(out).glob("*.json"))
    first_two = calls[:2]
    assert set(first_two) <= set(finished) and calls[2] not in finished

    calls.clear()
    monkeypatch.setattr(Detector, "score_windows", counting(real_score_windows, calls))
    result = detect_sharded(detector, videos, out, quiet=True)
    assert sorted(calls) == sorted(set(VIDEO_FRAMES) - set(first_two))  # no video twice
    assert list(result.failures) == [str(root / "videos" / "broken.mp4")]
    assert json.loads(out.read_text()) == json.loads((root / "one.json").read_text())

    calls.clear()  # everything done: a re-run only merges
    assert detect_sharded(detector, videos, out, quiet=True).detections == result.detections
    assert calls == []


def counting(function, calls: list[str]):
    def counted(self, video, progress=None, total_frames=None, background=True):
        calls.append(Path(video).stem)
        return function(self, video, progress, total_frames, background)

    return counted


def test_a_record_without_its_windows_is_done_again(detect_setup, monkeypatch):
    root = detect_setup
    videos = find_videos([root / "videos"])
    detector = Detector.load(root / "model", **SETTINGS)
    out = root / "lost.json"
    detect_sharded(detector, videos, out, quiet=True)
    (parts_dir(out) / "a.windows.csv").unlink()
    calls: list[str] = []
    monkeypatch.setattr(Detector, "score_windows", counting(Detector.score_windows, calls))
    detect_sharded(detector, videos, out, quiet=True)
    assert calls == ["a"]
    assert (root / "lost.json").read_text() == (root / "one.json").read_text()


def test_sigkilled_torchrun_detection_resumes_without_redoing_videos(
    detect_setup, monkeypatch, tmp_path
):
    """SIGKILL the whole torchrun job as its second video starts; the re-run does the rest."""
    root = detect_setup
    out = root / "killed.json"
    pause = Pause(tmp_path / "pause", "scnn.detect:Detector.score_windows", at_call=2)
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1"]
    # One torch thread, as this process (conftest) scores the reference: under torchrun the job
    # would take cores / processes, and another thread count sums floats in another order.
    argv += ["--master-port", str(free_port()), str(pause.script), "--threads", "1", "--quiet"]
    argv += ["detect"]
    argv += [str(root / "videos"), "--model", str(root / "model"), "-o", str(out)]
    argv += ["--proposal-threshold", "0.3"]
    job = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.DEVNULL)
    worker = pause.wait(job)
    os.killpg(job.pid, signal.SIGKILL)  # torchrun and its group
    os.kill(worker, signal.SIGKILL)  # the worker, which torchrun starts in a session of its own
    job.wait()
    recorded = {p.stem: p.stat().st_mtime_ns for p in parts_dir(out).glob("*.json")}
    assert not out.exists() and 0 < len(set(recorded) & set(VIDEO_FRAMES)) < len(VIDEO_FRAMES)

    calls: list[str] = []
    monkeypatch.setattr(Detector, "score_windows", counting(Detector.score_windows, calls))
    detector = Detector.load(root / "model", **SETTINGS)
    detect_sharded(detector, find_videos([root / "videos"]), out, quiet=True)
    assert sorted(calls) == sorted(set(VIDEO_FRAMES) - set(recorded))
    for name in set(recorded) & set(VIDEO_FRAMES):  # finished records are left as they were
        assert (parts_dir(out) / f"{name}.json").stat().st_mtime_ns == recorded[name]
    assert json.loads(out.read_text()) == json.loads((root / "one.json").read_text())


def test_a_record_of_another_video_of_the_same_name_is_not_used(
    detect_setup, tmp_path, monkeypatch
):
    root = detect_setup
    detector = Detector.load(root / "model", **SETTINGS)
    (tmp_path / "other").mkdir()
    other = tmp_path / "other" / "a.mp4"
    shutil.copyfile(root / "videos" / "b.mp4", other)
    out = tmp_path / "out.json"
    detect_sharded(detector, [root / "videos" / "a.mp4"], out, quiet=True)
    calls: list[str] = []
    monkeypatch.setattr(Detector, "score_windows", counting(Detector.score_windows, calls))
    detect_sharded(detector, [other], out, quiet=True)
    assert calls == ["a"]
    reference = json.loads((root / "one.json").read_text())["results"]["b"]
    assert json.loads(out.read_text())["results"]["a"] == reference
