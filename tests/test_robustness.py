"""Broken and hostile inputs, interrupted runs, unsafe model files: scnn answers each with one
line naming the file (or a documented exit code), never a library traceback, a hang, lost work
or code run from a file it loads. Every input is made here, in tmp_path."""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import SYNTH as TINY_SYNTH
from tiny import TINY, random_model, toml_text
from videos import numbered_frames, read_numbers, write_audio, write_video

from scnn import cli, stages, train, video
from scnn.clips import ClipConfig
from scnn.config import load_config
from scnn.dataset import FrameCache
from scnn.errors import AnnotationError, ModelError, ScnnError, VideoError
from scnn.formats import load_detections, load_ground_truth
from scnn.model import ModelOptions
from scnn.modelfile import (
    MODEL_JSON,
    PROPOSAL_WEIGHTS,
    load_model,
)
from scnn.records import Instance
from scnn.synth import generate
from scnn.video import iter_frames, probe, read_frames
from scnn.windows import WindowConfig

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- videos


def read_all_or_video_error(path: Path) -> np.ndarray | None:
    """The frames, or None after a one-line VideoError naming the file; nothing else."""
    try:
        return read_frames(path)
    except VideoError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return None


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("kept", [0.02, 0.2, 0.5, 0.8, 0.97])
def test_truncated_files_decode_or_fail_cleanly(tmp_path, suffix, kept):
    good = write_video(tmp_path / f"good{suffix}", numbered_frames(50), 25)
    data = good.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * kept)])
    frames = read_all_or_video_error(cut)
    if frames is not None:  # what did decode is the start of the video, in order
        assert read_numbers(frames).tolist() == list(range(len(frames)))


def test_five_frame_video_reads_and_is_shorter_than_any_window(tmp_path):
    path = write_video(tmp_path / "five.mp4", numbered_frames(5), 25)
    assert read_numbers(read_frames(path)).tolist() == [0, 1, 2, 3, 4]


def test_names_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "mes vidéos"
    folder.mkdir()
    path = write_video(folder / "saut en hauteur – été 日本.mp4", numbered_frames(20), 25)
    assert probe(path).path == str(path)
    assert read_numbers(read_frames(path)).tolist() == list(range(20))


def rotate_mp4(source: Path, target: Path, matrix: tuple[int, ...]) -> Path:
    """Copy an MP4, writing ``matrix`` (16.16 fixed point, 2.30 for the last column) into its
    track header, as a phone does for a video filmed upright."""
    data = bytearray(source.read_bytes())
    tkhd = data.find(b"tkhd")
    assert data[tkhd + 4] == 0  # version 0: the matrix lies 40 bytes after the box type
    data[tkhd + 44 : tkhd + 80] = struct.pack(">9i", *matrix)
    target.write_bytes(bytes(data))
    return target


def test_rotation_metadata_turns_the_picture_upright(tmp_path):
    stored = write_video(tmp_path / "stored.mp4", numbered_frames(10, 64, 48), 25)
    # a=0 b=1 c=-1 d=0: shown turned 90 degrees clockwise (FFmpeg: rotation -90)
    portrait = rotate_mp4(
        stored, tmp_path / "portrait.mp4", (0, 1 << 16, 0, -1 << 16, 0, 0, 0, 0, 1 << 30)
    )
    frames = read_frames(portrait, size=(48, 64))
    assert frames.shape == (10, 64, 48, 3)  # upright: taller than wide
    turned_back = np.rot90(frames, 1, axes=(1, 2))  # undo the clockwise turn
    assert read_numbers(turned_back).tolist() == list(range(10))


@pytest.mark.parametrize("side", [16_000, 30_000])
def test_huge_resolution_in_the_bitstream_fails_cleanly(tmp_path, side):
    path = write_video(tmp_path / "small.avi", numbered_frames(10), 25, "mjpeg")
    data = bytearray(path.read_bytes())
    marker = 0
    while (marker := data.find(b"\xff\xc0", marker + 1)) > 0:  # each JPEG's SOF0 header
        data[marker + 5 : marker + 9] = struct.pack(">2H", side, side)  # height, width
    path.write_bytes(bytes(data))
    with pytest.raises(VideoError, match="decoding failed at 0.00 s"):
        read_frames(path)


def test_declared_frame_size_over_the_limit_is_refused(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.mp4", numbered_frames(10), 25)
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 64 * 48 - 1)
    with pytest.raises(VideoError, match="declared frame size 64x48 is over the 3,071-pixel"):
        probe(path)


def test_pipe_that_never_sends_data_times_out(tmp_path):
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    release = threading.Event()

    def silent_writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # connects, then sends nothing
        release.wait(30)
        os.close(fd)

    writer = threading.Thread(target=silent_writer, daemon=True)
    writer.start()
    started = time.monotonic()
    try:
        with pytest.raises(VideoError, match="no data for 0.5 s") as caught:
            read_frames(fifo, timeout_s=0.5)
    finally:
        release.set()
        writer.join()
    assert time.monotonic() - started < 10  # bounded, not the writer's 30 s
    assert str(fifo) in str(caught.value)


def test_pipe_with_a_video_decodes(tmp_path):
    data = write_video(tmp_path / "v.mkv", numbered_frames(20), 25).read_bytes()
    fifo = tmp_path / "stream.mkv"
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "wb") as handle:
            handle.write(data)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    chunks = list(iter_frames(fifo, timeout_s=5.0))
    thread.join()
    assert read_numbers(np.concatenate(chunks)).tolist() == list(range(20))


UNREADABLE_SCRIPT = """
import sys
from scnn.errors import VideoError
from scnn.video import read_frames
try:
    read_frames(sys.argv[1])
except VideoError as exc:
    print(exc)
"""


def without_root_read_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) from
    the bounding set, so even root obeys permission bits after exec (prctl PR_CAPBSET_DROP)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.parametrize("blocked", ["file", "folder"])
def test_unreadable_file_or_folder(tmp_path, blocked):
    folder = tmp_path / "locked" if blocked == "folder" else tmp_path
    folder.mkdir(exist_ok=True)
    path = write_video(folder / "v.mp4", numbered_frames(5), 25)
    locked = path if blocked == "file" else folder
    os.chmod(locked, 0o000)
    try:
        result = subprocess.run(
            [sys.executable, "-c", UNREADABLE_SCRIPT, str(path)],
            preexec_fn=without_root_read_override if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.chmod(locked, 0o755)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ") and "Permission denied" in result.stdout
    assert result.stdout.count("\n") == 1


# ---------------------------------------------------------------- annotation and detection files


def test_bom_and_crlf_are_read_like_plain_files(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_bytes("\ufeffvideo,start,end,label\r\nv1,1.5,3.0,jump\r\n".encode())
    gt = load_ground_truth(path)
    assert gt.instances == (Instance("v1", 1.5, 3.0, "jump"),)


@pytest.mark.parametrize(
    ("row", "words", "line"),
    [
        ("v1,1.5,3.0", "expected 4 columns, got 3", 3),
        ("v1,soon,3.0,jump", "start is not a number: 'soon'", 3),
        ("v1,nan,3.0,jump", "start is not finite", 3),
        ("v1,1.0,inf,jump", "end is not finite", 3),
        ("v1,-2.0,3.0,jump", "negative start time -2.0", 3),
        ("v1,5.0,3.0,jump", "start 5.0 is not before end 3.0", 3),
        ("v1,1.0,3.0,swim", "unknown class 'swim' in 'v1'", None),
    ],
)
def test_bad_ground_truth_rows_name_file_and_line(tmp_path, row, words, line):
    path = tmp_path / "gt.csv"
    path.write_text(f"video,start,end,label\nv0,0.5,1.0,jump\n{row}\n")
    with pytest.raises(AnnotationError, match=re.escape(words)) as caught:
        load_ground_truth(path, classes=("jump", "run"))
    assert caught.value.path == str(path) and caught.value.line == line


def test_duplicates_and_segments_past_the_end_are_kept_and_counted(tmp_path, caplog):
    path = tmp_path / "gt.json"
    jump = {"segment": [1.0, 2.0], "label": "jump"}
    late = {"segment": [8.0, 12.5], "label": "jump"}  # the video lasts 10 s
    database = {"v1": {"subset": "test", "duration": 10.0, "annotations": [jump, jump, late]}}
    path.write_text(json.dumps({"database": database}))
    with caplog.at_level("WARNING"):
        gt = load_ground_truth(path)
    assert len(gt.instances) == 3
    assert f"{path}: kept 1 duplicate instances" in caplog.text
    assert f"{path}: kept 1 instances that end after their video's duration" in caplog.text


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"database": {"v1": {"annotations": [{"label": "jump"}]}}}, "'segment' must be"),
        ({"database": {"v1": {"annotations": [{"segment": [1, 2]}]}}}, "'label' must be"),
        ({"database": {"v1": {"annotations": {"segment": [1, 2]}}}}, "expected a list"),
        ({"database": ["v1"]}, "no 'database' object"),
        ({"database": {"v1": {"annotations": [{"segment": ["a", 2], "label": "x"}]}}}, "start"),
    ],
)
def test_json_with_missing_keys_or_wrong_types(tmp_path, document, words):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(document))
    with pytest.raises(AnnotationError, match=words) as caught:
        load_ground_truth(path)
    assert caught.value.path == str(path)


def test_empty_files(tmp_path):
    for name in ("det.txt", "det.csv"):
        (tmp_path / name).touch()
        assert load_detections(tmp_path / name) == []
    (tmp_path / "gt.json").touch()
    with pytest.raises(AnnotationError, match="no 'database' object"):
        load_ground_truth(tmp_path / "gt.json")


def test_100_mb_files_fail_fast_with_one_line(tmp_path):
    size = 100 * 2**20
    one_field = tmp_path / "huge.csv"
    with open(one_field, "w") as handle:
        handle.write("video,start,end,label,score\nv1,1,2,jump,")
        handle.write("9" * size)
    with pytest.raises(AnnotationError, match="field larger than field limit") as caught:
        load_detections(one_field)
    assert caught.value.line == 2 and len(str(caught.value)) < 200
    binary = tmp_path / "huge.txt"
    binary.write_bytes(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
    with pytest.raises(AnnotationError, match="not a UTF-8 text file"):
        load_detections(binary)


# ---------------------------------------------------------------- model directories

CLIP = ClipConfig(frame_size=(64, 48), crop_size=32)
OPTIONS = ModelOptions(width=0.0625, dropout=0.0)
WINDOWS = WindowConfig((16, 32))
CLASSES = ("jump", "run")


def write_model(path: Path) -> Path:
    prior = {length: np.full(len(CLASSES), 0.5) for length in WINDOWS.lengths_frames}
    return random_model(
        path, classes=CLASSES, clip=CLIP, options=OPTIONS, windows=WINDOWS, prior=prior
    )


class CreatesAFileWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.pop("fps"), r"malformed model description: KeyError\('fps'\)"),
        (lambda d: d.update(classes=5), "malformed model description"),
        (lambda d: d["thresholds"].update(nms="high"), "malformed model description"),
        (lambda d: d["model"].update(depth=3), "malformed model description"),
    ],
)
def test_model_json_with_missing_keys_or_wrong_types(tmp_path, change, words):
    model = write_model(tmp_path / "model")
    description = json.loads((model / MODEL_JSON).read_text())
    change(description)
    (model / MODEL_JSON).write_text(json.dumps(description))
    with pytest.raises(ModelError, match=words) as caught:
        load_model(model)
    assert str(model / MODEL_JSON) in str(caught.value)


def test_model_json_that_is_not_json(tmp_path):
    model = write_model(tmp_path / "model")
    (model / MODEL_JSON).write_text('{"format_version": 1,')
    with pytest.raises(ModelError, match="malformed model description"):
        load_model(model)


def test_pickle_instead_of_safetensors_weights_is_refused_unrun(tmp_path):
    model = write_model(tmp_path / "model")
    marker = tmp_path / "code_ran"
    torch.save({"conv1.weight": CreatesAFileWhenUnpickled(marker)}, model / PROPOSAL_WEIGHTS)
    with pytest.raises(ModelError, match="cannot read"):
        load_model(model)
    assert not marker.exists()


# ---------------------------------------------------------------- frame cache


def test_damaged_frame_cache_entries_are_rebuilt(tmp_path):
    video = write_video(tmp_path / "v.mp4", numbered_frames(30), 25)
    cache = FrameCache(tmp_path / "cache", (64, 48))
    expected = np.array(cache.frames("v", video))
    entry = cache.path("v")
    whole = entry.read_bytes()
    damaged = [
        whole[: len(whole) // 2],  # data cut short, as a killed non-atomic writer leaves it
        whole[:40],  # header cut short
        b"",
        b"not an npy file at all",
    ]
    for data in damaged:
        entry.write_bytes(data)
        assert np.array_equal(cache.frames("v", video), expected)
        assert entry.read_bytes() == whole
    np.save(entry, np.zeros((30, 24, 32, 3), np.uint8))  # another frame size under this name
    assert np.array_equal(cache.frames("v", video), expected)


# ---------------------------------------------------------------- scnn detect over a batch


def test_detect_batch_goes_on_past_bad_videos_and_lists_them(tmp_path, capsys):
    model = write_model(tmp_path / "model")
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


def test_output_path_that_is_a_folder_is_one_error_line(tmp_path, capsys):
    model = write_model(tmp_path / "model")
    video = write_video(tmp_path / "v.mp4", numbered_frames(20), 25)
    out = tmp_path / "taken.json"
    out.mkdir()
    argv = ["--quiet", "detect", str(video), "--model", str(model), "-o", str(out)]
    assert cli.main(argv) == cli.EXIT_ERROR
    error = capsys.readouterr().err.strip()
    assert error.startswith("scnn: error: ") and str(out) in error and "\n" not in error


# ---------------------------------------------------------------- interrupted training

# The shared tiny problem, changed where this test depends on it: fewer, shorter videos, half
# the batch and two window lengths, as the test trains five times; 40 deterministic steps,
# logged each step and checkpointed every 5, so that a resumed run can equal one run bit for
# bit; dropout, so that the resumed random state matters.
SYNTH = replace(
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
    generate(root / "data", SYNTH, quiet=True)
    (root / "tiny.toml").write_text(TINY_TOML)
    return root / "data", root / "tiny.toml"


def scnn_train(synth_run, out: Path, *extra: str) -> subprocess.Popen:
    data, config = synth_run
    command = [
        sys.executable, "-m", "scnn", "--quiet", "--threads", "1", "train", str(data),
        "--out", str(out), "--config", str(config), "--stage", "proposal", *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO)


def logged_steps(out: Path) -> list[int]:
    log = out / "proposal" / "log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line)["step"] for line in log.read_text().splitlines() if line.strip()]


def wait_for_step(process: subprocess.Popen, out: Path, step: int) -> None:
    deadline = time.monotonic() + 60
    while not any(s >= step for s in logged_steps(out)):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "training did not reach the step in 60 s"
        time.sleep(0.02)


def checkpoint_step(out: Path) -> int:
    state = torch.load(out / "proposal" / "checkpoint.pt", weights_only=True)
    return int(state["step"])


def test_sigint_and_sigkill_then_resume_reach_the_weights_of_one_run(synth_run, tmp_path):
    once = tmp_path / "once"
    assert scnn_train(synth_run, once).wait(timeout=120) == 0
    reference = load_file(once / "proposal" / "weights.safetensors")

    # Ctrl-C: the step under way finishes, is checkpointed, and the command exits with 130.
    interrupted = tmp_path / "sigint"
    process = scnn_train(synth_run, interrupted)
    wait_for_step(process, interrupted, 7)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == cli.EXIT_INTERRUPTED
    assert "scnn: interrupted" in process.stderr.read()
    assert checkpoint_step(interrupted) == max(logged_steps(interrupted))
    assert 7 <= checkpoint_step(interrupted) < 40
    assert not (interrupted / "proposal" / "weights.safetensors").exists()

    # SIGKILL: nothing runs on the way out; only steps since the last checkpoint are lost.
    killed = tmp_path / "sigkill"
    process = scnn_train(synth_run, killed)
    wait_for_step(process, killed, 12)
    process.kill()
    process.wait(timeout=60)
    last_logged = max(logged_steps(killed))
    assert checkpoint_step(killed) % 5 == 0  # a whole checkpoint, never a half-written one
    assert last_logged - 5 <= checkpoint_step(killed) <= last_logged

    for out in (interrupted, killed):
        assert scnn_train(synth_run, out, "--resume").wait(timeout=120) == 0
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
