"""Live detection with a boundary network: at the end of a stream exactly the offline
detections, whatever the offsets (those beyond postprocess.MAX_WINDOW_OFFSET held to it), the
decoded chunks and the batches; a window not scored yet is judged wherever it can land."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from tiny import small_model, with_boundaries, with_boundary_clips
from videos import numbered_frames, write_video

from scnn import runtime
from scnn.detect import Detector
from scnn.live import (
    Candidate,
    LiveNms,
    exposed,
    latency_bound_frames,
    live_detections,
)
from scnn.modelfile import load_model, save_model
from scnn.postprocess import MAX_WINDOW_OFFSET, postprocess, window_segments_s
from scnn.records import Detection, ScoredWindows
from scnn.video import CHUNK_FRAMES, video_name
from scnn.windows import WindowConfig, Windows, temporal_iou, window_grid

SETTINGS = {"proposal_threshold": 0.0, "precision": "fp32"}  # every window reaches both networks
FPS = 25
NUM_FRAMES = 900  # 36 s
BACKGROUND_BIAS = 16.0  # about half of the windows background (tests/test_boundaries.py)
# start and end offsets, fractions of the window's length: inside the bound, to the left, to
# the right, and beyond it at both ends (held to ±MAX_WINDOW_OFFSET: the window triples)
OFFSETS = [(0.25, -0.125), (-0.75, -0.5), (0.5, 0.875), (-3.0, 2.5)]
# (frames per decoded chunk, batch size): the default, small chunks unbatched, odd ones
READS = [(CHUNK_FRAMES, None), (64, 1), (100, 3)]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The small model without a boundary network, half of its windows background."""
    path = small_model(tmp_path_factory.mktemp("models") / "plain")
    model = load_model(path)
    with torch.no_grad():
        model.localization.fc8.bias[0] = BACKGROUND_BIAS
    save_model(path, model)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(5)
    frames = numbered_frames(NUM_FRAMES, 64, 48)
    frames = frames // 2 + rng.integers(0, 128, (NUM_FRAMES // 25, 1, 1, 3)).repeat(25, 0)
    return write_video(tmp_path_factory.mktemp("videos") / "cam.mp4", frames.astype(np.uint8))


def live_and_offline(detector, video, chunk_frames, monkeypatch):
    """The live detections of ``video`` and the offline ones, named as live names them, both
    read in chunks of ``chunk_frames`` (on a CPU both read runtime.CPU_CHUNK_FRAMES): the
    windows a chunk completes are queued by length, so the chunks decide which clips share a
    batch, and a clip's scores can differ in their last digits from one batch to another
    (fp32, batch 3: 0.47665872 against 0.47665889)."""
    monkeypatch.setattr(runtime, "CPU_CHUNK_FRAMES", chunk_frames)
    live = [found.detection for found in live_detections(detector, video)]
    offline = [dataclasses.replace(d, video=video_name(video)) for d in detector(video)]
    return live, offline


@pytest.mark.parametrize("offsets", OFFSETS)
def test_live_gives_the_offline_detections_with_a_boundary_network(
    plain, video, offsets, tmp_path, monkeypatch
):
    detector = Detector.load(with_boundaries(plain, tmp_path / "moved", offsets), **SETTINGS)
    unmoved = Detector.load(plain, **SETTINGS)(video)
    for chunk_frames, batch_size in READS:
        run = detector if batch_size is None else detector.with_settings(batch_size=batch_size)
        live, offline = live_and_offline(run, video, chunk_frames, monkeypatch)
        assert len(offline) > 10 and offline != unmoved
        assert len(live) == len(offline) and set(live) == set(offline), (chunk_frames, offsets)
    # each end moves by its offset × the window's length, held to the window's segment
    lengths = set()
    for length in detector.model.windows.lengths_frames:
        most = MAX_WINDOW_OFFSET * (length - 1) / FPS
        start, end = (float(np.clip(o * length / FPS, -most, most)) for o in offsets)
        lengths.add((length - 1) / FPS + end - start)
    for found in offline:
        assert any(math.isclose(found.end_s - found.start_s, n) for n in lengths)


def test_live_with_a_boundary_network_and_boundary_clips_gives_the_offline_detections(
    plain, video, tmp_path, monkeypatch
):
    moved = with_boundaries(plain, tmp_path / "moved", (-0.75, -0.5))
    detector = Detector.load(with_boundary_clips(moved, tmp_path / "both", (0.25, -0.125)),
                             **SETTINGS)  # fmt: skip
    for chunk_frames in (CHUNK_FRAMES, 64):
        live, offline = live_and_offline(detector, video, chunk_frames, monkeypatch)
        assert len(offline) > 10
        assert len(live) == len(offline) and set(live) == set(offline)


def test_each_detection_is_final_within_the_bound_with_a_boundary_network(plain, video, tmp_path):
    detector = Detector.load(with_boundaries(plain, tmp_path / "m", (0.25, -0.25)), **SETTINGS)
    one = detector.with_settings(batch_size=1)
    windows, nms_iou = one.model.windows, one.model.nms_threshold
    chunk_frames = runtime.chunk_frames_for(one.device)  # as live reads the stream
    bound = latency_bound_frames(windows, nms_iou, chunk_frames, 1, MAX_WINDOW_OFFSET)
    assert latency_bound_frames(windows, nms_iou, chunk_frames, 1) < bound
    for found in live_detections(one, video):
        assert found.frames_seen - found.detection.end_s * FPS <= bound or found.chained


def segment(start_s: float, end_s: float) -> np.ndarray:
    return np.array([[start_s, end_s]])


def test_exposure_known_answers_just_inside_and_just_outside():
    """An unscored grid window [10, 20] (length 10) whose ends may move 10 each way. A
    candidate [0, 5]: the window's nearest landing is [0, 10], IoU 5/10 = 0.5; [0, 4]: 4/10.
    A candidate [2, 32] (30 s): the nearest landing is [2, 30], IoU 28/30 > 0.9."""
    unscored = segment(10.0, 20.0)
    assert exposed(segment(0.0, 5.0), unscored, 0.49, 1.0)
    assert not exposed(segment(0.0, 5.0), unscored, 0.51, 1.0)
    assert exposed(segment(0.0, 4.0), unscored, 0.399, 1.0)
    assert not exposed(segment(0.0, 4.0), unscored, 0.401, 1.0)
    assert exposed(segment(2.0, 32.0), unscored, 0.93, 1.0)
    assert not exposed(segment(2.0, 32.0), unscored, 0.94, 1.0)
    # half the move: the nearest landing of [10, 20] to [0, 5] is [5, 15], no overlap
    assert not exposed(segment(0.0, 5.0), unscored, 0.01, 0.5)
    # no boundary network: the grid's place alone, IoU([12, 20], [10, 20]) = 0.8
    assert exposed(segment(12.0, 20.0), unscored, 0.79, 0.0)
    assert not exposed(segment(12.0, 20.0), unscored, 0.8, 0.0)
    assert not exposed(segment(0.0, 5.0), unscored, 0.01, 0.0)
    # a class whose windows were all forgotten: nothing to judge
    assert exposed(np.zeros(0), unscored, 0.4, 1.0).shape == (0,)


@pytest.mark.parametrize("seed", range(4))
def test_exposure_is_the_largest_iou_of_any_landing(seed):
    """Candidates and landings on one lattice of 0.1 s: the largest IoU of every landing of
    the window [15, 23] (ends moved up to 8 s) is over the threshold exactly when exposed."""
    rng = np.random.default_rng(seed)
    candidates = np.sort(rng.choice(400, (300, 2), replace=True), axis=1) / 10
    candidates = candidates[candidates[:, 0] < candidates[:, 1]]
    moves = np.arange(-80, 81) / 10
    starts, ends = np.meshgrid(15.0 + moves, 23.0 + moves)
    landings = np.stack([starts.ravel(), ends.ravel()], axis=1)
    landings = landings[landings[:, 0] < landings[:, 1]]
    best = temporal_iou(candidates, landings).max(axis=1)
    for threshold in (0.2, 0.4, 0.7):
        answer = exposed(candidates, segment(15.0, 23.0), threshold, 1.0)
        assert answer.any() and not answer.all()
        assert not (best > threshold + 1e-9)[~answer].any()  # sound: no landing missed
        assert not (best < threshold - 1e-9)[answer].any()  # tight: one landing reaches it


@pytest.mark.parametrize("seed", range(6))
def test_incremental_nms_with_moved_windows_decides_as_greedy_nms_over_everything(seed):
    """Random labels, scores and offsets (some beyond the bound) on a small grid; windows
    arrive chunk by chunk, some waiting a chunk or two in a queue before they are scored."""
    rng = np.random.default_rng(seed)
    config, chunk, frames = WindowConfig((16, 32, 64)), 40, 1200
    grid = window_grid(frames, config)
    n = len(grid)
    labels = rng.integers(0, 3, n)
    scores = rng.integers(1, 6, n) / 5.0
    offsets = rng.uniform(-1.3, 1.3, (n, 2)) * (labels > 0)[:, None]
    windows = ScoredWindows.of_frames("v", grid.length_frames, grid.start_frame, grid.end_frame,
                                      25, labels, scores, ("a", "b"), offsets)  # fmt: skip
    segments = window_segments_s(windows)
    offline = postprocess(windows, 0.3)
    scored_at = grid.end_frame + chunk * rng.integers(0, 3, n)  # some wait in a queue
    nms, live, most = LiveNms(0.3, config, 25, MAX_WINDOW_OFFSET), [], 0
    before = 0
    for seen in [*range(chunk, frames + chunk, chunk), math.inf]:
        arrived = np.flatnonzero((scored_at <= seen) & (scored_at > before) & (labels > 0))
        before = seen
        for row in arrived:
            detection = Detection("v", float(segments[row, 0]), float(segments[row, 1]),
                                  "ab"[labels[row] - 1], float(scores[row]))  # fmt: skip
            nms.add(Candidate(detection, int(row), int(grid.start_frame[row]),
                              int(grid.end_frame[row])))  # fmt: skip
        made = (grid.end_frame <= seen) & (scored_at > seen)
        waiting = Windows(grid.length_frames[made], grid.start_frame[made], grid.end_frame[made])
        decoded = None if seen == math.inf else min(seen, frames)
        live += [candidate.detection for candidate in nms.settle(decoded, waiting)]
        most = max(most, len(nms))
    assert sorted(live, key=str) == sorted(offline, key=str) and len(live) == len(set(live))
    assert most < len(window_grid(8 * 64, config))  # flat: a few longest windows' worth
