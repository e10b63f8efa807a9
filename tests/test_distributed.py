"""Many processes: sharding helpers, 2 gloo processes under torchrun against one process for
training (same weights) and detection (same detections), and a killed detection resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import MODEL_CLASSES, SYNTH, TINY, random_model, toml_text
from videos import numbered_frames, write_video

from scnn import cli, dataset
from scnn.detect import Detector, detect_sharded, detect_videos, parts_dir, write_results
from scnn.distributed import (
    DrawPositions,
    World,
    shard_by_duration,
    threads_per_process,
    world_from_env,
)
from scnn.errors import ScnnError
from scnn.synth import generate
from scnn.video import find_videos

# --- the helpers, with hand-computed answers ---------------------------------------------


def test_world_from_torchrun_environment():
    assert world_from_env({}) is None
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    world = world_from_env(env)
    assert world == World(rank=3, size=4, local_rank=1, local_size=2) and not world.is_main
    with pytest.raises(ScnnError, match="RANK 4 is outside WORLD_SIZE 4"):
        world_from_env({**env, "RANK": "4"})
    assert threads_per_process(World(0, 2, 0, 2), cpu_count=2) == 1
    assert threads_per_process(World(0, 8, 0, 8), cpu_count=2) == 1
    assert threads_per_process(World(0, 16, 3, 8), cpu_count=96) == 12


def test_draw_positions_of_two_ranks_make_up_the_global_batch():
    # Global batch 6 from step 1 (resumed) to step 3: one process draws 6..17.
    ranks = [list(DrawPositions(1, 3, 6, World(r, 2, r, 2))) for r in range(2)]
    assert ranks == [[6, 7, 8, 12, 13, 14], [9, 10, 11, 15, 16, 17]]
    assert list(DrawPositions(1, 3, 6)) == list(range(6, 18))
    assert len(DrawPositions(1, 3, 6, World(1, 2, 1, 2))) == 6
    three = [list(DrawPositions(0, 1, 6, World(r, 3))) for r in range(3)]
    assert three == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ScnnError, match="batch_size 6 .* not divisible by the 4 processes"):
        DrawPositions(0, 1, 6, World(0, 4))


def test_shard_by_duration_greedy_longest_first():
    # 10→A; 7→B; 6→B (7 < 10); 5→A (10 < 13); 2→B (13 < 15). Totals 15 and 15.
    assert shard_by_duration([10, 7, 6, 5, 2], 2) == [[0, 3], [1, 2, 4]]
    assert shard_by_duration([3, 3, 3], 2) == [[0, 2], [1]]  # ties go to the lower shard
    assert shard_by_duration([1.0], 3) == [[0], [], []]
    assert shard_by_duration([], 2) == [[], []]


# --- torchrun on localhost ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*args: str, processes: int = 2, timeout_s: float = 120) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node N -m scnn ARGS`` on localhost (gloo, 1 thread each)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(processes),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "scnn",
        "--quiet",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )


# The shared tiny config, changed where these tests depend on it: 4 steps, logged each step
# and checkpointed every 2 (the resume test stops in step 3), a smaller validation set, and
# no batch norm: on CPU (gloo) each rank would normalise with its own half-batch statistics;
# fp32: bf16 rounds each half-batch's activations differently from the whole batch's.
TINY_TOML = toml_text(
    {
        **TINY,
        "amp": False,
        "steps": 4,
        "log_every": 1,
        "checkpoint_every": 2,
        "model": {**TINY["model"], "batch_norm": False},
        "data": {"val_samples": 16},
    }
)
# Float sums in another order (DDP averages two half-batch gradients); AdamW then scales
# each step to about lr, so weights may differ by a few lr-sized ulps: 1e-5 absolute.
WEIGHTS_ATOL = 1e-5


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory):
    """The synthetic dataset, a config file, and one process's proposal training (the
    reference; it also fills the frame cache the other runs share)."""
    root = tmp_path_factory.mktemp("dist")
    generate(root / "synth", SYNTH, quiet=True)
    (root / "tiny.toml").write_text(TINY_TOML)
    assert cli.main(train_argv(root, root / "one")) == 0
    return root


def train_argv(root: Path, out: Path) -> list[str]:
    return [
        "--quiet",
        "train",
        str(root / "synth"),
        "--out",
        str(out),
        "--config",
        str(root / "tiny.toml"),
        "--stage",
        "proposal",
        "--cache-dir",
        str(root / "cache"),
    ]


def assert_same_weights(first: Path, second: Path) -> None:
    one = load_file(first / "proposal" / "weights.safetensors")
    two = load_file(second / "proposal" / "weights.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=WEIGHTS_ATOL)


def test_two_gloo_processes_train_the_weights_of_one(run_setup):
    root = run_setup
    done = torchrun(*train_argv(root, root / "two")[1:])
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(root / "one", root / "two")
    saved = json.loads((root / "two" / "config.json").read_text())
    assert (saved["batch_size"], saved["processes"], saved["batch_per_process"]) == (8, 2, 4)
    assert saved["lr"] == 3e-3
    records = (root / "two" / "proposal" / "log.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [1, 2, 3, 4]  # rank 0 alone logs
    one_log = (root / "one" / "proposal" / "log.jsonl").read_text().splitlines()
    for mine, theirs in zip(records, one_log, strict=True):  # the loss of the global batch
        assert json.loads(mine)["loss"] == pytest.approx(json.loads(theirs)["loss"], abs=1e-5)


def test_resume_with_another_number_of_processes(run_setup, monkeypatch):
    """Ctrl-C one process during step 3 (checkpoint at 3), resume with 2 processes."""
    root = run_setup
    real_getitems = dataset.ClipDataset.__getitems__

    def ctrl_c_during_step_3(self, indices):
        if self.train and 2 * 8 + 1 in indices:
            os.kill(os.getpid(), signal.SIGINT)
        return real_getitems(self, indices)

    monkeypatch.setattr(dataset.ClipDataset, "__getitems__", ctrl_c_during_step_3)
    assert cli.main(train_argv(root, root / "resumed")) == cli.EXIT_INTERRUPTED
    checkpoint = torch.load(root / "resumed" / "proposal" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 3
    done = torchrun(*train_argv(root, root / "resumed")[1:], "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(root / "one", root / "resumed")
    steps = [json.loads(r)["step"] for r in (root / "resumed/proposal/log.jsonl").open()]
    assert steps == [1, 2, 3, 4]  # step 4 by the two processes, after 1-3 by one


# --- sharded detection ----------------------------------------------------------------------

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


def test_killed_sharded_detection_resumes_without_redoing_videos(detect_setup, monkeypatch):
    root = detect_setup
    videos = find_videos([root / "videos"])
    detector = Detector.load(root / "model", **SETTINGS)
    out = root / "resumed.json"
    calls: list[str] = []
    real_score_windows = Detector.score_windows

    def killed_on_the_third_video(self, video, progress=None):
        calls.append(Path(video).stem)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies here: nothing of this video is written
        return real_score_windows(self, video, progress)

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
    def counted(self, video, progress=None):
        calls.append(Path(video).stem)
        return function(self, video, progress)

    return counted


def test_sigkilled_torchrun_detection_resumes_without_redoing_videos(detect_setup, monkeypatch):
    """SIGKILL the whole torchrun job once a video is recorded; the re-run does the rest."""
    root = detect_setup
    out = root / "killed.json"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1"]
    argv += ["--master-port", str(free_port()), "-m", "scnn", "--quiet", "detect"]
    argv += [str(root / "videos"), "--model", str(root / "model"), "-o", str(out)]
    argv += ["--proposal-threshold", "0.3"]
    job = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(record(p).get("status") == "done" for p in parts_dir(out).glob("*.json")):
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
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


def record(path: Path) -> dict:
    """A record, or {} while it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
