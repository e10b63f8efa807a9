"""Network input for windows: 16 frames sampled across each window, cropped and normalised.

Every window, whatever its length, becomes one 16-frame clip (method.md §1), so a 512-frame
window is seen at 1/32 of the frame rate and a 16-frame window at the full 25 fps. Clip
assembly gathers all windows of a batch with one fancy-indexing call on the decoded frame
array: no Python loop per frame or per window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CLIP_FRAMES = 16  # frames fed to the network per window
FRAME_WIDTH = 171  # pixels, C3D's resize before cropping
FRAME_HEIGHT = 128  # pixels
CROP_SIZE = 112  # pixels, square crop fed to the network
# Per-channel average of C3D's Sports-1M mean cube (16×128×171), 0..255 scale, R, G, B.
# Approximate to about 0.1; C3D subtracts the whole cube, a per-channel mean is the usual
# stand-in for it.
C3D_MEAN_RGB = (101.4, 97.7, 90.3)


@dataclass(frozen=True)
class ClipConfig:
    """How windows are turned into network input.

    ``bgr``: reverse the channel order after normalising. C3D was trained in Caffe on
    OpenCV (BGR) frames, so set it when starting from the Sports-1M weights.
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
        width, height = self.frame_size
        if not 0 < self.crop_size <= min(width, height):
            raise ValueError(f"crop {self.crop_size} px does not fit frames of {width}×{height} px")


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
    config: ClipConfig,
    train: bool,
    rng: np.random.Generator | None = None,
    first_frame: int = 1,
) -> torch.Tensor:
    """Clips for a batch of windows, as a ``(B, 3, clip_frames, crop, crop)`` float32 tensor:
    :func:`gather_clips` then :func:`normalize_clips` (see both)."""
    return normalize_clips(
        gather_clips(frames, start_frames, lengths_frames, config, train, rng, first_frame),
        config,
    )


def gather_clips(
    frames: np.ndarray | torch.Tensor,
    start_frames: np.ndarray,
    lengths_frames: np.ndarray,
    config: ClipConfig,
    train: bool,
    rng: np.random.Generator | None = None,
    first_frame: int = 1,
) -> torch.Tensor:
    """The cropped pixels of each window's clip, ``(B, clip_frames, crop, crop, 3)`` uint8.

    ``frames`` is ``(T, H, W, 3)`` uint8 RGB at ``config.frame_size``; ``frames[0]`` is frame
    number ``first_frame`` (1-based), so a streaming reader can pass just the frames it holds.
    A torch tensor of frames gives clips on its device: on a GPU each decoded frame is copied
    over once, not once per clip that samples it.
    Training: a random crop position and a random horizontal mirror per window, drawn from
    ``rng``, the same for all 16 frames of a clip. Otherwise: the centre crop
    (:func:`centre_crop_offsets`).
    """
    num_frames, height, width, _ = frames.shape
    if (width, height) != tuple(config.frame_size):
        raise ValueError(
            f"frames are {width}×{height} px, the clip config expects "
            f"{config.frame_size[0]}×{config.frame_size[1]}"
        )
    starts = np.asarray(start_frames, dtype=np.int64).reshape(-1)
    lengths = np.asarray(lengths_frames, dtype=np.int64).reshape(-1)
    time_index = sample_frame_indices(starts, lengths, config.clip_frames) - first_frame
    if len(time_index) and (time_index.min() < 0 or time_index.max() >= num_frames):
        raise ValueError(
            f"windows need frames {time_index.min() + first_frame}.."
            f"{time_index.max() + first_frame}, the buffer holds "
            f"{first_frame}..{first_frame + num_frames - 1}"
        )

    batch, crop = len(starts), config.crop_size
    if train:
        if rng is None:
            raise ValueError("training clips need a random generator")
        top = rng.integers(0, height - crop + 1, size=batch)
        left = rng.integers(0, width - crop + 1, size=batch)
        mirror = (rng.random(batch) < 0.5) & config.mirror
        clips = _gather_each(frames, time_index, top, left, mirror, crop)
    else:
        top, left = centre_crop_offsets(height, width, crop)
        region = frames[:, top : top + crop, left : left + crop]
        clips = region[_as_index(time_index, frames)]
    return clips if isinstance(clips, torch.Tensor) else torch.from_numpy(clips)


def centre_crop_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    """(top, left) of the test-time crop: ``((H − crop) // 2, (W − crop) // 2)``, as Caffe's
    data layer (8, 29 for 128×171 frames)."""
    return (height - crop) // 2, (width - crop) // 2


def crop_mean_cube(mean_cube: torch.Tensor, config: ClipConfig) -> torch.Tensor:
    """The centre crop of a ``(clip_frames, H, W, 3)`` per-pixel mean, the part subtracted
    from test clips: Caffe subtracts the whole cube from the frames, then crops, which is the
    same as subtracting the cube's crop from the cropped clip."""
    top, left = centre_crop_offsets(mean_cube.shape[1], mean_cube.shape[2], config.crop_size)
    crop = config.crop_size
    return mean_cube[:, top : top + crop, left : left + crop].contiguous()


def normalize_clips(
    clips: torch.Tensor,
    config: ClipConfig,
    dtype: torch.dtype = torch.float32,
    mean_cube: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gathered uint8 clips as network input: ``(x − mean) / std`` per channel (computed in
    float32), then ``dtype``, shaped ``(B, 3, clip_frames, crop, crop)``. ``mean_cube``, a
    ``(clip_frames, crop, crop, 3)`` RGB per-pixel mean (:func:`crop_mean_cube`), or one
    ``(B, clip_frames, crop, crop, 3)`` per clip (training crops each clip elsewhere),
    replaces the per-channel ``config.mean_rgb``.

    The tensor is stored channels-last (``torch.channels_last_3d``), the layout the gathered
    frames already have, so no copy is made; C3D runs about 1.9× faster on it on a CPU
    (see scnn.model). Normalise a network batch at a time: the float32 copy of a batch of 16
    small clips stays in cache and in reused memory, 10× faster than of a 128-clip chunk,
    whose fresh pages fault in on every call (benchmarks/RESULTS.md).
    """
    batch, clip_frames, crop = clips.shape[:3]
    # Normalise in the gathered (…, crop·3) layout: a contiguous inner dimension is ~3× faster
    # than broadcasting a 3-channel mean over the permuted tensor.
    if mean_cube is None:
        mean = torch.tensor(config.mean_rgb, device=clips.device).repeat(crop)
    else:
        mean = mean_cube.to(clips.device).reshape(-1, clip_frames, crop, crop * 3)
    std = torch.tensor(config.std_rgb, device=clips.device).repeat(crop)
    flat = clips.reshape(batch, clip_frames, crop, crop * 3).float()
    flat = flat.sub_(mean).div_(std).to(dtype)
    tensor = flat.view(batch, clip_frames, crop, crop, 3).permute(0, 4, 1, 2, 3)
    if config.bgr:
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
