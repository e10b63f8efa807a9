"""Workarounds for PyTorch's CPU kernels, each where C3D's forward pass would hit them.

Each function computes what the plain layer computes (the same values, or the right gradient
where PyTorch's is wrong) and differs only in how; each says what it works around and the
measurement that justifies it (benchmarks/speed/RESULTS.md has the runs). On a GPU, and wherever the
condition does not hold, each is the plain layer.
"""

from __future__ import annotations

import torch
from torch import nn


def convolve(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``, but in fp32 where PyTorch's CPU bf16 kernel gets the gradient wrong.

    Under CPU bf16 autocast (torch 2.13, oneDNN), conv3d's weight gradient is garbage (1e36,
    inf or NaN) whenever the input is exactly 2 frames deep, which is C3D's conv5a and conv5b
    on 16-frame clips; the forward pass and the input gradient are right
    (tests/test_kernels.py). Training in bf16 went NaN within 50 steps because of it. Those two
    layers are 3.6 % of C3D's FLOPs, so they simply train in fp32.
    """
    if (
        x.shape[2] == 2
        and x.device.type == "cpu"
        and torch.is_grad_enabled()
        and torch.is_autocast_enabled("cpu")
    ):
        with torch.autocast("cpu", enabled=False):
            return conv(x.float())
    return conv(x)


class _Relayout(torch.autograd.Function):
    """``x`` copied into ``layout``, its gradient copied back into ``grad_layout``: each side
    of a layer that runs in another memory format gets the format it expects."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, layout: torch.memory_format, grad_layout: torch.memory_format
    ) -> torch.Tensor:
        ctx.grad_layout = grad_layout
        return x.contiguous(memory_format=layout)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad.contiguous(memory_format=ctx.grad_layout), None, None


def normalize(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``; a training batch norm of channels-last CPU input with fewer than 16
    channels runs on a contiguous copy instead, its gradient likewise.

    PyTorch's CPU kernel for batch statistics vectorises across the channels of each voxel,
    and with 8 (conv1 of the CPU model) it crawls: forward + backward 27 ms on a training
    batch, 3 ms contiguous. The two copies cost ~6 ms; the training step gains ~25 %.
    Evaluation-mode batch norm is fast in either layout and is left alone."""
    slow_layout = (
        x.device.type == "cpu"
        and x.shape[1] < 16
        and x.is_contiguous(memory_format=torch.channels_last_3d)
        and not x.is_contiguous()
    )
    if not (isinstance(norm, nn.BatchNorm3d) and norm.training and slow_layout):
        return norm(x)
    channels_last, contiguous = torch.channels_last_3d, torch.contiguous_format
    x = norm(_Relayout.apply(x, contiguous, channels_last))
    return _Relayout.apply(x, channels_last, contiguous)


def max_pool(pool: nn.MaxPool3d, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)``, in ``x``'s dtype: CPU autocast max-pools in fp32, casting each activation
    up and its gradient back, for the same maxima (bf16 training step 180 -> 199 clips/s).

    A (1, 2, 2) pool in CPU inference is the maximum of the 4 strided views instead: the same
    values, and PyTorch's kernel is ~2x slower on channels-last input with few channels
    (pool1 of the CPU model, 8 channels: +10 % clips/s for the whole network). Not under
    autograd, where the maximum's backward is the slower one, nor where a rounded-up pool
    (ceil mode) has an odd size to cut short."""
    odd = x.shape[3] % 2 or x.shape[4] % 2
    if (
        pool.kernel_size != (1, 2, 2)
        or x.device.type != "cpu"
        or torch.is_grad_enabled()
        or (pool.ceil_mode and odd)
    ):
        with torch.autocast(x.device.type, enabled=False):
            return pool(x)
    height, width = x.shape[3] // 2 * 2, x.shape[4] // 2 * 2
    top = torch.maximum(x[..., 0:height:2, 0:width:2], x[..., 0:height:2, 1:width:2])
    bottom = torch.maximum(x[..., 1:height:2, 0:width:2], x[..., 1:height:2, 1:width:2])
    return torch.maximum(top, bottom)
