"""The boundary-clip network: each detection's start and end moved from a clip around it, by
known answers worked out by hand, within the frames reach_frames promises, and kept in the
model directory."""

import json

import numpy as np
import pytest
import torch
from tiny import constant_network, small_model, with_boundary_clips

from scnn.boundary_clips import BoundaryClips, network_offsets, reach_frames, refine_segments
from scnn.errors import ModelError
from scnn.modelfile import BOUNDARY_CLIP_WEIGHTS, MODEL_JSON, load_model

FPS = 25
NUM_FRAMES = 300


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(small_model(tmp_path_factory.mktemp("model") / "plain"))


def frames_of(model, count=NUM_FRAMES, seed=0):
    width, height = model.convention.frame_size
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), np.uint8)


def refine(model, segments_s, offsets, rounds):
    clips = BoundaryClips(constant_network(model, offsets), rounds=rounds)
    offsets_of = network_offsets(clips.network)
    segments_s, frames = np.array(segments_s), frames_of(model)
    convention = model.convention
    return refine_segments(segments_s, frames, 1, NUM_FRAMES, clips, offsets_of, convention, FPS)


def test_two_rounds_move_each_boundary_from_its_own_clip(model):
    # [2 s, 4 s] = frames 50..100, clips of round(0.5 × 50) = 25 frames. The start's clip
    # begins at round(50 − 12) = 38, its centre 50, + 0.25 × 25 → 56.25 (2.25 s); the end's at
    # 88, centre 100, − 0.125 × 25 → 96.875 (3.875 s). Round 2: 40.625 frames long, clips of
    # 20; the start's begins at round(56.25 − 9.5) = 47, centre 56.5, + 5 → 61.5 (2.46 s); the
    # end's at round(96.875 − 9.5) = 87, centre 96.5, − 2.5 → 94 (3.76 s).
    once = refine(model, [[2.0, 4.0]], (0.25, -0.125), rounds=1)
    twice = refine(model, [[2.0, 4.0]], (0.25, -0.125), rounds=2)
    np.testing.assert_allclose(once, [[2.25, 3.875]], atol=1e-9)
    np.testing.assert_allclose(twice, [[2.46, 3.76]], atol=1e-9)


def test_an_offset_beyond_the_clip_is_held_at_its_edge(model):
    moved = refine(model, [[2.0, 4.0]], (3.0, -3.0), rounds=1)  # half of 25 frames at most
    np.testing.assert_allclose(moved, [[2.5, 3.5]], atol=1e-9)


def test_a_round_that_would_cross_the_boundaries_leaves_the_segment(model):
    # 16 frames, clips of 16: the start moves to 49.5 + 8, the end to 65.5 − 8: both 57.5.
    segment = [[2.0, 2.64]]
    np.testing.assert_array_equal(refine(model, segment, (0.5, -0.5), rounds=1), segment)


def test_the_rounds_read_only_frames_within_reach(model):
    """A network whose outputs follow the frames and mostly saturate: each segment refined
    from a buffer holding only its reach_frames gives what the whole video gives (a frame
    outside the buffer is a ValueError)."""
    torch.manual_seed(3)
    network = BoundaryClips(constant_network(model, (0.0, 0.0)))
    torch.nn.init.normal_(network.network.fc8.weight, std=2.0)
    offsets_of = network_offsets(network.network)
    frames = frames_of(model)
    segments = np.array([[0.0, 0.64], [0.1, 5.0], [3.0, 3.7], [6.0, 11.96], [11.2, 11.96]])
    whole = refine_segments(
        segments, frames, 1, NUM_FRAMES, network, offsets_of, model.convention, FPS
    )
    assert np.abs(whole - segments).max() > 0.1  # they moved
    first, last = reach_frames(segments, network, FPS, model.convention.clip_frames)
    for k, segment in enumerate(segments):
        held = frames[first[k] - 1 : min(last[k], NUM_FRAMES)]
        alone = refine_segments(
            segment[None], held, int(first[k]), NUM_FRAMES, network, offsets_of,
            model.convention, FPS,
        )  # fmt: skip
        np.testing.assert_array_equal(alone, whole[k : k + 1])


def test_the_model_directory_keeps_the_network_and_its_settings(model, tmp_path):
    plain = small_model(tmp_path / "plain")
    path = with_boundary_clips(plain, tmp_path / "clips", (0.25, -0.125), rounds=3)
    description = json.loads((path / MODEL_JSON).read_text())
    assert description["boundary_clips"] == {"rounds": 3, "scale": 0.5}
    loaded = load_model(path).boundary_clips
    assert (loaded.rounds, loaded.scale) == (3, 0.5)
    assert loaded.network.fc8.bias.tolist() == [0.25, -0.125]
    assert load_model(plain).boundary_clips is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rounds": 0, "scale": 0.5}, "rounds 0 is not in"),
        ({"rounds": 2, "scale": float("nan")}, "scale nan is not in"),
        ({"rounds": 1.5, "scale": 0.5}, "rounds 1.5 is not a whole number"),
        ([2, 0.5], "boundary_clips .* is not an object"),
    ],
)
def test_bad_settings_are_refused_naming_model_json(tmp_path, settings, message):
    path = with_boundary_clips(small_model(tmp_path / "plain"), tmp_path / "clips", (0.0, 0.0))
    description = json.loads((path / MODEL_JSON).read_text())
    description["boundary_clips"] = settings
    (path / MODEL_JSON).write_text(json.dumps(description))
    with pytest.raises(ModelError, match=message) as error:
        load_model(path)
    assert str(error.value.path) == str(path / MODEL_JSON)


def test_a_missing_boundary_clip_network_is_named(tmp_path):
    path = with_boundary_clips(small_model(tmp_path / "plain"), tmp_path / "clips", (0.0, 0.0))
    (path / BOUNDARY_CLIP_WEIGHTS).unlink()
    with pytest.raises(ModelError, match="weights file missing") as error:
        load_model(path)
    assert str(error.value.path) == str(path / BOUNDARY_CLIP_WEIGHTS)
