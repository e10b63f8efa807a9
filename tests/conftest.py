"""Shared test setup: one torch thread, so tests never oversubscribe the 2-core machine."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"
THUMOS14 = SHARED / "data" / "thumos14"
ACTIVITYNET_EXAMPLE = SHARED / "data" / "activitynet_example"


@pytest.fixture(scope="session")
def thumos14_dir() -> Path:
    if not THUMOS14.is_dir():
        pytest.fail(f"shared THUMOS14 data not found at {THUMOS14}")
    return THUMOS14
