import csv
import gzip

import numpy as np
import pytest
from conftest import THUMOS14

from scnn.errors import ScnnError
from scnn.windows import (
    LabelConfig,
    WindowConfig,
    Windows,
    label_windows,
    temporal_iou,
    window_grid,
    windows_ending_between,
)


def _windows(*start_end: tuple[int, int]) -> Windows:
    start = np.array([s for s, _ in start_end], dtype=np.int64)
    end = np.array([e for _, e in start_end], dtype=np.int64)
    return Windows(end - start + 1, start, end)


# --- temporal IoU -------------------------------------------------------------------------


def test_temporal_iou_hand_computed():
    a = np.array([[0.0, 10.0], [2.0, 4.0]])
    b = np.array([[5.0, 15.0], [0.0, 10.0], [10.0, 12.0], [3.0, 3.5]])
    expected = np.array(
        [
            [5 / 15, 1.0, 0.0, 0.5 / 10],  # touching at 10 → 0
            [0.0, 2 / 10, 0.0, 0.5 / 2],
        ]
    )
    np.testing.assert_allclose(temporal_iou(a, b), expected)


def test_temporal_iou_is_symmetric_and_shaped():
    rng = np.random.default_rng(0)
    start = rng.uniform(0, 50, size=(7, 1))
    a = np.hstack([start, start + rng.uniform(0.1, 20, size=(7, 1))])
    iou = temporal_iou(a, a[:3])
    assert iou.shape == (7, 3)
    np.testing.assert_allclose(iou, temporal_iou(a[:3], a).T)
    np.testing.assert_allclose(np.diag(iou[:3]), 1.0)


# --- window grid ----------------------------------------------------------------------------


def test_grid_counts_for_a_3268_frame_video():
    windows = window_grid(3268)
    counts = [
        int((windows.length_frames == length).sum()) for length in (16, 32, 64, 128, 256, 512)
    ]
    assert counts == [814, 405, 201, 99, 48, 22]
    assert len(windows) == sum(counts)
    assert windows.end_frame.max() <= 3268
    assert windows.end_frame[windows.length_frames == 16].max() == 3268  # 1 + 813·4 + 15


def test_grid_small_video_by_hand():
    # 40 frames: L=16 stride 4 → starts 1,5,…,25 (25+15 = 40); L=32 stride 8 → starts 1, 9.
    windows = window_grid(40)
    np.testing.assert_array_equal(windows.length_frames, [16] * 7 + [32] * 2)
    np.testing.assert_array_equal(windows.start_frame, [1, 5, 9, 13, 17, 21, 25, 1, 9])
    np.testing.assert_array_equal(windows.end_frame, [16, 20, 24, 28, 32, 36, 40, 32, 40])
    assert windows.start_frame.dtype == np.int64
    np.testing.assert_allclose(windows.segments_s(25.0)[0], [0.04, 0.64])
    np.testing.assert_allclose(windows.segments_s(25.0)[-1], [9 / 25, 40 / 25])


def test_grid_one_frame_short_of_a_window():
    windows = window_grid(39)  # the L=16 window starting at 25 would end at 40
    assert windows.end_frame[windows.length_frames == 16].tolist() == [16, 20, 24, 28, 32, 36]
    assert windows.start_frame[windows.length_frames == 32].tolist() == [1]


@pytest.mark.parametrize("num_frames", [0, 1, 15])
def test_grid_video_shorter_than_16_frames_has_no_windows(num_frames):
    windows = window_grid(num_frames)
    assert len(windows) == 0
    assert windows.segments_s(25.0).shape == (0, 2)


def test_grid_exactly_16_frames_has_one_window():
    windows = window_grid(16)
    assert (windows.start_frame.tolist(), windows.end_frame.tolist()) == ([1], [16])


def test_grid_config_options():
    windows = window_grid(20, WindowConfig(lengths_frames=(10,), overlap=0.5))
    assert windows.start_frame.tolist() == [1, 6, 11]
    with pytest.raises(ScnnError, match="stride"):
        WindowConfig(lengths_frames=(16, 30))  # 30/4 is not a whole number of frames


@pytest.mark.parametrize("config", [WindowConfig(), WindowConfig((8, 32), 0.5)])
def test_windows_ending_between_are_the_grids_windows_ending_there(config):
    for last in range(0, 1200, 37):
        grid = window_grid(last, config)
        for after in range(0, last + 1, 29):
            ending = grid.end_frame > after
            new = windows_ending_between(after, last, config)
            assert new.start_frame.tolist() == grid.start_frame[ending].tolist()
            assert new.length_frames.tolist() == grid.length_frames[ending].tolist()
            assert new.end_frame.tolist() == grid.end_frame[ending].tolist()


def test_grid_matches_the_authors_windows_on_thumos14():
    """Every window the authors scored in video_test_0000004 lies on our grid."""
    durations = {}
    with open(THUMOS14 / "videos_test.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            durations[row["video"]] = float(row["duration_s"])
    theirs = set()
    with gzip.open(THUMOS14 / "scnn_c3d_test_windows.csv.gz", "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["video"] == "video_test_0000004":
                theirs.add(
                    (int(row["window_frames"]), int(row["start_frame"]), int(row["end_frame"]))
                )
    windows = window_grid(int(durations["video_test_0000004"] * 25))
    ours = set(
        zip(
            windows.length_frames.tolist(),
            windows.start_frame.tolist(),
            windows.end_frame.tolist(),
            strict=True,
        )
    )
    assert theirs and theirs <= ours


# --- labelling ------------------------------------------------------------------------------


def test_labels_at_each_threshold():
    # fps = 1 so a window (s, e) is the segment [s, e] seconds: its length is e − s.
    # Instance A = [0, 10], class 3. Window IoUs with A (each side built to be exact):
    windows = _windows(
        (0, 9),  # 9/10 = 0.9 → positive, the best window of A
        (0, 7),  # 7/10 = 0.7 exactly → not > 0.7 → unused
        (0, 3),  # 3/10 = 0.3 exactly → not < 0.3 → unused
        (0, 2),  # 2/10 = 0.2 → background
        (20, 30),  # no overlap → background, IoU 0
        (3, 10),  # 7/10 = 0.7 exactly; not the best of A → unused
    )
    labels = label_windows(windows, np.array([[0.0, 10.0]]), np.array([3]), fps=1.0)
    assert labels.label.tolist() == [3, -1, -1, 0, 0, -1]
    np.testing.assert_array_equal(labels.iou, [0.9, 0.7, 0.3, 0.2, 0.0, 0.7])


def test_best_window_rule_and_its_strict_threshold():
    # Instance B = [100, 110] (class 1): its best window has IoU 0.6 → positive anyway.
    # Instance C = [200, 210] (class 2): its best window has IoU exactly 0.5 → unused.
    windows = _windows(
        (100, 106),  # 6/10 = 0.6, best of B
        (100, 105),  # 0.5 with B, not the best → unused
        (200, 205),  # 5/10 = 0.5 exactly, best of C → not > 0.5 → unused
    )
    segments = np.array([[100.0, 110.0], [200.0, 210.0]])
    labels = label_windows(windows, segments, np.array([1, 2]), fps=1.0)
    assert labels.label.tolist() == [1, -1, -1]
    np.testing.assert_array_equal(labels.iou, [0.6, 0.5, 0.5])


def test_best_window_ties_are_all_positive():
    windows = _windows((0, 6), (4, 10), (20, 36))  # both 6/10 with [0, 10]
    labels = label_windows(windows, np.array([[0.0, 10.0]]), np.array([5]), fps=1.0)
    assert labels.label.tolist() == [5, 5, 0]


def test_positive_takes_the_class_of_the_instance_it_overlaps_most():
    # Window [0, 10]; instances [0, 9] (class 1, IoU 0.9) and [1, 10] (class 2, IoU 0.9)
    # tie; [0.5, 10] (class 4) has IoU 0.95 and wins.
    windows = _windows((0, 10))
    segments = np.array([[0.0, 9.0], [1.0, 10.0], [0.5, 10.0]])
    labels = label_windows(windows, segments, np.array([1, 2, 4]), fps=1.0)
    assert labels.label.tolist() == [4]
    np.testing.assert_allclose(labels.iou, [0.95])


def test_labels_in_seconds_at_25_fps():
    # Window frames 26..50 (L = 25 for the test) → [1.04, 2.0] s; instance [1.0, 2.0] s.
    windows = _windows((26, 50))
    labels = label_windows(windows, np.array([[1.0, 2.0]]), np.array([7]))
    assert labels.label.tolist() == [7]
    np.testing.assert_allclose(labels.iou, [0.96 / 1.0])


def test_labels_without_instances_are_all_background():
    windows = window_grid(100)
    labels = label_windows(windows, np.zeros((0, 2)), np.zeros(0, np.int64))
    assert (labels.label == 0).all() and (labels.iou == 0).all()
    assert len(labels.label) == len(windows)


def test_label_config_thresholds_are_options():
    windows = _windows((0, 7))  # IoU 0.7 with [0, 10]; also its best window, so positive
    labels = label_windows(
        windows,
        np.array([[0.0, 10.0]]),
        np.array([2]),
        fps=1.0,
        config=LabelConfig(best_match_iou=0.8),
    )
    assert labels.label.tolist() == [-1]
    labels = label_windows(
        windows,
        np.array([[0.0, 10.0]]),
        np.array([2]),
        fps=1.0,
        config=LabelConfig(positive_iou=0.6, best_match_iou=0.8),
    )
    assert labels.label.tolist() == [2]
