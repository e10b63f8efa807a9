"""Network input for windows: 16 frames sampled across each window, cropped and normalised.

Every window, whatever its length, becomes one 16-frame clip (method.md §1), so a 512-frame
window is seen at 1/32 of the frame rate and a 16-frame window at the full 25 fps. Clip
assembly gathers all windows of a batch with one fancy-indexing call on the decoded frame
array: no Python loop per frame or per window.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch

from scnn.video import FRAME_SIZE

CLIP_FRAMES = 16  # frames fed to the network per window
FRAME_WIDTH, FRAME_HEIGHT = FRAME_SIZE  # pixels, C3D's resize before cropping
CROP_SIZE = 112  # pixels, square crop fed to the network
# Per-channel average of C3D's Sports-1M mean cube (16×128×171), 0..255 scale, R, G, B.
# Approximate to about 0.1; C3D subtracts the whole cube, a per-channel mean is the usual
# stand-in for it.
C3D_MEAN_RGB = (101.4, 97.7, 90.3)


# The mean a network's input has subtracted: one value for every channel, one per channel
# (R, G, B), or a per-pixel cube (clip_frames, height, width, 3) RGB of the decoded frames.
Mean = float | tuple[float, float, float] | torch.Tensor


@dataclass(frozen=True, eq=False)
class InputConvention:
    """How decoded frames become a network's input, as its weights learnt it: one record that
    a weights reader returns (scnn.caffe), the model directory stores (scnn.modelfile) and the
    clip code applies (:func:`gather_clips`, :func:`normalize_clips`).

    ``frame_size``: (width, height) the frames are decoded at; ``crop_size``: the square cut
    from them; ``bgr``: the network takes its channels in B, G, R order (Caffe networks learnt
    on OpenCV frames); ``mean``: see :data:`Mean` (C3D's Caffe mean file is a cube, which
    Caffe subtracts from the whole frames before cropping; Res3D's is the value 128);
    ``std``: the per-channel (R, G, B) divisor after the mean, 1 for none.
    """

    frame_size: tuple[int, int] = (FRAME_WIDTH, FRAME_HEIGHT)  # (width, height)
    crop_size: int = CROP_SIZE
    clip_frames: int = CLIP_FRAMES
    bgr: bool = False
    mean: Mean = C3D_MEAN_RGB
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        width, height = self.frame_size
        if not 0 < self.crop_size <= min(width, height):
            raise ValueError(f"crop {self.crop_size} px does not fit frames of {width}×{height} px")
        if len(self.std) != 3 or not all(_finite(s) and s > 0 for s in self.std):
            raise ValueError(f"std {list(self.std)}: expected 3 finite numbers > 0")
        cube = self.mean_cube
        per_channel = self.mean if isinstance(self.mean, tuple) else (self.mean,) * 3
        if cube is None and (len(per_channel) != 3 or not all(map(_finite, per_channel))):
            raise ValueError(f"mean {self.mean!r}: expected a finite number or 3 of them")
        expected = (self.clip_frames, height, width, 3)
        if cube is not None and tuple(cube.shape) != expected:
            raise ValueError(f"mean cube has shape {tuple(cube.shape)}, expected {expected}")

    @property
    def mean_cube(self) -> torch.Tensor | None:
        """The per-pixel mean, or None when the mean is a value or one per channel."""
        return self.mean if isinstance(self.mean, torch.Tensor) else None

    @property
    def channels(self) -> str:
        return "BGR" if self.bgr else "RGB"

    def to(self, device: torch.device | str) -> InputConvention:
        """The same convention with a mean cube on ``device``."""
        cube = self.mean_cube
        return self if cube is None else replace(self, mean=cube.to(device))

    @cached_property
    def centre_mean(self) -> torch.Tensor:
        """The mean subtracted from a test-time (centre-cropped) clip, in the gathered
        ``(…, crop·3)`` layout: a cube's centre crop ``(clip_frames, crop, crop·3)``, else
        the channels' values repeated across a row."""
        crop, cube = self.crop_size, self.mean_cube
        if cube is None:
            values = self.mean if isinstance(self.mean, tuple) else (float(self.mean),) * 3
            return torch.tensor(values).repeat(crop)
        top, left = centre_crop_offsets(cube.shape[1], cube.shape[2], crop)
        centre = cube[:, top : top + crop, left : left + crop]
        return centre.reshape(self.clip_frames, crop, crop * 3).contiguous()

    def describe(self, cube_file: str = "") -> dict[str, Any]:
        """The record as JSON values; a cube is named by ``cube_file``, where it is stored."""
        if self.mean_cube is not None:
            mean: Any = cube_file
        else:
            mean = list(self.mean) if isinstance(self.mean, tuple) else self.mean
        return {
            "frame_size": list(self.frame_size),
            "crop_size": self.crop_size,
            "clip_frames": self.clip_frames,
            "channels": self.channels,
            "mean": mean,
            "std": list(self.std),
        }

    @classmethod
    def from_description(
        cls, values: dict[str, Any], cube: torch.Tensor | None = None
    ) -> InputConvention:
        """The record of :meth:`describe`'s values; ``cube``: the stored cube they name."""
        if values["channels"] not in ("RGB", "BGR"):
            raise ValueError(f"channels {values['channels']!r}: expected RGB or BGR")
        mean = values["mean"]
        if isinstance(mean, str) and cube is None:
            raise ValueError(f"mean {mean!r} names a cube the model does not hold")
        return cls(
            frame_size=tuple(values["frame_size"]),
            crop_size=int(values["crop_size"]),
            clip_frames=int(values["clip_frames"]),
            bgr=values["channels"] == "BGR",
            mean=cube if isinstance(mean, str) else tuple(mean) if isinstance(mean, list) else mean,
            std=tuple(values["std"]),
        )


def _finite(value: Any) -> bool:
    """A JSON or Python number that is neither NaN nor infinite (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ClipConfig:
    """How windows are turned into network input, as a training config sets it; the network's
    input convention is :meth:`convention`.

    ``bgr``: reverse the channel order after normalising. C3D was trained in Caffe on
    OpenCV (BGR) frames: a Caffe file as ``init_from`` sets it (scnn.pretrained).
    ``std_rgb``: C3D divides by nothing (1, 1, 1); a model trained from scratch on a CPU
    converges faster on unit-variance input, e.g. (58, 57, 57).
    ``mirror``: C3D's random horizontal mirror in training. Turn it off when classes are
    defined by direction (left vs right, clockwise vs anticlockwise, as the synthetic ones):
    a mirrored MoveLeft clip is a MoveRight clip with the wrong label.
    """

    frame_size: tuple[int, int] = (FRAME_WIDTH, FRAME_HEIGHT)  # (width, height) of decoded frames
    crop_size: int = CROP_SIZE
    clip_frames: int = CLIP_FRAMES
    mean_rgb: tuple[float, float, float] = C3D_MEAN_RGB
    std_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bgr: bool = False
    mirror: bool = True

    def __post_init__(self) -> None:
        self.convention()  # checks that the crop fits the frames

    def convention(self, mean_cube: torch.Tensor | None = None) -> InputConvention:
        """The input convention these settings make; ``mean_cube`` replaces ``mean_rgb``."""
        return InputConvention(
            frame_size=self.frame_size,
            crop_size=self.crop_size,
            clip_frames=self.clip_frames,
            bgr=self.bgr,
            mean=self.mean_rgb if mean_cube is None else mean_cube,
            std=self.std_rgb,
        )


def sample_frame_indices(
    start_frames: int | np.ndarray, lengths_frames: int | np.ndarray, clip_frames: int = CLIP_FRAMES
) -> np.ndarray:
    """The 1-based frames of each window's clip: ``s + floor(k·L / clip_frames)``, k = 0…15;
    shape ``(clip_frames,)`` for one window, ``(B, clip_frames)`` for arrays of B windows.

    For the grid's lengths (multiples of 16) this is exactly s, s + L/16, …, s + 15·L/16
    (method.md §1). A window shorter than the clip repeats frames.
    """
    starts = np.asarray(start_frames, dtype=np.int64)[..., None]
    lengths = np.asarray(lengths_frames, dtype=np.int64)[..., None]
    return starts + (np.arange(clip_frames, dtype=np.int64) * lengths) // clip_frames


def assemble_clips(
    frames: np.ndarray | torch.Tensor,
    start_frames: np.ndarray,
    lengths_frames: np.ndarray,
    convention: InputConvention,
    train: bool,
    rng: np.random.Generator | None = None,
    first_frame: int = 1,
    *,
    mirror: bool = False,
) -> torch.Tensor:
    """Clips for a batch of windows, as a ``(B, 3, clip_frames, crop, crop)`` float32 tensor:
    :func:`gather_clips` then :func:`normalize_clips` (see both)."""
    gathered = gather_clips(
        frames, start_frames, lengths_frames, convention, train, rng, first_frame, mirror=mirror
    )
    return normalize_clips(gathered, convention)


def gather_clips(
    frames: np.ndarray | torch.Tensor,
    start_frames: np.ndarray,
    lengths_frames: np.ndarray,
    convention: InputConvention,
    train: bool,
    rng: np.random.Generator | None = None,
    first_frame: int = 1,
    *,
    mirror: bool = False,
) -> torch.Tensor:
    """The cropped pixels of each window's clip, ``(B, clip_frames, crop, crop, 3)`` uint8.

    ``frames`` is ``(T, H, W, 3)`` uint8 RGB at ``convention.frame_size``; ``frames[0]`` is frame
    number ``first_frame`` (1-based), so a streaming reader can pass just the frames it holds.
    A torch tensor of frames gives clips on its device: on a GPU each decoded frame is copied
    over once, not once per clip that samples it.
    Training: a random crop position and (with ``mirror``) a random horizontal mirror per
    window, drawn from ``rng``, the same for all 16 frames of a clip. Otherwise: the centre crop
    (:func:`centre_crop_offsets`).
    """
    _, height, width, _ = frames.shape
    _check_frame_size(frames, convention)
    time_index = clip_frame_index(
        start_frames, lengths_frames, convention.clip_frames, first_frame, len(frames)
    )
    batch, crop = len(time_index), convention.crop_size
    if train:
        if rng is None:
            raise ValueError("training clips need a random generator")
        top = rng.integers(0, height - crop + 1, size=batch)
        left = rng.integers(0, width - crop + 1, size=batch)
        flips = (rng.random(batch) < 0.5) & mirror
        clips = _gather_each(frames, time_index, top, left, flips, crop)
    else:
        clips = take_frames(centre_crop(frames, convention), time_index)
    return clips if isinstance(clips, torch.Tensor) else torch.from_numpy(clips)


def clip_frame_index(
    start_frames: np.ndarray,
    lengths_frames: np.ndarray,
    clip_frames: int,
    first_frame: int,
    held_frames: int,
) -> np.ndarray:
    """``(B, clip_frames)``: where each window's clip frames lie in a buffer of ``held_frames``
    frames whose first is frame number ``first_frame`` (1-based); ValueError if outside it."""
    starts = np.asarray(start_frames, dtype=np.int64).reshape(-1)
    lengths = np.asarray(lengths_frames, dtype=np.int64).reshape(-1)
    time_index = sample_frame_indices(starts, lengths, clip_frames) - first_frame
    if len(time_index) and (time_index.min() < 0 or time_index.max() >= held_frames):
        raise ValueError(
            f"windows need frames {time_index.min() + first_frame}.."
            f"{time_index.max() + first_frame}, the buffer holds "
            f"{first_frame}..{first_frame + held_frames - 1}"
        )
    return time_index


def take_frames(
    frames: np.ndarray | torch.Tensor,
    time_index: np.ndarray,
    out: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray | torch.Tensor:
    """``frames[time_index]`` (indices already checked), written into ``out`` when given, so a
    stream can reuse one array for every chunk's clips. ``frames`` should then be contiguous:
    NumPy copies other arrays whole before taking from them."""
    if out is None:
        return frames[_as_index(time_index, frames)]
    if isinstance(frames, torch.Tensor):
        flat = _as_index(time_index.reshape(-1), frames)
        torch.index_select(frames, 0, flat, out=out.view(-1, *frames.shape[1:]))
        return out
    return np.take(frames, time_index, axis=0, out=out, mode="clip")


def centre_crop(
    frames: np.ndarray | torch.Tensor, convention: InputConvention
) -> np.ndarray | torch.Tensor:
    """The test-time crop of ``(T, H, W, 3)`` frames at ``convention.frame_size``, a view:
    see :func:`centre_crop_offsets`."""
    _check_frame_size(frames, convention)
    crop = convention.crop_size
    top, left = centre_crop_offsets(frames.shape[1], frames.shape[2], crop)
    return frames[:, top : top + crop, left : left + crop]


def check_network_input(
    network: str, clips: torch.Tensor, clip_frames: int, crop_size: int, layer: str, layers: tuple
) -> None:
    """A network's ``clips`` are ``(batch, 3, clip_frames, crop, crop)`` and ``layer`` is one of
    its ``layers``; otherwise a ValueError naming ``network`` (a programming error, not input)."""
    if layer not in layers:
        raise ValueError(f"layer '{layer}' is not one of {', '.join(layers)}")
    expected = (3, clip_frames, crop_size, crop_size)
    if tuple(clips.shape[1:]) != expected:
        raise ValueError(
            f"{network} expects input (batch, {', '.join(map(str, expected))}), "
            f"got {tuple(clips.shape)}"
        )


def centre_crop_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    """(top, left) of the test-time crop: ``((H − crop) // 2, (W − crop) // 2)``, as Caffe's
    data layer (8, 29 for 128×171 frames)."""
    return (height - crop) // 2, (width - crop) // 2


def _check_frame_size(frames: np.ndarray | torch.Tensor, convention: InputConvention) -> None:
    height, width = frames.shape[1:3]
    if (width, height) != tuple(convention.frame_size):
        raise ValueError(
            f"frames are {width}×{height} px, the input convention expects "
            f"{convention.frame_size[0]}×{convention.frame_size[1]}"
        )


def batch_input_array(
    batch_size: int, convention: InputConvention, dtype: torch.dtype
) -> torch.Tensor:
    """Room for ``batch_size`` clips of ``convention`` as :func:`normalize_clips` writes
    them (its ``out``), on the CPU: an array kept from one batch to the next, where a
    batch-sized temporary per call leaves pieces of the heap behind."""
    crop = convention.crop_size
    return torch.empty((batch_size, convention.clip_frames, crop, crop * 3), dtype=dtype)


def normalize_clips(
    clips: torch.Tensor,
    convention: InputConvention,
    dtype: torch.dtype = torch.float32,
    mean_crops: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gathered uint8 clips as network input, as ``convention`` says: ``(x − mean) / std``
    (computed in float32), the channels in the network's order, then ``dtype``, shaped
    ``(B, 3, clip_frames, crop, crop)``. A mean cube is subtracted as centre-cropped, the
    test-time crop; ``mean_crops``, ``(B, clip_frames, crop, crop, 3)``, gives instead each
    clip's own crop of it (training crops and mirrors each clip, dataset.ClipDataset).

    The tensor is stored channels-last (``torch.channels_last_3d``), the layout the gathered
    frames already have, so no copy is made; C3D runs about 1.9× faster on it on a CPU
    (see scnn.model). Normalise a network batch at a time: the float32 copy of a batch of 16
    small clips stays in cache and in reused memory, 10× faster than of a 128-clip chunk,
    whose fresh pages fault in on every call (benchmarks/speed/RESULTS.md).

    ``out`` (:func:`batch_input_array`, room for at least B clips) receives the values, the
    result a view of it, normalised a clip at a time: the same values, and no float32 copy of
    the whole batch is made.
    """
    batch, clip_frames, crop = clips.shape[:3]
    # Normalise in the gathered (…, crop·3) layout: a contiguous inner dimension is ~3× faster
    # than broadcasting a 3-channel mean over the permuted tensor.
    if mean_crops is None:
        mean = convention.centre_mean.to(clips.device)
    else:
        mean = mean_crops.to(clips.device).reshape(-1, clip_frames, crop, crop * 3)
    std = torch.tensor(convention.std, device=clips.device).repeat(crop)
    flat = clips.reshape(batch, clip_frames, crop, crop * 3)
    if out is None:
        flat = flat.float().sub_(mean).div_(std).to(dtype)
    else:
        means = mean.expand(batch, *mean.shape[-3:])
        centred = torch.empty(flat.shape[1:], dtype=torch.float32, device=flat.device)
        for clip, clip_mean, normalised in zip(flat, means, out, strict=False):
            torch.div(torch.sub(clip, clip_mean, out=centred), std, out=normalised)
        flat = out[:batch]
    tensor = flat.view(batch, clip_frames, crop, crop, 3).permute(0, 4, 1, 2, 3)
    if convention.bgr:
        tensor = tensor.flip(1)
    return tensor.contiguous(memory_format=torch.channels_last_3d)


def _as_index(index: np.ndarray, frames: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``index`` in the array library of ``frames`` (and on its device)."""
    if isinstance(frames, torch.Tensor):
        return torch.from_numpy(index).to(frames.device)
    return index


def _gather_each(
    frames: np.ndarray | torch.Tensor,
    time_index: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    mirror: np.ndarray,
    crop: int,
) -> np.ndarray | torch.Tensor:
    """Clips whose crop position and mirroring differ per window (training batches are small)."""
    clips = []
    for times, y, x, flip in zip(time_index, top, left, mirror, strict=True):
        clip = frames[_as_index(times, frames), y : y + crop, x : x + crop]
        if flip:
            clip = clip.flip(2) if isinstance(clip, torch.Tensor) else clip[:, :, ::-1]
        clips.append(clip)
    if isinstance(frames, torch.Tensor):
        return torch.stack(clips)
    return np.stack(clips)
