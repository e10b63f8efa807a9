"""Where bf16 pays: the one place that decides whether a device computes in bf16 natively.

Detection (``precision="auto"``) and training (``amp``) both autocast to bf16 only where the
hardware multiplies bf16 natively; elsewhere bf16 is emulated and slower than fp32.
"""

from __future__ import annotations

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
