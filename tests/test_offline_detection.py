"""The accuracy studies' offline detection: the oracle by hand, and stored window scores
post-processed offline against the streaming Detector."""

import numpy as np
import pytest
import torch
from offline_detection import (
    detect_offline,
    grid_of_videos,
    map_table,
    nms_threshold,
    oracle_windows,
    scored_windows,
    softmax,
    window_logits,
)
from tiny import MODEL_CLASSES as CLASSES
from tiny import MODEL_CLIP as CLIP
from tiny import random_model
from videos import numbered_frames, write_video

from scnn.dataset import FrameCache
from scnn.detect import Detector
from scnn.postprocess import postprocess
from scnn.records import GroundTruth, Instance
from scnn.video import read_frames
from scnn.windows import WINDOW_LENGTHS_FRAMES, WindowConfig

SHORT = WindowConfig(lengths_frames=(16, 32))


def test_oracle_labels_each_window_with_its_best_instance_and_iou():
    # 64 frames; 16-frame windows start at 1, 5, ..., 49 (13), 32-frame ones at 1, 9, 17, 25, 33
    grid = grid_of_videos({"v": 64}, SHORT, 25.0)
    gt = GroundTruth(CLASSES, (Instance("v", 0.04, 0.64, "Run"), Instance("v", 1.8, 2.4, "Jump")))
    windows = oracle_windows(grid, gt)
    by_window = {
        (int(length), int(start)): (int(label), float(score))
        for length, start, label, score in zip(
            windows.window_frames,
            windows.start_frame,
            windows.label_index,
            windows.score,
            strict=True,
        )
    }
    assert len(windows) == 13 + 5
    assert by_window[(16, 1)] == (2, 1.0)  # frames 1..16 = 0.04..0.64 s: the Run instance
    # 0.2..0.8 s vs 0.04..0.64 s: 0.44 / 0.76
    assert by_window[(16, 5)][0] == 2
    assert by_window[(16, 5)][1] == pytest.approx(0.44 / 0.76)
    # 1.32..1.92 s: misses Run, overlaps Jump 1.8..2.4 by 0.12 of 1.08
    assert by_window[(16, 33)][0] == 1
    assert by_window[(16, 33)][1] == pytest.approx(0.12 / 1.08)
    assert by_window[(16, 45)] == (1, 1.0)  # 1.8..2.4 s exactly
    # 0.36..1.6 s: overlaps Run by 0.28 s of the 1.56 s hull, Jump not at all
    assert by_window[(32, 9)][0] == 2
    assert by_window[(32, 9)][1] == pytest.approx(0.28 / 1.56)
    assert by_window[(16, 21)][0] == 0  # 0.84..1.44 s: no instance


def test_scored_windows_keep_and_argmax():
    grid = grid_of_videos({"a": 20, "b": 24}, SHORT, 25.0)  # a: starts 1, 5; b: 1, 5, 9
    probabilities = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.2, 0.6, 0.1],
            [0.2, 0.5, 0.2, 0.1],
            [0.1, 0.1, 0.1, 0.7],
            [0.4, 0.3, 0.2, 0.1],
        ]
    )
    keep = np.array([True, True, False, True, True])
    windows = scored_windows(grid, probabilities, CLASSES, keep)
    assert windows.videos.tolist() == ["a", "a", "b", "b"]
    assert windows.start_frame.tolist() == [1, 5, 5, 9]
    assert windows.label_index.tolist() == [0, 2, 3, 0]
    assert windows.score.tolist() == pytest.approx([0.7, 0.6, 0.7, 0.4])
    assert np.allclose(windows.end_s, (windows.start_frame + 15) / 25)


def test_nms_rule():
    assert nms_threshold(None, 0.3) == 0.2
    assert nms_threshold(None, 0.1) == 0.0
    assert nms_threshold(0.4, 0.7) == 0.4


def test_oracle_finds_every_instance_at_every_iou_when_instances_are_windows():
    # Instances that are exactly grid windows: the oracle ranks them first (score 1), NMS at
    # IoU - 0.1 suppresses their neighbours, so AP is 1 at every threshold.
    grid = grid_of_videos({"v": 200}, SHORT, 25.0)
    gt = GroundTruth(
        CLASSES,
        (Instance("v", 0.04, 0.64, "Run"), Instance("v", 4.2, 5.44, "Jump")),
        videos=("v",),
    )
    table = map_table(gt, oracle_windows(grid, gt), None, None)
    assert table["scnn"] == pytest.approx([1.0] * 7)
    assert table["activitynet"] == pytest.approx([1.0] * 7)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    table = np.random.default_rng(0).uniform(0.05, 1.0, (6, len(CLASSES)))
    prior = dict(zip(WINDOW_LENGTHS_FRAMES, table / table.sum(axis=0), strict=True))
    return random_model(tmp_path_factory.mktemp("model"), prior=prior)


def test_offline_post_processing_equals_the_detector(model_dir, tmp_path):
    video = tmp_path / "clip.mp4"
    rng = np.random.default_rng(1)
    frames = numbered_frames(300, 64, 48)
    write_video(video, (frames // 2 + rng.integers(0, 128, (1, 1, 1, 3))).astype(np.uint8))
    detector = Detector.load(model_dir, precision="fp32", nms_threshold=0.3)

    cached = FrameCache(tmp_path / "cache", CLIP.frame_size).frames("clip", video)
    grid = grid_of_videos({"clip": len(cached)}, WindowConfig(), 25.0)
    device = torch.device("cpu")
    networks = detector.networks
    p_action = softmax(window_logits(networks.proposal, grid, {"clip": cached}, CLIP, device))
    classes = softmax(window_logits(networks.localization, grid, {"clip": cached}, CLIP, device))
    threshold = float(np.median(p_action[:, 1]))
    windows = scored_windows(grid, classes, CLASSES, p_action[:, 1] >= threshold)
    offline = postprocess(windows, 0.3, prior=detector.model.prior)

    online = detector.with_settings(proposal_threshold=threshold)(video)
    assert 0 < len(online) < len(grid)
    assert [(d.start_s, d.end_s, d.label) for d in offline] == [
        (d.start_s, d.end_s, d.label) for d in online
    ]
    assert [d.score for d in offline] == pytest.approx([d.score for d in online], abs=1e-5)


def test_detect_offline_is_the_detectors_with_voting_and_with_float32_scores(video, tmp_path):
    detector = Detector.load(random_model(tmp_path / "model", vote_iou=0.4), precision="fp32")
    model = detector.model
    frames = read_frames(video, size=model.clip.frame_size)
    grid = grid_of_videos({"clip one": len(frames)}, model.windows, model.fps)
    logits = {
        name: window_logits(network, grid, {"clip one": frames}, model.clip, torch.device("cpu"))
        for name, network in (("proposal", model.proposal), ("localization", model.localization))
    }
    p_action = torch.softmax(torch.from_numpy(logits["proposal"]), dim=1)[:, 1].unique()
    # halfway between two windows' P(action) near the median, so that none lies within the
    # last bits that a batch's size can move (a partial batch sums in another order)
    half = float(p_action[len(p_action) // 2 - 1 : len(p_action) // 2 + 1].mean())
    # the CPU model's settings (no proposal network, voting), and S-CNN's release (a proposal
    # threshold, float32 scores, no voting)
    for threshold, float64, vote_iou in ((0.0, True, 0.4), (half, False, None)):
        online = detector.with_settings(
            proposal_threshold=threshold, vote_iou=vote_iou or 0.0, nms_threshold=0.4
        )(video)
        offline = detect_offline(
            grid,
            logits["localization"],
            logits["proposal"],
            CLASSES,
            0.4,
            threshold,
            float64,
            vote_iou,
        )
        assert len(online) > 5
        assert [(d.label, d.start_s, d.end_s) for d in offline] == [
            (d.label, d.start_s, d.end_s) for d in online
        ]
