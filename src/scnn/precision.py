"""Where bf16 pays: the one place that decides whether a device computes in bf16 natively.

Detection (``precision="auto"``) and training (``amp``) both autocast to bf16 only where the
hardware multiplies bf16 natively; elsewhere bf16 is emulated and slower than fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX). Linux only: other
    systems report False."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: CUDA, or a CPU with AVX512-BF16/AMX."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


@contextmanager
def exact_fp32(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """fp32 that is fp32: on CUDA, cuDNN convolves fp32 in TF32 (10-bit mantissa) unless
    told otherwise (``torch.backends.cudnn.allow_tf32`` is True by default), and the imported
    Caffe networks would not then match Caffe's fp32 forward to 2e-5 (docs/caffe.md). Inside
    this block fp32 work on ``device`` runs in fp32; the settings are restored after, so a
    caller's own choice stands."""
    if device.type != "cuda" or dtype != torch.float32:
        yield
        return
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
