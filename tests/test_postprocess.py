"""Window-length prior, temporal NMS and windows -> detections."""

import math
import tracemalloc

import numpy as np
import pytest

from scnn.errors import ScnnError
from scnn.postprocess import (
    log_odds,
    nms,
    postprocess,
    reference_nms,
    vote_boundaries,
    window_length_prior,
)
from scnn.records import Instance, ScoredWindows


def test_prior_counts_durations_within_half_to_double_the_window():
    lengths_frames = (25, 100)  # 1 s and 4 s at 25 fps
    instances = [
        Instance("v", 0.0, 0.5, "A"),  # 0.5 s: bin 1.0 only (0.5 <= d <= 2)
        Instance("v", 0.0, 2.0, "A"),  # 2.0 s: both bins (edges inclusive)
        Instance("v", 0.0, 8.0, "A"),  # 8.0 s: bin 4.0 only
        Instance("v", 0.0, 3.0, "B"),  # 3.0 s: bin 4.0 only
        Instance("v", 0.0, 3.0, "Other"),  # not a listed class: ignored
    ]
    prior = window_length_prior(instances, ("A", "B", "C"), lengths_frames)
    assert list(prior) == [25, 100]
    np.testing.assert_allclose(prior[25], [2 / 4, 0.0, 0.5])  # C has no instance: uniform
    np.testing.assert_allclose(prior[100], [2 / 4, 1.0, 0.5])


def test_prior_of_the_authors_lengths_uses_their_duration_bins():
    # 0.3 s fits only the authors' 16-frame bin, 0.6 s (0.3..1.2 s), not 16 / 25 = 0.64 s.
    prior = window_length_prior([Instance("v", 0.0, 0.3, "A")], ("A",))
    assert list(prior) == [16, 32, 64, 128, 256, 512]
    assert [float(prior[length][0]) for length in prior] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_nms_keeps_iou_equal_to_threshold_and_suppresses_above():
    segments = np.array([[0.0, 10.0], [5.0, 15.0], [0.0, 5.0]])
    scores = np.array([0.9, 0.8, 0.7])
    # IoU(0, 1) = 5/15, IoU(0, 2) = 0.5.
    assert nms(segments, scores, 0.5).tolist() == [0, 1, 2]
    assert nms(segments, scores, 0.49).tolist() == [0, 1]
    assert nms(segments, scores, 1 / 3 - 1e-9).tolist() == [0]


def test_nms_picks_the_later_of_equal_scores_first():
    segments = np.array([[0.0, 10.0], [1.0, 10.0]])
    assert nms(segments, np.array([0.5, 0.5]), 0.4).tolist() == [1]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7])
def test_nms_equals_the_plain_loop(seed, threshold):
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, 50, 60).astype(float)
    segments = np.stack([starts, starts + rng.integers(1, 20, 60)], axis=1)
    scores = rng.integers(0, 10, 60) / 10  # many ties
    assert nms(segments, scores, threshold).tolist() == reference_nms(segments, scores, threshold)


def _grid_like(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of a few lengths at quarter-length strides, scores crowding against 1 with
    ties: long NMS chains and many voters per kept window."""
    lengths = rng.choice([0.64, 1.28, 2.56, 5.12], count)
    starts = np.round(rng.integers(0, count // 2, count) * lengths / 4, 2)
    scores = 1 - rng.choice([1e-2, 1e-4, 1e-6, 1e-9, 0.3, 0.6], count)
    return np.stack([starts, starts + lengths], axis=1), scores


@pytest.mark.parametrize("seed", range(3))
def test_nms_equals_the_plain_loop_on_grid_windows(seed):
    segments, scores = _grid_like(np.random.default_rng(seed), 400)
    for threshold in (0.2, 0.4):
        assert nms(segments, scores, threshold).tolist() == reference_nms(
            segments, scores, threshold
        )


def _windows() -> ScoredWindows:
    return ScoredWindows(
        videos=np.array(["b", "b", "b", "a", "a"]),
        window_frames=np.array([16, 32, 16, 16, 16]),
        start_frame=np.array([1, 1, 9, 1, 101]),
        end_frame=np.array([16, 32, 24, 16, 116]),
        start_s=np.array([0.04, 0.04, 0.36, 0.04, 4.04]),
        end_s=np.array([0.64, 1.28, 0.96, 0.64, 4.64]),
        label_index=np.array([1, 1, 2, 0, 2]),
        score=np.array([0.9, 0.6, 0.8, 0.99, 0.5]),
        classes=("A", "B"),
    )


def test_postprocess_drops_background_weights_and_suppresses():
    prior = {16: np.array([0.5, 1.0]), 32: np.array([1.0, 1.0])}  # weights of A, B
    detections = postprocess(_windows(), nms_iou=0.4, prior=prior)
    # b/A: 0.9 * 0.5 = 0.45 vs 0.6 * 1.0 = 0.6; IoU 0.6/1.24 > 0.4, so only the 32-frame one.
    assert [(d.video, d.label, d.score) for d in detections] == [
        ("b", "B", 0.8),
        ("b", "A", 0.6),
        ("a", "B", 0.5),
    ]
    assert (detections[1].start_s, detections[1].end_s) == (0.04, 1.28)


def test_postprocess_top_k_and_min_score():
    top = postprocess(_windows(), nms_iou=1.0, top_k=1)
    assert [(d.video, d.score) for d in top] == [("b", 0.9), ("a", 0.5)]
    high = postprocess(_windows(), nms_iou=1.0, min_score=0.7)
    assert [d.score for d in high] == [0.9, 0.8]


def _windows_of_lengths(lengths_frames: tuple[int, ...]) -> ScoredWindows:
    """One class-A window of each length, apart in time, each scored 0.8."""
    starts = 1 + 1000 * np.arange(len(lengths_frames))
    ends = starts + np.array(lengths_frames) - 1
    return ScoredWindows(
        videos=np.array(["v"] * len(lengths_frames)),
        window_frames=np.array(lengths_frames),
        start_frame=starts,
        end_frame=ends,
        start_s=starts / 25,
        end_s=ends / 25,
        label_index=np.ones(len(lengths_frames), dtype=np.int64),
        score=np.full(len(lengths_frames), 0.8),
        classes=("A",),
    )


def test_prior_weights_each_window_by_its_own_length():
    prior = {32: np.array([0.5]), 64: np.array([0.25]), 128: np.array([1.0])}
    detections = postprocess(_windows_of_lengths((32, 64, 128)), nms_iou=1.0, prior=prior)
    by_length = {round((d.end_s - d.start_s) * 25) + 1: d.score for d in detections}
    assert by_length == {32: 0.4, 64: 0.2, 128: 0.8}


def test_window_length_missing_from_the_prior_is_an_error():
    prior = {32: np.array([0.5]), 64: np.array([0.25])}
    with pytest.raises(ScnnError, match=r"window length 128 frames has no prior weights.*32, 64"):
        postprocess(_windows_of_lengths((32, 128)), nms_iou=1.0, prior=prior)


def _scores_of_log_odds(log_odds: list[float]) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.array(log_odds)))


def test_vote_boundaries_is_the_log_odds_weighted_mean_of_the_overlapping_windows():
    windows = np.array([[0.0, 4.0], [0.0, 2.0], [1.0, 5.0], [10.0, 12.0]])
    scores = _scores_of_log_odds([3.0, 2.0, 1.0, 5.0])
    # IoU with [0, 4]: 1, 0.5, 0.6, 0; the last is too far to vote.
    voted = vote_boundaries(windows[:1], windows, scores, 0.5)
    np.testing.assert_allclose(voted, [[(3 * 0 + 2 * 0 + 1 * 1) / 6, (3 * 4 + 2 * 2 + 1 * 5) / 6]])
    # At 0.55 the half-length window no longer votes: (3 [0, 4] + 1 [1, 5]) / 4.
    voted = vote_boundaries(windows[:1], windows, scores, 0.55)
    np.testing.assert_allclose(voted, [[1 / 4, (12 + 5) / 4]])


def reference_vote(kept, windows, scores, vote_iou):
    """vote_boundaries written plainly from its definition: every window against every kept
    segment, the exactly rounded weighted means (weights: log_odds, tested on its own)."""
    voted = []
    for start_k, end_k in kept:
        terms = []
        for (start, end), weight in zip(windows, log_odds(scores), strict=True):
            inter = max(0.0, min(end, end_k) - max(start, start_k))
            union = (end - start) + (end_k - start_k) - inter
            if inter > 0 and inter / union >= vote_iou:
                terms.append((weight, start, end))
        total = math.fsum(w for w, _, _ in terms)
        if total > 0:
            start_k = math.fsum(w * s for w, s, _ in terms) / total
            end_k = math.fsum(w * e for w, _, e in terms) / total
        voted.append((start_k, end_k))
    return np.array(voted)


@pytest.mark.parametrize("seed", range(3))
def test_vote_boundaries_equals_the_plain_loop_whatever_else_is_voted(seed):
    rng = np.random.default_rng(seed)
    windows, scores = _grid_like(rng, 300)
    kept = windows[nms(windows, scores, 0.4)]
    expected = reference_vote(kept, windows, scores, 0.4)
    np.testing.assert_array_equal(vote_boundaries(kept, windows, scores, 0.4), expected)
    # each segment's boundaries depend on its voters alone: not on the order of the windows
    # nor on which other segments are voted at the same time
    shuffled = rng.permutation(len(windows))
    one_by_one = [vote_boundaries(k[None], windows[shuffled], scores[shuffled], 0.4) for k in kept]
    np.testing.assert_array_equal(np.concatenate(one_by_one), expected)


def test_postprocess_memory_grows_with_the_windows_not_their_square():
    # 40 000 windows of one class: comparing every kept window with every window, as a
    # pairwise IoU matrix, would take gigabytes here.
    segments, scores = _grid_like(np.random.default_rng(0), 40_000)
    count = len(scores)
    windows = ScoredWindows(
        videos=np.full(count, "v", dtype=object),
        window_frames=np.round(25 * (segments[:, 1] - segments[:, 0])).astype(np.int64),
        start_frame=np.zeros(count, np.int64),
        end_frame=np.zeros(count, np.int64),
        start_s=segments[:, 0],
        end_s=segments[:, 1],
        label_index=np.ones(count, np.int64),
        score=scores,
        classes=("A",),
    )
    tracemalloc.start()
    try:
        detections = postprocess(windows, 0.4, vote_iou=0.4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(detections) > 1000
    assert peak < 40 * 2**20


def test_vote_boundaries_keeps_a_segment_whose_voters_all_score_at_most_one_half():
    windows = np.array([[0.0, 4.0], [1.0, 5.0]])
    voted = vote_boundaries(windows, windows, np.array([0.5, 0.2]), 0.5)
    np.testing.assert_array_equal(voted, windows)


def test_log_odds_is_finite_at_one_and_floored_at_zero():
    np.testing.assert_allclose(
        log_odds(np.array([0.75, 0.9, 0.5, 0.1])), [np.log(3), np.log(9), 0, 0]
    )
    at_one = log_odds(np.array([1.0, 1.0 - 1e-12]))
    assert np.isfinite(at_one).all() and at_one[0] > at_one[1] > 27


def test_postprocess_votes_within_video_and_class_after_nms():
    detections = postprocess(_windows(), nms_iou=0.4, vote_iou=0.4)
    # b/A: [0.04, 0.64] at 0.9 suppresses [0.04, 1.28] at 0.6 (IoU 0.48), which still votes.
    # b/B and a/B have one window each: their boundaries stay.
    assert [(d.video, d.label, d.score) for d in detections] == [
        ("b", "A", 0.9),
        ("b", "B", 0.8),
        ("a", "B", 0.5),
    ]
    assert detections[0].start_s == pytest.approx(0.04)
    weights = np.log(9), np.log(1.5)  # the log-odds of 0.9 and 0.6
    assert detections[0].end_s == pytest.approx(
        (weights[0] * 0.64 + weights[1] * 1.28) / sum(weights)
    )
    assert (detections[1].start_s, detections[1].end_s) == pytest.approx((0.36, 0.96))
    assert (detections[2].start_s, detections[2].end_s) == pytest.approx((4.04, 4.64))
    plain = postprocess(_windows(), nms_iou=0.4)
    assert (plain[0].start_s, plain[0].end_s) == (0.04, 0.64)


def test_postprocess_suppresses_again_what_voting_moved_together():
    start_s, end_s = np.array([0.0, 3.0, 1.5]), np.array([4.0, 7.0, 5.5])
    windows = ScoredWindows(
        videos=np.array(["v"] * 3),
        window_frames=np.array([100, 100, 100]),
        start_frame=np.round(start_s * 25).astype(np.int64) + 1,
        end_frame=np.round(end_s * 25).astype(np.int64),
        start_s=start_s,
        end_s=end_s,
        label_index=np.ones(3, dtype=np.int64),
        score=np.array([0.9, 0.8, 0.8]),
        classes=("A",),
    )
    # NMS at 0.4 keeps [0, 4] and [3, 7] (IoU 1/7); [1.5, 5.5] (IoU 5/11 with each) votes
    # for both, which moves them to [0.58, 4.58] and [2.25, 6.25], IoU 0.41: the second goes.
    assert len(postprocess(windows, nms_iou=0.4)) == 2
    (voted,) = postprocess(windows, nms_iou=0.4, vote_iou=0.45)
    high, low = np.log(9), np.log(4)  # the log-odds of 0.9 and 0.8
    expected = (low * 1.5 / (high + low), (high * 4 + low * 5.5) / (high + low))
    assert (voted.start_s, voted.end_s) == pytest.approx(expected)
