"""Training samples, the frame cache and the clip dataset, on small videos encoded here."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from videos import numbered_frames, write_video

from scnn import dataset
from scnn.clips import ClipConfig, assemble_clips
from scnn.dataset import (
    ClipDataset,
    FrameCache,
    Samples,
    trimmed_clip_paths,
    trimmed_samples,
    window_samples,
)
from scnn.errors import ScnnError, VideoError
from scnn.records import GroundTruth, Instance
from scnn.windows import LabelConfig, WindowConfig

CLIP = ClipConfig(frame_size=(40, 32), crop_size=24).convention()


def gradient_frames(count: int) -> np.ndarray:
    """Frames whose brightness encodes the frame index, so crops can be traced back."""
    frames = np.zeros((count, 48, 64, 3), np.uint8)
    frames += (np.arange(count, dtype=np.uint8) * 2)[:, None, None, None]
    frames[:, :, :32, 0] = 200  # left half red: a mirror changes the picture
    return frames


def encode(path, frames):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames)


@pytest.fixture
def video(tmp_path):
    return encode(tmp_path / "videos" / "clip_a.mp4", gradient_frames(50))


def test_frame_cache_decodes_each_video_once(tmp_path, video, monkeypatch):
    decoded = []
    real_read = dataset.read_frames

    def counting_read(*args, **kwargs):
        decoded.append(args[0])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(dataset, "read_frames", counting_read)
    cache = FrameCache(tmp_path / "cache", (40, 32))
    first = cache.frames("clip_a", video)
    second = cache.frames("clip_a", video)
    assert len(decoded) == 1
    assert first.shape == (50, 32, 40, 3) and first.dtype == np.uint8
    assert isinstance(second, np.memmap)
    assert cache.path("clip_a").name == "clip_a.40x32.npy"
    assert np.array_equal(first, second)


def one_video_gt() -> GroundTruth:
    # 320 frames; an instance on frames 33..96 (1.32 s .. 3.84 s, the authors' frame/25 times).
    return GroundTruth(
        classes=("jump", "run"),
        instances=(Instance("v", 33 / 25, 96 / 25, "run"),),
        videos=("v",),
    )


def test_window_samples_label_and_balance():
    windows = WindowConfig(lengths_frames=(32, 64, 128))
    args = dict(windows=windows, labels=LabelConfig(), background_ratio=2.0)
    binary = window_samples(
        one_video_gt(), {"v": 320}, binary=True, rng=np.random.default_rng(0), **args
    )
    # Only the 64-frame window on frames 33..96 overlaps the instance by more than 0.7 (IoU 1);
    # its neighbours reach 0.6 and the 32/128-frame windows 0.5: unused.
    positive = binary.label == 1
    assert positive.sum() == 1
    assert binary.start_frame[positive][0] == 33 and binary.length_frames[positive][0] == 64
    assert binary.iou[positive][0] == pytest.approx(1.0)
    assert (binary.label == 0).sum() == 2  # background_ratio 2 per positive
    assert set(binary.label) == {0, 1}

    by_class = window_samples(
        one_video_gt(), {"v": 320}, binary=False, rng=np.random.default_rng(0), **args
    )
    assert by_class.label[by_class.label > 0].tolist() == [2]  # "run" is class 2
    assert (by_class.label == 0).sum() == 1  # 2 per average class: round(2 * 1 / 2)


def test_window_samples_rejects_nothing_silently_and_is_seeded():
    args = dict(windows=WindowConfig(), labels=LabelConfig(), background_ratio=5.0, binary=True)
    a = window_samples(one_video_gt(), {"v": 320}, rng=np.random.default_rng(3), **args)
    b = window_samples(one_video_gt(), {"v": 320}, rng=np.random.default_rng(3), **args)
    assert np.array_equal(a.start_frame, b.start_frame)
    assert np.array_equal(a.length_frames, b.length_frames)


def make_samples(count: int) -> Samples:
    return Samples(
        videos=("clip_a",),
        video=np.zeros(count, np.int64),
        start_frame=np.arange(1, count + 1, dtype=np.int64),
        length_frames=np.full(count, 32, np.int64),
        label=np.arange(count, dtype=np.int64) % 2,
        iou=np.full(count, 0.8, np.float32),
    )


def test_clip_dataset_draws_are_a_function_of_seed_and_position(tmp_path, video):
    cache = FrameCache(tmp_path / "cache", CLIP.frame_size)
    cache.frames("clip_a", video)
    samples = make_samples(10)
    first = ClipDataset(samples, cache, CLIP, train=True, seed=7)
    again = ClipDataset(samples, cache, CLIP, train=True, seed=7)
    other = ClipDataset(samples, cache, CLIP, train=True, seed=8)
    clip, label, iou = first[13]
    assert clip.shape == (3, 16, 24, 24) and clip.dtype == torch.float32
    assert iou == pytest.approx(0.8)
    assert torch.equal(again[13][0], clip) and again[13][1] == label
    assert not all(torch.equal(first[p][0], other[p][0]) for p in range(10))
    # A batch (what the DataLoader asks for) holds exactly the clips of its draw positions.
    clips, labels, ious = first.__getitems__([13, 2, 5])
    assert clips.is_contiguous(memory_format=torch.channels_last_3d)
    for row, position in enumerate([13, 2, 5]):
        assert torch.equal(clips[row], first[position][0])
        assert labels[row] == first[position][1] and ious[row] == pytest.approx(0.8)
    # Each epoch visits every sample once: the starts of positions 0..9 are a permutation.
    starts = [int(first.sample_of(p)) for p in range(10)]
    assert sorted(starts) == list(range(10))
    assert [int(first.sample_of(p)) for p in range(10, 20)] != starts


def test_clip_dataset_evaluation_is_the_centre_crop(tmp_path, video):
    cache = FrameCache(tmp_path / "cache", CLIP.frame_size)
    frames = cache.frames("clip_a", video)
    samples = make_samples(4)
    clip, label, _ = ClipDataset(samples, cache, CLIP, train=False)[2]
    expected = assemble_clips(frames, np.array([3]), np.array([32]), CLIP, train=False)[0]
    assert torch.equal(clip, expected)
    assert label == 0


def test_the_mean_cube_is_cropped_and_mirrored_with_each_clip(tmp_path):
    """The cube is the video's own 16 frames, so only a cube cropped at each clip's offsets and
    mirrored with it leaves exactly zero (Caffe subtracts it from the whole frames)."""
    frames = np.random.default_rng(0).integers(0, 256, (16, 32, 40, 3), dtype=np.uint8)
    cache = FrameCache(tmp_path / "cache", CLIP.frame_size)
    cache.path("clip_a").parent.mkdir()
    np.save(cache.path("clip_a"), frames)
    ones = np.ones(8, np.int64)
    samples = Samples(("clip_a",), ones * 0, ones, ones * 16, ones, ones.astype(np.float32))
    convention = replace(CLIP, mean=torch.from_numpy(frames).float())
    for train in (True, False):
        data = ClipDataset(samples, cache, convention, train=train, seed=3)
        clips = data.__getitems__(range(8))[0]
        assert torch.equal(clips, torch.zeros_like(clips))
    plain = ClipDataset(samples, cache, CLIP, train=True, seed=3).__getitems__(range(8))[0]
    assert len({tuple(clip[:, 0, 0, 0].tolist()) for clip in plain}) > 4  # crops differ


def test_clip_dataset_works_in_worker_processes(tmp_path, video):
    cache = FrameCache(tmp_path / "cache", CLIP.frame_size)
    cache.frames("clip_a", video)
    data = ClipDataset(make_samples(6), cache, CLIP, train=False)
    loader = torch.utils.data.DataLoader(
        data, batch_size=3, num_workers=1, collate_fn=ClipDataset.collate
    )
    clips = torch.cat([batch[0] for batch in loader])
    assert torch.equal(clips[4], data[4][0])


def test_trimmed_clips_give_one_positive_each(tmp_path):
    root = tmp_path / "trimmed"
    encode(root / "run" / "r1.mp4", gradient_frames(40))
    encode(root / "jump" / "j1.mp4", gradient_frames(20))
    clips = trimmed_clip_paths(root, ("jump", "run"))
    assert {k: c for k, (_, c) in clips.items()} == {"trimmed/jump/j1": 1, "trimmed/run/r1": 2}
    samples = trimmed_samples(
        {k: c for k, (_, c) in clips.items()},
        {"trimmed/jump/j1": 20, "trimmed/run/r1": 40},
        binary=False,
        clip_frames=16,
    )
    assert samples.length_frames.tolist() == [16, 32]  # whole multiples of 16 frames
    assert samples.label.tolist() == [1, 2]
    assert samples.start_frame.tolist() == [1, 1]
    with pytest.raises(VideoError, match="fewer than 16"):
        trimmed_samples({"short": 1}, {"short": 12}, binary=True, clip_frames=16)


def test_trimmed_folders_of_other_classes_are_left_out_in_one_line(tmp_path, caplog):
    """UCF101 holds 101 class folders, THUMOS14 trains on 20: the others are counted once."""
    for name in ("swim", "surf", "jump", "dive", "yoga"):
        encode(tmp_path / "trimmed" / name / "s.mp4", gradient_frames(20))
    with caplog.at_level(logging.INFO, logger="scnn.dataset"):
        clips = trimmed_clip_paths(tmp_path / "trimmed", ("jump", "run"))
    assert list(clips) == ["trimmed/jump/s"]
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "4 of 5 folders are not among the 2 classes, left out (dive, surf, swim, …)"
    ]
    with pytest.raises(ScnnError, match="no folder is named after one of the 1 classes"):
        trimmed_clip_paths(tmp_path / "trimmed", ("run",))


def test_damaged_frame_cache_entries_are_rebuilt(tmp_path):
    video = write_video(tmp_path / "v.mp4", numbered_frames(30), 25)
    cache = FrameCache(tmp_path / "cache", (64, 48))
    expected = np.array(cache.frames("v", video))
    entry = cache.path("v")
    whole = entry.read_bytes()
    damaged = [
        whole[: len(whole) // 2],  # data cut short, as a killed non-atomic writer leaves it
        whole[:40],  # header cut short
        b"",
        b"not an npy file at all",
    ]
    for data in damaged:
        entry.write_bytes(data)
        assert np.array_equal(cache.frames("v", video), expected)
        assert entry.read_bytes() == whole
    np.save(entry, np.zeros((30, 24, 32, 3), np.uint8))  # another frame size under this name
    assert np.array_equal(cache.frames("v", video), expected)
