"""Boundary clips: each detection's start and end moved by a network that looks at one
boundary closely (docs/accuracy.md, "Learned boundaries").

A boundary's clip is centred on it and spans ``scale`` of its detection (at least the
network's clip frames), so its frames sample the boundary twice as densely as a window of the
detection's length at the default 0.5. The network (C3D with two outputs) gives the start's
and the end's offset from the clip's centre, as fractions of the clip's length; each
boundary takes the output for its own kind. ``rounds`` repeats it from the moved boundaries.

Frames are 1-based, times ``frame / fps``, as the windows'. An offset is held to half the
clip: the network was trained with the boundary inside its clip, and the bound lets a stream
know the frames a detection can need (:func:`reach_frames`) before refining it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from scnn.clips import InputConvention, assemble_clips
from scnn.model import Network
from scnn.precision import exact_fp32

SCALE = 0.5  # a boundary clip spans this share of its detection
ROUNDS = 2
MAX_ROUNDS = 16  # a model's or a run's rounds at most
MAX_OFFSET = 0.5  # of the clip's length: a boundary moves at most to its clip's edge


@dataclass(frozen=True, eq=False)
class BoundaryClips:
    """The boundary-clip network of a model directory and how detection applies it."""

    network: Network  # C3D, 2 outputs: start's and end's offset from a clip's centre / its length
    rounds: int = ROUNDS
    scale: float = SCALE


def clip_lengths(segments_s: np.ndarray, scale: float, fps: float, min_frames: int) -> np.ndarray:
    """Frames of each segment's two boundary clips: ``scale`` of the segment, at least
    ``min_frames``."""
    lengths = np.round(scale * (segments_s[:, 1] - segments_s[:, 0]) * fps)
    return np.maximum(min_frames, lengths).astype(np.int64)


def reach_frames(
    segments_s: np.ndarray, clips: BoundaryClips, fps: float, min_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first and last frame any of ``clips.rounds`` rounds can read for each segment:
    each round moves a boundary by at most half its clip, and the segment, so the next clip,
    grows by at most both halves."""
    start, end = segments_s[:, 0] * fps, segments_s[:, 1] * fps
    length = end - start
    moved = np.zeros_like(start)  # how far a boundary may have moved so far
    reach = np.zeros_like(start)
    for _ in range(clips.rounds):
        clip = np.maximum(min_frames, clips.scale * length + 1)  # +1: clip_lengths' rounding
        reach = np.maximum(reach, moved + clip / 2 + 1)  # +1: the clip's placement's rounding
        moved += MAX_OFFSET * clip
        length += 2 * MAX_OFFSET * clip
    first = np.floor(start - reach).astype(np.int64)
    # a clip held inside the video at its start spans at most its length, under 2 × reach
    last = np.ceil(np.maximum(end + reach, 2 * reach)).astype(np.int64)
    return np.maximum(first, 1), last


def refine_segments(
    segments_s: np.ndarray,
    frames: np.ndarray | torch.Tensor,
    first_frame: int,
    num_frames: int,
    clips: BoundaryClips,
    offsets_of: Callable[[torch.Tensor], np.ndarray],
    convention: InputConvention,
    fps: float,
) -> np.ndarray:
    """``(N, 2)`` seconds: each segment's start and end moved by ``clips.rounds`` rounds.

    ``frames`` hold frames ``first_frame ..`` of a video of ``num_frames`` frames, decoded at
    the convention's frame size, and must cover :func:`reach_frames` of every segment (clipped
    to the video). ``offsets_of`` runs the network: ``(B, 3, T, H, W)`` clips to ``(B, 2)``
    offsets. A round that would make a segment end before it starts leaves it as it was."""
    segments_s = np.asarray(segments_s, np.float64).reshape(-1, 2).copy()
    if len(segments_s) == 0:
        return segments_s
    for _ in range(clips.rounds):
        lengths = np.minimum(
            clip_lengths(segments_s, clips.scale, fps, convention.clip_frames), num_frames
        )
        moved = segments_s.copy()
        for end in (0, 1):
            centre = segments_s[:, end] * fps
            begin = np.round(centre - (lengths - 1) / 2).astype(np.int64)
            begin = np.clip(begin, 1, num_frames - lengths + 1)
            batch = assemble_clips(
                frames, begin, lengths, convention, train=False, first_frame=first_frame
            )
            offset = np.clip(offsets_of(batch)[:, end], -MAX_OFFSET, MAX_OFFSET)
            moved[:, end] = (begin + (lengths - 1) / 2 + offset * lengths) / fps
        keep = moved[:, 1] > moved[:, 0]
        segments_s[keep] = moved[keep]
    return segments_s


def network_offsets(network: torch.nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    """``offsets_of`` for :func:`refine_segments`: ``network`` on clips in its own device
    and dtype (an inference copy, pipeline.inference_network), as float64; fp32 in fp32 on
    CUDA too (precision.exact_fp32)."""
    parameter = next(network.parameters())

    @torch.inference_mode()
    def offsets_of(batch: torch.Tensor) -> np.ndarray:
        batch = batch.to(parameter.device, parameter.dtype, memory_format=torch.channels_last_3d)
        with exact_fp32(parameter.device, parameter.dtype):
            return network(batch).double().cpu().numpy()

    return offsets_of
