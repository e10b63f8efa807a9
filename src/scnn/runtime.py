"""Where and how the networks run: the one rule for the device, the precision, the batch size,
the decoded chunk and the decoding processes, shared by detection, feature extraction and
training.

The device: ``auto`` is CUDA when available, else the CPU (the default of ``scnn detect``,
``scnn features`` and ``scnn train`` alike); a CUDA device asked for where there is none is an
error. The precision: bf16 where the device computes it natively (precision.native_bf16).
Process-wide settings that go with a device (glibc's allocator on a CPU: scnn.allocator;
cuDNN autotuning) are the command's to make (cli/), never a library call's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from scnn.allocator import MMAP_THRESHOLD_BYTES
from scnn.errors import ScnnError
from scnn.model import Network
from scnn.precision import native_bf16
from scnn.video import CHUNK_FRAMES

DEVICES = "auto, cpu, cuda or cuda:N"  # what a device name may be
PRECISIONS = ("auto", "fp32", "bf16")
# Clips per network call. On a CPU small batches win: at most CPU_BATCH_SIZE clips, and only
# as many as keep the largest activation (conv1's output) small enough for the heap that
# scnn.allocator keeps (MMAP_THRESHOLD_BYTES), so its memory is reused instead of page-faulted
# afresh on each call. Measured best for both sizes (benchmarks/speed/RESULTS.md): 16 clips of the
# CPU model (1.5-2x the clips/s of batch 64; 8 peaks 20-48 MB lower in about 5 % more time),
# 1 of the full-size C3D (12.0 clips/s; batches 2 and 4 within noise of it, 11.7-13.0; 8:
# 11.1). On a GPU, large.
CPU_BATCH_SIZE = 16
GPU_BATCH_SIZE = 256
# Frames per decoded chunk on a CPU. The clips of the windows that end in a chunk are gathered
# at once and queued for the networks, each lane its own: with the default grid, about one
# window per 2 frames, so 256-frame chunks gathered some 126 clips (19 MB of the bundled
# model's uint8 crops) and queued as many. Detection's peak, bundled model, 10-minute video,
# 2 threads: 460-468 MB with 256-frame chunks, 403-422 MB with 64, in 14.4 against 14.8 s
# (benchmarks/speed/RESULTS.md, "Memory along a video: smaller chunks on a CPU"). Live
# detection reads the same chunks, which also bound its finality delay (live.py).
CPU_CHUNK_FRAMES = 64


def resolve_device(name: str | torch.device) -> torch.device:
    """The device ``name`` says: ``auto`` is CUDA when available, else the CPU; a CUDA device
    where CUDA is not available, or a name torch does not know, is a ScnnError."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ScnnError(f"device '{name}' is not one of {DEVICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ScnnError(f"device '{name}' requested but CUDA is not available")
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether the networks compute in bf16: ``precision`` "bf16", or "auto" on a device that
    computes bf16 natively (CUDA, or a CPU with AVX512-BF16/AMX)."""
    if precision not in PRECISIONS:
        raise ScnnError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def cpu_batch_size(network: Network, bf16: bool) -> int:
    """Clips per call on a CPU: see CPU_BATCH_SIZE."""
    element = 2 if bf16 else 4
    per_clip = network.conv1.out_channels * network.clip_frames * network.crop_size**2 * element
    return max(1, min(CPU_BATCH_SIZE, MMAP_THRESHOLD_BYTES // per_clip))


def chunk_frames_for(device: torch.device) -> int:
    """Frames per decoded chunk, for a file and a live stream alike: CPU_CHUNK_FRAMES on a
    CPU, video.CHUNK_FRAMES on a GPU."""
    return CPU_CHUNK_FRAMES if device.type == "cpu" else CHUNK_FRAMES


def decode_processes_for(device: torch.device) -> int:
    """Processes decoding one video by default: 1 on a CPU, where the networks need every
    core; on a GPU, which leaves the cores to the decoders, one per 2 cores, at most 8."""
    if device.type == "cpu":
        return 1
    return min(8, max(1, (os.cpu_count() or 1) // 2))


@dataclass(frozen=True)
class InferenceRuntime:
    """How prediction runs a network (detection and feature extraction alike)."""

    device: torch.device
    bf16: bool
    batch_size: int  # clips per network call
    decode_processes: int  # processes decoding one video (parallel_decode.py)

    @classmethod
    def choose(
        cls,
        network: Network,
        device: str | torch.device,
        precision: str = "auto",
        batch_size: int | None = None,
        decode_processes: int | None = None,
    ) -> InferenceRuntime:
        """The runtime of ``network`` on ``device`` (see :func:`resolve_device`); ``None``
        picks by device: GPU_BATCH_SIZE or :func:`cpu_batch_size`, :func:`decode_processes_for`."""
        resolved = resolve_device(device)
        bf16 = use_bf16(precision, resolved)
        if batch_size is None:
            on_gpu = resolved.type == "cuda"
            batch_size = GPU_BATCH_SIZE if on_gpu else cpu_batch_size(network, bf16)
        return cls(resolved, bf16, batch_size, decode_processes or decode_processes_for(resolved))

    @property
    def dtype(self) -> torch.dtype:
        """Of the inference copy's weights and of the normalised clips."""
        return torch.bfloat16 if self.bf16 else torch.float32
