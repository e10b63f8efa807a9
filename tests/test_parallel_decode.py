"""Decoding a frame range by seeking, and one video by several processes: the same frames as
one whole sequential pass, on real files with keyframes far apart and B-frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from videos import numbered_frames, read_numbers, write_video

from scnn.errors import VideoError
from scnn.parallel_decode import iter_frames_parallel
from scnn.video import iter_frames, read_frames

SIZE = (64, 48)


def write_gop_video(path: Path, count: int, rate, gop: int) -> Path:
    """H.264 with a keyframe every ``gop`` frames and B-frames (decode order ≠ display order)."""
    frames = numbered_frames(count)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"bf": "2", "sc_threshold": "0"}
        for picture in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parallel")
    rng = np.random.default_rng(0)
    pts_ms = np.cumsum(rng.integers(10, 90, 400)) - 10  # irregular gaps, first frame at 0
    return {
        "h264_30fps_gop12": write_gop_video(root / "gop.mp4", 600, 30, 12),
        "h264_ntsc_gop50": write_gop_video(root / "ntsc.mp4", 500, Fraction(30000, 1001), 50),
        "vfr_mkv": write_video(root / "vfr.mkv", numbered_frames(400), 25, pts_ms=pts_ms.tolist()),
        "vp9_webm": write_video(root / "vp9.webm", numbered_frames(300), 30, "libvpx-vp9"),
    }


def whole(path: Path) -> np.ndarray:
    return read_frames(path, size=SIZE)


def frames_of(chunks) -> np.ndarray:
    chunks = list(chunks)
    return np.concatenate(chunks) if chunks else np.zeros((0, SIZE[1], SIZE[0], 3), np.uint8)


@pytest.mark.parametrize("name", ["h264_30fps_gop12", "h264_ntsc_gop50", "vfr_mkv", "vp9_webm"])
def test_a_range_gives_the_frames_of_a_whole_pass(videos, name):
    path = videos[name]
    reference = whole(path)
    total = len(reference)
    ranges = [(0, 50), (7, 60), (100, 101), (123, total - 30), (total - 100, None), (total, None)]
    for start, stop in ranges:
        part = frames_of(iter_frames(path, size=SIZE, start_frame=start, stop_frame=stop))
        assert np.array_equal(part, reference[start:stop]), (name, start, stop)


@pytest.mark.parametrize("name", ["h264_30fps_gop12", "vfr_mkv"])
def test_two_processes_give_the_frames_of_one_pass(videos, name):
    path = videos[name]
    chunks = list(iter_frames_parallel(path, 2, size=SIZE, chunk_frames=64, segment_s=3.0))
    assert max(len(chunk) for chunk in chunks) <= 64
    assert np.array_equal(np.concatenate(chunks), whole(path))
    assert read_numbers(np.concatenate(chunks))[-1] == read_numbers(whole(path))[-1]


def test_a_truncated_file_yields_the_frames_before_the_cut_then_raises(tmp_path, videos):
    data = videos["vp9_webm"].read_bytes()
    path = tmp_path / "cut.webm"
    path.write_bytes(data[: len(data) * 2 // 3])
    sequential, parallel = [], []
    with pytest.raises(VideoError, match="truncated") as one:
        sequential.extend(iter_frames(path, size=SIZE))
    with pytest.raises(VideoError, match="truncated") as two:
        parallel.extend(iter_frames_parallel(path, 2, size=SIZE, segment_s=2.0))
    assert str(two.value) == str(one.value)
    assert np.array_equal(np.concatenate(parallel), np.concatenate(sequential))


def test_one_process_or_a_short_video_gives_the_same_frames(videos):
    path = videos["h264_30fps_gop12"]  # 20 s: shorter than two 60 s segments
    assert np.array_equal(frames_of(iter_frames_parallel(path, 4, size=SIZE)), whole(path))
    assert np.array_equal(
        frames_of(iter_frames_parallel(path, 1, size=SIZE, segment_s=1)), whole(path)
    )
