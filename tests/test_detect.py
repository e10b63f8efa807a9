"""The Detector: the model directory's settings unless told otherwise, and detections."""

import dataclasses

import numpy as np
import pytest
from tiny import MODEL_CLASSES as CLASSES
from tiny import random_model
from videos import numbered_frames, write_video

from scnn.detect import Detector
from scnn.errors import VideoError
from scnn.formats import load_detections
from scnn.modelfile import save_model
from scnn.postprocess import postprocess
from scnn.windows import WindowConfig


def test_detections_are_sorted_and_suppressed(model_dir, video):
    detector = Detector.load(model_dir, proposal_threshold=0.0, nms_threshold=0.4)
    detections = detector(video)
    assert detections and all(d.label in CLASSES for d in detections)
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for label in CLASSES:
        segments = np.array([(d.start_s, d.end_s) for d in detections if d.label == label])
        for i in range(len(segments)):
            for j in range(i + 1, len(segments)):
                inter = min(segments[i, 1], segments[j, 1]) - max(segments[i, 0], segments[j, 0])
                union = np.ptp(segments[[i, j]])
                assert inter <= 0 or inter / union <= 0.4 + 1e-9


def test_top_k_and_min_score(model_dir, video):
    detector = Detector.load(model_dir, proposal_threshold=0.0)
    assert len(detector.with_settings(top_k=3)(video)) == 3
    everything = detector(video)
    cut = everything[len(everything) // 2].score
    assert all(d.score >= cut for d in detector.with_settings(min_score=cut)(video))


def test_the_model_directory_decides_voting_unless_told(video, tmp_path):
    path = random_model(tmp_path / "voting", vote_iou=0.4)
    detector = Detector.load(path, proposal_threshold=0.0, nms_threshold=0.4)
    assert detector.model.vote_iou == 0.4
    windows = detector.score_windows(video)
    voted = postprocess(windows, 0.4, prior=detector.model.prior, vote_iou=0.4)
    assert detector.detections(windows) == voted
    plain = detector.with_settings(vote_iou=0.0).detections(windows)
    assert plain == postprocess(windows, 0.4, prior=detector.model.prior)
    assert plain != voted


def test_vote_iou_reaches_postprocess(model_dir, video):
    detector = Detector.load(model_dir, proposal_threshold=0.0, nms_threshold=0.4)
    windows = detector.score_windows(video)
    assert detector.model.vote_iou is None  # a model saved without it does not vote
    voted = detector.with_settings(vote_iou=0.5).detections(windows)
    assert voted == postprocess(windows, 0.4, prior=detector.model.prior, vote_iou=0.5)
    assert voted != detector.detections(windows)


@pytest.fixture(scope="module")
def model_32_to_128(tmp_path_factory):
    """A model whose windows are 32, 64 and 128 frames long, each length weighted differently."""
    prior = {32: np.full(3, 0.5), 64: np.full(3, 0.25), 128: np.full(3, 1.0)}
    path = tmp_path_factory.mktemp("model_32_to_128")
    return random_model(path, windows=WindowConfig((32, 64, 128)), prior=prior)


def test_prior_weights_each_window_by_the_models_own_lengths(model_32_to_128, video):
    detector = Detector.load(model_32_to_128, proposal_threshold=0.0, nms_threshold=1.0)
    windows = detector.score_windows(video)
    assert set(windows.window_frames.tolist()) == {32, 64, 128}
    weighted = {(d.start_s, d.end_s, d.label): d.score for d in detector.detections(windows)}
    plain = detector.with_settings(use_prior=False).detections(windows)
    assert len(plain) == len(weighted) == int((windows.label_index > 0).sum())
    weight = {32: 0.5, 64: 0.25, 128: 1.0}
    for d in plain:
        length = round((d.end_s - d.start_s) * 25) + 1
        assert weighted[(d.start_s, d.end_s, d.label)] == pytest.approx(d.score * weight[length])


def test_video_shorter_than_the_models_shortest_window_is_an_error(model_32_to_128, tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, numbered_frames(20, 64, 48), 25, "libx264")
    with pytest.raises(VideoError, match="short.mp4.*shorter than the shortest window .32"):
        Detector.load(model_32_to_128).score_windows(path)


def test_the_model_directory_decides_the_prior_unless_told(model_dir, video, tmp_path):
    detector = Detector.load(model_dir, proposal_threshold=0.0)
    assert detector.model.use_prior
    weighted = detector(video)
    plain = detector.with_settings(use_prior=False)(video)
    # The fixture's prior is 1/6 everywhere: the same detections at a sixth of the score.
    assert [d.score / 6 for d in plain] == pytest.approx([d.score for d in weighted])
    loaded = Detector.load(model_dir).model
    save_model(tmp_path / "no_prior", dataclasses.replace(loaded, use_prior=False))
    no_prior = Detector.load(tmp_path / "no_prior", proposal_threshold=0.0)
    assert not no_prior.model.use_prior
    assert [d.score for d in no_prior(video)] == pytest.approx([d.score for d in plain])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cli_precision_reaches_the_detector(model_dir, video, tmp_path, precision):
    from scnn import cli

    out = tmp_path / "det.csv"
    argv = ["--quiet", "detect", str(video), "--model", str(model_dir), "-o", str(out)]
    assert cli.main([*argv, "--proposal-threshold", "0", "--precision", precision]) == 0
    expected = Detector.load(model_dir, proposal_threshold=0.0, precision=precision)(video)
    got = load_detections(out, classes=CLASSES)
    assert [(d.start_s, d.end_s, d.label) for d in got] == [
        (d.start_s, d.end_s, d.label) for d in expected
    ]
    assert [d.score for d in got] == pytest.approx([d.score for d in expected], abs=1e-4)


def test_cli_rejects_an_unknown_compile_mode_in_one_line(model_dir, video, tmp_path, capsys):
    from scnn import cli

    argv = ["detect", str(video), "--model", str(model_dir), "-o", str(tmp_path / "d.csv")]
    assert cli.main([*argv, "--compile", "fastest"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "scnn: error: compile mode 'fastest' is not one of default, reduce-overhead, "
        "max-autotune, max-autotune-no-cudagraphs"
    )
    assert not (tmp_path / "d.csv").exists()
