"""CPU lanes: the split of a long video, and the same windows as one pass."""

import av
import pytest
import torch
from detecting import EVERY_WINDOW, assert_same_windows, long_video
from videos import numbered_frames, write_video

from scnn.detect import Detector
from scnn.errors import VideoError
from scnn.lanes import lane_ends
from scnn.runtime import CPU_CHUNK_FRAMES
from scnn.video import CHUNK_FRAMES, num_frames, probe


@pytest.fixture(scope="module")
def long_path(tmp_path_factory):
    return long_video(tmp_path_factory.mktemp("long") / "long.mp4")


def test_lane_split_of_a_known_frame_count_needs_no_probe(model_dir, tmp_path):
    model = Detector.load(model_dir).model
    not_a_video = tmp_path / "notes.mp4"  # never opened: the caller's frame count is used
    not_a_video.write_text("not a video")
    assert lane_ends(not_a_video, 3, model, total_frames=3250) == [1710, 0]
    assert lane_ends(not_a_video, 2, model, total_frames=2999) == [0]  # under 2 x 60 s
    assert lane_ends(not_a_video, 1, model, total_frames=3250) == [0]


def test_lanes_score_the_same_windows_as_one_pass(model_dir, long_path):
    one = Detector.load(model_dir, lanes=1, **EVERY_WINDOW).score_windows(long_path)
    decoded, threads_in_lanes = [], set()
    lanes = Detector.load(model_dir, lanes=3, **EVERY_WINDOW)
    # 3 asked, room for 2; the first takes a third of the second's 512-frame lead-in more
    assert lane_ends(long_path, 3, lanes.model) == [1710, 0]
    softmax = lanes.networks._softmax

    def counting_softmax(*args):
        threads_in_lanes.add(torch.get_num_threads())
        return softmax(*args)

    lanes.networks._softmax = counting_softmax
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = lanes.score_windows(long_path, progress=decoded.append)
        assert torch.get_num_threads() == 2  # shared out among the lanes, then as before
    finally:
        torch.set_num_threads(threads)
    assert threads_in_lanes == {1}
    assert sum(decoded) == 3250  # the second lane's lead-in frames are not counted twice
    assert_same_windows(one, two, atol=1e-5)


def test_a_cpu_decodes_a_file_in_small_chunks(model_dir, long_path):
    """On a CPU the clips of the windows that end in a chunk are gathered at once: one pass
    and the lanes alike decode CPU_CHUNK_FRAMES at a time, not video.CHUNK_FRAMES."""
    assert CPU_CHUNK_FRAMES < CHUNK_FRAMES
    for lanes in (1, 2):
        decoded = []
        Detector.load(model_dir, lanes=lanes).score_windows(long_path, progress=decoded.append)
        assert max(decoded) == CPU_CHUNK_FRAMES and sum(decoded) == 3250


def test_a_failing_lane_fails_the_video_and_restores_the_threads(model_dir, tmp_path):
    path = tmp_path / "cut.mkv"  # Matroska: the header, with the duration, comes first
    write_video(path, numbered_frames(3250, 64, 48), 25, "libx264")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # the last lane runs into the cut
    threads = torch.get_num_threads()
    detector = Detector.load(model_dir, lanes=2)
    assert lane_ends(path, 2, detector.model) == [1710, 0]  # the header still declares 130 s
    with pytest.raises(VideoError, match=r"cut.mkv: truncated: decoding stopped at 9\d\."):
        detector.score_windows(path)
    assert torch.get_num_threads() == threads


def test_lanes_open_an_mp4_once(model_dir, long_path, monkeypatch):
    """FFmpeg holds an MP4's whole sample index for each open: two lanes open it as one."""
    opened = []
    real_open = av.open

    def counting_open(source, *args, **kwargs):
        opened.append(str(source))
        return real_open(source, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    model = Detector.load(model_dir).model
    total = num_frames(probe(long_path), model.fps)
    opens = {}
    for lanes in (1, 2):
        detector = Detector.load(model_dir, lanes=lanes)
        opened.clear()
        threads = torch.get_num_threads()
        torch.set_num_threads(2)  # room for two lanes
        try:
            detector.score_windows(long_path, total_frames=total)
        finally:
            torch.set_num_threads(threads)
        opens[lanes] = len(opened)
    assert opens == {1: 1, 2: 1}
