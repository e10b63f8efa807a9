"""video.py on real files encoded on the spot: resampling to 25 fps, resizing, errors."""

from __future__ import annotations

import ctypes
import math
import os
import struct
import subprocess
import sys
import threading
import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from videos import numbered_frames, read_numbers, write_audio, write_video

from scnn import video, video_source
from scnn.errors import VideoError
from scnn.video import (
    FPS,
    FRAME_SIZE,
    VIDEO_SUFFIXES,
    find_videos,
    iter_frames,
    num_frames,
    probe,
    read_frames,
    video_files,
)
from scnn.windows import WINDOW_LENGTHS_FRAMES

NTSC = Fraction(30000, 1001)


def expected_source_frames(source_times_s: np.ndarray, count: int) -> np.ndarray:
    """Which source frame is on screen at each output time i/25: the last one shown by then."""
    output_times_s = np.arange(count) / FPS
    return np.searchsorted(source_times_s, output_times_s + 1e-6, side="right") - 1


@pytest.mark.parametrize(
    ("name", "codec", "rate", "tick_s"),
    [
        ("h264_30.mp4", "libx264", 30, None),
        ("h264_ntsc.mp4", "libx264", NTSC, None),
        ("vp9_ntsc.webm", "libvpx-vp9", NTSC, 0.001),  # WebM stores times in whole ms
        ("mjpeg_30.avi", "mjpeg", 30, None),
        ("h264_50.mp4", "libx264", 50, None),
        ("h264_25.mp4", "libx264", 25, None),
    ],
)
def test_constant_rate_resampled_to_25_fps(
    tmp_path: Path, name: str, codec: str, rate, tick_s: float | None
) -> None:
    source_count = 90
    path = write_video(tmp_path / name, numbered_frames(source_count), rate, codec)
    duration_s = source_count / rate
    frames = read_frames(path)
    assert frames.shape == (math.floor(duration_s * FPS), 128, 171, 3)
    # 30 fps: output frame i shows source frame floor(1.2 i): 0, 1, 2, 3, 4, 6, 7, ...
    source_times_s = np.array([float(k / Fraction(rate)) for k in range(source_count)])
    if tick_s is not None:
        source_times_s = np.round(source_times_s / tick_s) * tick_s
    expected = expected_source_frames(source_times_s, len(frames))
    assert read_numbers(frames).tolist() == expected.tolist()


def test_30_fps_drops_every_sixth_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", numbered_frames(30), 30)
    assert read_numbers(read_frames(path)).tolist() == [
        0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28
    ]  # fmt: skip


def test_variable_frame_rate_follows_timestamps(tmp_path: Path) -> None:
    pts_ms = [0, 40, 80, 200, 240, 500, 520, 540, 900, 1000]
    path = write_video(tmp_path / "vfr.mkv", numbered_frames(10), 25, pts_ms=pts_ms)
    frames = read_frames(path)
    # output i at 40 i ms; frame 5 (500 ms) is replaced by frame 6 before the next output
    # (520 ms); the last frame lasts 40 ms, so the video ends at 1.04 s: 26 output frames
    assert read_numbers(frames).tolist() == [
        0, 1, 2, 2, 2, 3, 4, 4, 4, 4, 4, 4, 4, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 8, 9
    ]  # fmt: skip


def test_odd_size_is_resized(tmp_path: Path) -> None:
    path = write_video(tmp_path / "odd.mkv", numbered_frames(20, 317, 239), 25, pix_fmt="yuv444p")
    info = probe(path)
    assert (info.width, info.height) == (317, 239)
    frames = read_frames(path, size=(86, 64))
    assert frames.shape == (20, 64, 86, 3)
    assert read_numbers(frames).tolist() == list(range(20))


def test_chunks_are_consecutive_and_bounded(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", numbered_frames(50), 30)
    chunks = list(iter_frames(path, chunk_frames=16))
    assert [len(c) for c in chunks] == [16, 16, 9]  # 50 frames at 30 fps = 41 frames at 25
    assert read_numbers(np.concatenate(chunks)).tolist() == read_numbers(read_frames(path)).tolist()
    assert all(c.dtype == np.uint8 and c.shape[1:] == (128, 171, 3) for c in chunks)


def test_decoding_holds_no_picture_but_the_latest(tmp_path: Path, monkeypatch) -> None:
    # Each picture goes into its chunk as it is decoded: kept one by one until the chunk was
    # full, a chunk's pictures lay scattered through the heap's free memory
    path = write_video(tmp_path / "v.mp4", numbered_frames(200), 25)
    pictures: list[weakref.ref] = []
    decoded = video._picture

    def picture(*args) -> np.ndarray:
        made = decoded(*args)
        pictures.append(weakref.ref(made))
        return made

    monkeypatch.setattr(video, "_picture", picture)
    numbers, alive = [], []
    for chunk in iter_frames(path, chunk_frames=32, decoder_threads=1):
        numbers.append(read_numbers(chunk[::31]).tolist())
        alive.append(sum(held() is not None for held in pictures))
    assert numbers[:2] == [[0, 31], [32, 63]] and len(numbers) == 7
    assert len(pictures) == 200 and max(alive) <= 1  # at most the one being added


def test_probe_reads_the_container(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.webm", numbered_frames(90), NTSC, "libvpx-vp9")
    info = probe(path)
    assert info.path == str(path)
    assert info.codec == "vp9"
    assert (info.width, info.height) == (64, 48)
    assert info.native_fps == pytest.approx(29.97, abs=0.01)
    assert info.native_frame_count == 90  # WebM records no count: counted from packets
    assert info.duration_s == pytest.approx(3.003, abs=0.002)
    assert num_frames(info) == 75 == len(read_frames(path))


def test_short_video_is_readable_and_reportable(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", numbered_frames(10), 25)
    info = probe(path)
    assert num_frames(info) == 10 < min(WINDOW_LENGTHS_FRAMES)
    assert read_frames(path).shape == (10, FRAME_SIZE[1], FRAME_SIZE[0], 3)


def assert_video_error(path: Path, words: str) -> None:
    with pytest.raises(VideoError) as caught:
        read_frames(path)
    message = str(caught.value)
    assert str(path) in message and words in message and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    assert_video_error(tmp_path / "absent.mp4", "no such file")


def test_directory(tmp_path: Path) -> None:
    assert_video_error(tmp_path, "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    assert_video_error(path, "empty file")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video at all\n" * 20)
    assert_video_error(path, "not a readable video")
    with pytest.raises(VideoError, match="not a readable video"):
        probe(path)


def test_audio_only_file(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "sound.m4a")
    assert_video_error(path, "has no video stream (contains: audio)")


def test_unknown_codec(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.avi", numbered_frames(10), 25, "mjpeg")
    path = tmp_path / "unknown.avi"
    path.write_bytes(good.read_bytes().replace(b"MJPG", b"QQQQ"))  # a FourCC nobody decodes
    assert_video_error(path, "codec unknown")


def test_truncated_file_yields_what_decodes_then_raises(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.webm", numbered_frames(90), 30, "libvpx-vp9")
    path = tmp_path / "cut.webm"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    chunks = []
    with pytest.raises(VideoError, match="truncated: decoding stopped at") as caught:
        for chunk in iter_frames(path, chunk_frames=8):
            chunks.append(chunk)
    assert str(path) in str(caught.value)
    numbers = read_numbers(np.concatenate(chunks))
    assert 0 < len(numbers) < 75
    assert numbers.tolist() == [math.floor(i * 30 / 25) for i in range(len(numbers))]


def test_truncated_mp4_without_index(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", numbered_frames(30), 25)
    path = tmp_path / "cut.mp4"
    path.write_bytes(good.read_bytes()[:-200])  # the index (moov) is written last
    assert_video_error(path, "not a readable video")


def test_every_video_suffix_is_found_in_any_case(tmp_path: Path) -> None:
    videos = [f"v{n}{suffix}" for n, suffix in enumerate(VIDEO_SUFFIXES)] + ["loud.MP4"]
    for name in [*videos, "notes.txt", "v.mp4.part"]:
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in find_videos([tmp_path])] == sorted(videos)
    assert video_files(tmp_path, ["loud", "v1"]) == {
        "loud": tmp_path / "loud.MP4",
        "v1": tmp_path / f"v1{VIDEO_SUFFIXES[1]}",
    }


def test_video_files_names_a_video_without_a_file(tmp_path: Path) -> None:
    (tmp_path / "clip_a.mp4").write_bytes(b"")
    assert video_files(tmp_path, ["clip_a"]) == {"clip_a": tmp_path / "clip_a.mp4"}
    with pytest.raises(VideoError, match="no video file for 'clip_b'"):
        video_files(tmp_path, ["clip_a", "clip_b"])


# ---------------------------------------------------------------- broken and hostile files


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
    monkeypatch.setattr(video_source, "MAX_FRAME_PIXELS", 64 * 48 - 1)
    with pytest.raises(VideoError, match="declared frame size 64x48 is over the 3,071-pixel"):
        probe(path)


def test_pipe_that_never_sends_data_times_out(tmp_path):
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    release = threading.Event()

    def silent_writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # connects, then sends nothing
        release.wait()
        os.close(fd)

    writer = threading.Thread(target=silent_writer, daemon=True)
    writer.start()
    try:  # the writer holds its end open until released: only the timeout can end the read
        with pytest.raises(VideoError, match="no data for 0.5 s") as caught:
            read_frames(fifo, timeout_s=0.5)
    finally:
        release.set()
        writer.join()
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
            timeout=600,
        )
    finally:
        os.chmod(locked, 0o755)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ") and "Permission denied" in result.stdout
    assert result.stdout.count("\n") == 1


def _interleaved(readers: list) -> list[list[np.ndarray]]:
    """Every chunk of each reader, taken one chunk of each reader in turn."""
    chunks: list[list[np.ndarray]] = [[] for _ in readers]
    live = dict(enumerate(readers))
    while live:
        for index, reader in list(live.items()):
            chunk = next(reader, None)
            if chunk is None:
                del live[index]
            else:
                chunks[index].append(chunk)
    return chunks


@pytest.mark.parametrize("batch_packets", [1, 7, 64])
def test_readers_of_one_shared_mp4_get_what_their_own_opens_get(
    tmp_path, monkeypatch, batch_packets
):
    path = write_video(tmp_path / "b_frames.mp4", numbered_frames(900, 64, 48), 25, "libx264")
    whole = read_frames(path, size=(64, 48))
    segments = [(0, 400), (300, 700), (650, None)]  # starts after a seek, overlaps, the end
    monkeypatch.setattr(video_source.SharedFile, "BATCH_PACKETS", batch_packets)
    with video_source.shared_file(path) as shared:
        assert shared is not None
        readers = [
            iter_frames(
                path, size=(64, 48), chunk_frames=50, start_frame=a, stop_frame=b, shared=shared
            )
            for a, b in segments
        ]
        chunks = _interleaved(readers)  # the demuxer moves between readers at every batch
    for (start, stop), got in zip(segments, chunks, strict=True):
        np.testing.assert_array_equal(np.concatenate(got), whole[start:stop])
    assert read_numbers(np.concatenate(chunks[2])).tolist() == list(range(650, 900))


def test_only_an_mp4_whose_pictures_a_new_decoder_reproduces_is_shared(tmp_path):
    frames = numbered_frames(10, 64, 48)
    matroska = write_video(tmp_path / "clip.mkv", frames, 25, "libx264")
    stored = write_video(tmp_path / "stored.mp4", frames, 25)
    portrait = rotate_mp4(  # the turn is the stream's, which a new decoder does not know
        stored, tmp_path / "portrait.mp4", (0, 1 << 16, 0, -1 << 16, 0, 0, 0, 0, 1 << 30)
    )
    with video_source.shared_file(matroska) as shared:
        assert shared is None  # Matroska's index is sparse: each reader opens the file
    with video_source.shared_file(stored) as shared:
        assert shared is not None
    with video_source.shared_file(portrait) as shared:
        assert shared is None
