"""Speed of cutting a network batch of clips out of decoded frames, next to the obvious loop.

On its own (speed.py runs it among the others):

    python3 benchmarks/speed/speed_clips.py --model cpu --threads 2
"""

from __future__ import annotations

import numpy as np
import torch
from harness import (
    Bench,
    ClipConfig,
    Row,
    WindowConfig,
    assemble_clips,
    best_rate,
    read_frames,
    sample_frame_indices,
    section_main,
    window_grid,
)


def baseline_clip(frames: np.ndarray, start: int, length: int, clip: ClipConfig) -> torch.Tensor:
    """One window's clip, cut frame by frame (the obvious loop)."""
    height, width = frames.shape[1:3]
    top, left, crop = (height - clip.crop_size) // 2, (width - clip.crop_size) // 2, clip.crop_size
    pictures = [
        frames[i - 1, top : top + crop, left : left + crop]
        for i in sample_frame_indices(start, length, clip.clip_frames)
    ]
    tensor = torch.from_numpy(np.stack(pictures)).permute(3, 0, 1, 2).float()
    mean = torch.tensor(clip.mean_rgb).view(3, 1, 1, 1)
    return (tensor - mean) / torch.tensor(clip.std_rgb).view(3, 1, 1, 1)


def measure(bench: Bench) -> None:
    """A batch of clips for the networks: one window at a time (baseline), then
    ``assemble_clips`` (one gather for the whole batch)."""
    clip = bench.size.clip
    frames = read_frames(bench.video, size=clip.frame_size)[:768]
    grid = window_grid(len(frames), WindowConfig())
    pick = np.resize(np.arange(len(grid)), bench.batch)
    starts, lengths = grid.start_frame[pick], grid.length_frames[pick]
    base = best_rate(
        lambda: torch.stack(
            [baseline_clip(frames, s, n, clip) for s, n in zip(starts, lengths, strict=True)]
        ).to(bench.device),
        bench.batch,
        bench.device,
        bench.args.seconds,
    )
    source = torch.from_numpy(frames).to(bench.device) if bench.device.type == "cuda" else frames
    ours = best_rate(
        lambda: assemble_clips(source, starts, lengths, clip.convention(), False),
        bench.batch,
        bench.device,
        bench.args.seconds,
    )
    where = "on the GPU" if bench.device.type == "cuda" else "NumPy gather"
    bench.add(Row("clips", f"batch {bench.batch}, {where}", ours, "clips/s", base))


if __name__ == "__main__":
    section_main(__doc__, measure)
