"""synth.py: the generated videos show the annotated motions, at the annotated times."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from scnn.errors import ScnnError
from scnn.formats import load_ground_truth
from scnn.synth import (
    CLASS_NAMES,
    MIN_GAP_S,
    TRAVERSAL_X,
    TRAVERSAL_Y,
    SynthConfig,
    generate,
    plan_videos,
)
from scnn.video import read_frames

TINY = SynthConfig(
    num_classes=len(CLASS_NAMES),
    train_videos=3,
    val_videos=1,
    test_videos=1,
    duration_range_s=(12.0, 16.0),
    instance_duration_range_s=(1.0, 4.0),
    width=86,
    height=64,
    seed=3,
)


# class: (axis, start, end) of its traversal as fractions of the width (axis 0) or height (1)
TRAVERSALS = {
    "MoveRight": (0, *TRAVERSAL_X),
    "MoveLeft": (0, *TRAVERSAL_X[::-1]),
    "MoveDown": (1, *TRAVERSAL_Y),
    "MoveUp": (1, *TRAVERSAL_Y[::-1]),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("synth")
    return root, generate(root, TINY, quiet=True)


def actor_tracks(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the centroid (x, y) and area of the actor: the only vivid pixels."""
    vivid = (frames.max(axis=3).astype(int) - frames.min(axis=3)) > 90
    area = vivid.sum(axis=(1, 2))
    ys, xs = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]]
    centroid = np.stack(
        [(vivid * xs).sum(axis=(1, 2)) / area, (vivid * ys).sum(axis=(1, 2)) / area], axis=1
    )
    return centroid, area


def test_videos_decode_to_the_annotated_length(dataset) -> None:
    root, gt = dataset
    assert len(gt.videos) == 5 and gt.videos[0] == "synth_train_0001"
    for video in gt.videos:
        frames = read_frames(root / "videos" / f"{video}.mp4", size=(86, 64))
        assert len(frames) == round(gt.durations_s[video] * 25)
        assert 12.0 <= gt.durations_s[video] <= 16.0


def test_each_instance_shows_its_motion(dataset) -> None:
    root, gt = dataset
    seen = set()
    for video in gt.videos:
        centroid, area = actor_tracks(read_frames(root / "videos" / f"{video}.mp4", size=(86, 64)))
        for instance in (i for i in gt.instances if i.video == video):
            first, last = round(instance.start_s * 25), round(instance.end_s * 25) - 1
            dx, dy = centroid[last] - centroid[first]
            growth = area[last] / area[first]
            path = centroid[np.linspace(first, last, 9).round().astype(int)]
            x, y = path[:, 0], path[:, 1]
            turning = np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)  # > 0: clockwise on screen
            expected = {
                "MoveRight": dx > 0.35 * 86,
                "MoveLeft": dx < -0.35 * 86,
                "MoveDown": dy > 0.3 * 64,
                "MoveUp": dy < -0.3 * 64,
                "Grow": growth > 3,
                "Shrink": growth < 1 / 3,
                "RotateClockwise": turning > 20,
                "RotateAnticlockwise": turning < -20,
            }
            assert expected[instance.label], (instance, dx, dy, growth, turning)
            if instance.label in TRAVERSALS:  # starts and ends where the traversal does
                axis, start, end = TRAVERSALS[instance.label]
                size = (86, 64)[axis]
                assert abs(centroid[first, axis] - start * size) < 0.1 * size, instance
                assert abs(centroid[last, axis] - end * size) < 0.1 * size, instance
            seen.add(instance.label)
    assert len(seen) >= 4


def test_actor_rests_outside_instances(dataset) -> None:
    root, gt = dataset
    for plan in plan_videos(TINY):
        centroid, _ = actor_tracks(read_frames(root / "videos" / f"{plan.name}.mp4", size=(86, 64)))
        moving = np.zeros(plan.num_frames, bool)
        for motion in plan.actions + plan.false_starts:
            moving[motion.start_frame : motion.end_frame + 1] = True
        step = np.linalg.norm(np.diff(centroid, axis=0), axis=1)
        big_steps = np.flatnonzero((step > 0.06 * 64) & ~moving[1:] & ~moving[:-1])
        # only the one jump to the next motion's start pose, per motion
        assert len(big_steps) <= len(plan.actions) + len(plan.false_starts)


def test_all_formats_hold_the_same_instances(dataset) -> None:
    root, gt = dataset
    assert load_ground_truth(root / "annotations.json").instances == gt.instances
    assert {gt.subsets[v] for v in gt.videos} == {"training", "validation", "testing"}
    for split, subset in [("train", "training"), ("val", "validation"), ("test", "testing")]:
        expected = {i for i in gt.instances if gt.subsets[i.video] == subset}
        csv = load_ground_truth(root / "annotations" / f"{split}.csv")
        folder = load_ground_truth(root / "annotations" / "thumos14", subset=split)
        assert set(csv.instances) == expected
        assert set(folder.instances) == expected


def test_same_seed_same_annotation_bytes(tmp_path: Path, dataset) -> None:
    root, _ = dataset
    small = SynthConfig(
        **{**TINY.__dict__, "width": 32, "height": 32, "train_videos": 1, "val_videos": 0,
           "test_videos": 0}
    )  # fmt: skip
    again, other = tmp_path / "again", tmp_path / "other"
    generate(again, small, quiet=True)
    generate(other, SynthConfig(**{**small.__dict__, "seed": 4}), quiet=True)
    original = (root / "annotations" / "train.csv").read_text().splitlines()
    first_video = [line for line in original if "synth_train_0001" in line or line[:5] == "video"]
    assert (again / "annotations" / "train.csv").read_text().splitlines() == first_video
    assert (again / "annotations.json").read_bytes() != (other / "annotations.json").read_bytes()


@pytest.mark.skipif(
    len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2, reason="needs 2 CPUs to drop one"
)
def test_same_seed_same_video_bytes_on_one_cpu_or_more(tmp_path: Path) -> None:
    """By default x264 takes its thread count, hence its slices (2 at 128 px high), from the
    CPUs the process may use. Its MB-tree kernels also differ by CPU, so MB-tree stays off."""
    config = SynthConfig(
        num_classes=2,
        train_videos=0,
        val_videos=0,
        test_videos=1,
        duration_range_s=(6.0, 6.0),
        instance_duration_range_s=(1.0, 4.0),
        width=48,
        height=128,
        seed=5,
    )
    generate(tmp_path / "all", config, quiet=True)
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        generate(tmp_path / "one", config, quiet=True)
    finally:
        os.sched_setaffinity(0, cpus)
    video = Path("videos") / "synth_test_0001.mp4"
    data = (tmp_path / "all" / video).read_bytes()
    assert (tmp_path / "one" / video).read_bytes() == data
    assert b" mbtree=0 " in data  # x264 writes its settings into the stream


def test_plans_of_the_default_dataset() -> None:
    config = SynthConfig()
    plans = plan_videos(config)
    assert [p.name for p in plans][:2] == ["synth_train_0001", "synth_train_0002"]
    assert len(plans) == 24 + 6 + 8
    lengths_s = []
    for plan in plans:
        assert 60 * 25 <= plan.num_frames <= 120 * 25
        action_frames = sum(a.end_frame - a.start_frame for a in plan.actions)
        assert action_frames <= 0.5 * plan.num_frames
        edges = [0] + [f for a in plan.actions for f in (a.start_frame, a.end_frame)]
        gaps = np.diff(edges + [plan.num_frames])[::2]
        assert gaps.min() >= MIN_GAP_S * 25
        for false_start in plan.false_starts:
            assert not any(
                a.start_frame < false_start.end_frame and false_start.start_frame < a.end_frame
                for a in plan.actions
            )
        lengths_s += [(a.end_frame - a.start_frame) / 25 for a in plan.actions]
    assert 0.6 <= min(lengths_s) < 1.5 and 12 < max(lengths_s) <= 20
    train_labels = {a.label_index for p in plans if p.split == "train" for a in p.actions}
    assert train_labels == set(range(6))
    assert sum(len(p.false_starts) for p in plans) > 10


@pytest.mark.parametrize(
    "fields",
    [
        {"num_classes": 0},
        {"num_classes": 9},
        {"train_videos": -1},
        {"duration_range_s": (30.0, 10.0)},
        {"duration_range_s": (10.0, 30.0)},  # shorter than the longest instance plus gaps
        {"instance_duration_range_s": (0.0, 5.0)},
        {"width": 16},
    ],
)
def test_bad_config_is_refused(fields: dict) -> None:
    with pytest.raises(ScnnError):
        SynthConfig(**fields)
