"""The front door: the bundled model on fresh synthetic videos, end to end."""

import json

import numpy as np
import pytest
from PIL import Image

from scnn.demo import run_demo
from scnn.detect import BUNDLED_MODEL, Detector
from scnn.formats import load_detections
from scnn.synth import CLASS_NAMES


def test_the_bundled_model_ships_with_the_package():
    detector = Detector.load()
    assert (BUNDLED_MODEL / "model.json").is_file()
    assert set(detector.classes) == set(CLASS_NAMES[:6])
    assert detector.model.clip.crop_size == 56 and not detector.model.use_prior


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, videos=1, seed=7, quiet=True)


def test_demo_detects_evaluates_and_draws(demo):
    out = demo.out
    assert demo.num_videos == 1 and not demo.failures
    assert set(demo.results) == {"thumos14", "scnn", "activitynet"}
    for name in ("detections.json", "detections.csv"):
        detections = load_detections(out / name, classes=CLASS_NAMES[:6])
        assert len(detections) == demo.num_detections > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["activitynet"]["iou_thresholds"][0] == 0.5
    assert all(0.0 <= v <= 1.0 for v in metrics["scnn"]["mAP"])
    (png,) = (out / "timelines").glob("*.png")
    with Image.open(png) as picture:
        picture.verify()
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.size[0] > 500
        assert len(np.unique(np.asarray(picture.convert("RGB")).reshape(-1, 3), axis=0)) > 4
    assert "mAP@0.5" in demo.summary()


def test_the_bundled_model_finds_the_synthetic_actions(demo):
    """A real-accuracy floor on one fresh video: far above chance, well below the README's
    figure for 8 videos, so the test does not hang on one unlucky video."""
    assert demo.results["activitynet"].mean_ap[0] > 0.3


def test_detection_scores_only_the_windows_it_uses(demo):
    (video,) = (demo.out / "test_data" / "videos").glob("*.mp4")
    detector = Detector.load()
    everything = detector.score_windows(video)
    action = everything.label_index > 0
    assert 0 < action.sum() < len(everything)  # some windows are background, some not
    used = detector.score_windows(video, background=False)
    for field in ("window_frames", "start_frame", "end_frame", "start_s", "label_index", "score"):
        np.testing.assert_array_equal(getattr(used, field), getattr(everything, field)[action])
    assert detector(video) == detector.refine(video, detector.detections(everything))
