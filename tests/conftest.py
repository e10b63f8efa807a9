"""Shared test setup: one torch thread, so tests never oversubscribe the 2-core machine."""

from pathlib import Path

import torch

from scnn.bundled_data import resolve_class_table, resolve_ground_truth

torch.set_num_threads(1)

DATA = Path(__file__).resolve().parent / "data"  # sources and reference numbers: its README.md
THUMOS14 = DATA / "thumos14"
THUMOS14_TEST = THUMOS14 / "annotations" / "test"
THUMOS14_VAL = resolve_ground_truth("thumos14-val")
THUMOS14_CLASSES = resolve_class_table("thumos14")
ACTIVITYNET_EXAMPLE = DATA / "activitynet_example"
