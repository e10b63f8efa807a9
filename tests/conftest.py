"""Shared test setup: one torch thread, so tests never oversubscribe the 2-core machine; the
tiny model and video most detection tests share."""

from pathlib import Path

import pytest
import torch
from detecting import tinted_video
from tiny import random_model

from scnn.bundled_data import resolve_class_table, resolve_ground_truth

torch.set_num_threads(1)

DATA = Path(__file__).resolve().parent / "data"  # sources and reference numbers: its README.md
THUMOS14 = DATA / "thumos14"
THUMOS14_TEST = THUMOS14 / "annotations" / "test"
THUMOS14_VAL = resolve_ground_truth("thumos14-val")
THUMOS14_CLASSES = resolve_class_table("thumos14")
ACTIVITYNET_EXAMPLE = DATA / "activitynet_example"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model directory with random weights (tests/tiny.py), one per test module; modules
    that need another model define their own."""
    return random_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A short tinted video whose name has a space (tests/detecting.py), one per test module."""
    return tinted_video(tmp_path_factory.mktemp("videos") / "clip one.mp4")
