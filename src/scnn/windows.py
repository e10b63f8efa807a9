"""Temporal geometry: intersection over union of time segments.

Segments are ``(start, end)`` pairs in any one unit (seconds or frames), as rows of an
``(N, 2)`` array.
"""

from __future__ import annotations

import numpy as np


def temporal_iou(segments_a: np.ndarray, segments_b: np.ndarray) -> np.ndarray:
    """Pairwise temporal IoU of ``(N, 2)`` and ``(M, 2)`` segments, as an ``(N, M)`` array.

    IoU = intersection / union, and 0 when the segments do not overlap or only touch.
    For two overlapping 1-D segments the union equals the hull (max end − min start), so this
    one function is both the ActivityNet form and the THUMOS14 kit's
    ``intervaloverlapvalseconds`` form; the two only differ in what callers do with
    reversed segments (start > end), which callers must order first.
    """
    a = np.asarray(segments_a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(segments_b, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0])
    inter = np.clip(inter, 0.0, None)
    union = (a[:, None, 1] - a[:, None, 0]) + (b[None, :, 1] - b[None, :, 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou
