"""The videos and the comparison that the detection tests share (test_pipeline.py,
test_lanes.py, test_detect.py, test_batch.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from videos import numbered_frames, write_video

from scnn.windows import window_grid

LONG_VIDEO_FRAMES = 3250  # 130 s at 25 fps
EVERY_WINDOW = {"precision": "fp32", "proposal_threshold": 0.0}  # both networks see all


def tinted_video(path: Path) -> Path:
    """700 frames at 25 fps: three decode chunks, so 512-frame windows span chunk borders."""
    rng = np.random.default_rng(0)
    frames = numbered_frames(700, 64, 48)
    frames = (frames // 2 + rng.integers(0, 128, (1, 1, 1, 3))).astype(np.uint8)
    write_video(path, frames, 25, "libx264")
    return path


def long_video(path: Path) -> Path:
    """130 s: three 60 s decode segments, or two lanes of at least 60 s."""
    return write_video(path, numbered_frames(LONG_VIDEO_FRAMES, 64, 48), 25, "libx264")


def assert_same_windows(one, two, atol: float) -> None:
    """The same windows of the long video, labels and scores (up to ``atol``), in any order:
    chunks end elsewhere (segment or lane borders), so windows come in another order."""
    assert len(one) == len(two) == len(window_grid(LONG_VIDEO_FRAMES))
    first, second = (np.lexsort((w.start_frame, w.window_frames)) for w in (one, two))
    for column in ("start_frame", "window_frames", "label_index"):
        assert np.array_equal(getattr(two, column)[second], getattr(one, column)[first]), column
    np.testing.assert_allclose(two.score[second], one.score[first], rtol=0, atol=atol)
