"""video.py on real files encoded on the spot: resampling to 25 fps, resizing, errors."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from videos import numbered_frames, read_numbers, write_audio, write_video

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
