"""The three stages and the samples each trains and validates on (no video needs decoding:
the samples come from the ground truth and the videos' frame counts)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from videos import numbered_frames, write_video

from scnn.config import config_from_dict
from scnn.dataset import FrameCache
from scnn.records import GroundTruth, Instance
from scnn.stages import (
    CLASSIFICATION,
    LOCALIZATION,
    PROPOSAL,
    STAGES,
    TrainingData,
    prepare_data,
    stage_samples,
)

CLASSES = ("jump", "run")
# One 4-second video at 25 fps; "run" spans the 32-frame window at frame 1 (1/25 to 32/25 s).
GT = GroundTruth(CLASSES, (Instance("v", 0.04, 1.28, "run"),), videos=("v",))
CONFIG = config_from_dict(
    {"windows": {"lengths_frames": [16, 32]}, "data": {"val_samples": 3, "background_ratio": 4.0}}
)


def training_data(tmp_path, trimmed: dict[str, int]) -> TrainingData:
    return TrainingData(
        classes=CLASSES,
        train_gt=GT,
        train_frames={"v": 100},
        val_gt=GT,
        val_frames={"v": 100},
        trimmed=trimmed,
        trimmed_frames={key: 40 for key in trimmed},
        cache=FrameCache(tmp_path, CONFIG.clip.frame_size),
    )


def test_stages_in_order_with_their_outputs_and_initialisation():
    assert [stage.name for stage in STAGES] == ["proposal", "classification", "localization"]
    assert [stage.num_outputs(len(CLASSES)) for stage in STAGES] == [2, 3, 3]
    assert LOCALIZATION.init_from == CLASSIFICATION.name and PROPOSAL.init_from is None
    assert LOCALIZATION.overlap and not CLASSIFICATION.overlap


def test_training_windows_labelled_by_stage_with_trimmed_clips_appended(tmp_path):
    data = training_data(tmp_path, {"clip": 1})
    proposal = stage_samples(PROPOSAL, CONFIG, data, train=True)
    classification = stage_samples(CLASSIFICATION, CONFIG, data, train=True)
    for samples, action in ((proposal, 1), (classification, 2)):  # "run" is class 2
        exact = (samples.video == 0) & (samples.start_frame == 1) & (samples.length_frames == 32)
        assert samples.videos == ("v", "clip")
        assert samples.label[exact].tolist() == [action] and samples.iou[exact].tolist() == [1.0]
        assert set(samples.label.tolist()) <= {0, action, 1}
    # The trimmed clip of class 1 ("jump"): the last sample, its 32 frames (2 × 16 of 40).
    assert (proposal.video[-1], proposal.label[-1], proposal.length_frames[-1]) == (1, 1, 32)
    assert (classification.label[-1], classification.iou[-1]) == (1, 1.0)


def test_the_localization_stage_may_draw_its_own_share_of_background(tmp_path):
    data = training_data(tmp_path, {})
    richer = replace(CONFIG, data=replace(CONFIG.data, localization_background_ratio=12.0))
    # One positive window; background per positive (binary) or per class (2 classes).
    counts = {
        stage.name: int((stage_samples(stage, richer, data, train=True).label == 0).sum())
        for stage in STAGES
    }
    assert counts == {"proposal": 4, "classification": 2, "localization": 6}
    same = stage_samples(LOCALIZATION, CONFIG, data, train=True)
    assert int((same.label == 0).sum()) == 2


def test_validation_windows_are_evenly_spaced_and_leave_out_trimmed_clips(tmp_path):
    data = training_data(tmp_path, {"clip": 1})
    kept = stage_samples(PROPOSAL, CONFIG, data, train=False)
    uncapped = replace(CONFIG, data=replace(CONFIG.data, val_samples=1000))
    every = stage_samples(PROPOSAL, uncapped, data, train=False)
    assert kept.videos == ("v",) and len(kept) == 3 < len(every)
    middle = round((len(every) - 1) / 2)
    assert kept.start_frame.tolist() == every.start_frame[[0, middle, -1]].tolist()
    assert np.array_equal(kept.label, every.label[[0, middle, len(every) - 1]])


def test_thumos14_facts_of_the_official_folders(tmp_path, caplog):
    """As the downloads unpack: an empty class file keeps its class, Ambiguous is no class,
    a 30 fps video is decoded at 25, the validation subset "" validates on nothing, a UCF101
    clip shorter than a clip is left out with a line naming it, other classes' folders too."""
    annotations = tmp_path / "annotation"
    annotations.mkdir()
    (annotations / "Jump_val.txt").write_text("video_validation_0000051 0.5 2.5\n")
    (annotations / "Run_val.txt").write_text("")
    (annotations / "Ambiguous_val.txt").write_text("video_validation_0000051 3.0 3.5\n")
    videos = tmp_path / "validation"
    videos.mkdir()
    write_video(videos / "video_validation_0000051.mp4", numbered_frames(120), 30)  # 4 s
    write_video(videos / "video_validation_0000052.mp4", numbered_frames(30), 30)  # unannotated
    ucf = tmp_path / "UCF-101"
    for name, frames in (("Jump", 20), ("Run", 10), ("Swim", 20)):
        (ucf / name).mkdir(parents=True)
        clip = ucf / name / f"v_{name}_g01_c01.avi"
        write_video(clip, numbered_frames(frames), 25, codec="mpeg4", pix_fmt="yuv420p")
    config = config_from_dict(
        {
            "data": {"train_subset": "val", "val_subset": ""},
            "clip": {"frame_size": [64, 48], "crop_size": 32},
        }
    )
    with caplog.at_level(logging.INFO):
        data = prepare_data(
            config, annotations, videos, tmp_path / "cache", trimmed_dir=ucf, progress=False
        )
    assert data.classes == ("Jump", "Run")
    assert dict(data.train_frames) == {"video_validation_0000051": 100}  # 4 s at 25 fps
    assert data.val_gt.videos == () and dict(data.val_frames) == {}
    assert dict(data.trimmed) == {"trimmed/Jump/v_Jump_g01_c01": 1}
    lines = [record.getMessage() for record in caplog.records if "left out" in record.getMessage()]
    assert len(lines) == 2
    assert "v_Run_g01_c01.avi: 10 frames at 25 fps, fewer than a clip's 16" in lines[1]
    assert lines[0].endswith("1 of 3 folders are not among the 2 classes, left out (Swim)")
    assert sorted(set(stage_samples(PROPOSAL, config, data, train=True).label)) == [0, 1]
    assert set(stage_samples(LOCALIZATION, config, data, train=True).label) == {1}  # no Run
    assert len(stage_samples(LOCALIZATION, config, data, train=False)) == 0
