"""Res3D-18, the backbone of the S-CNN authors' second release (C3D-v1.1).

Tran et al., "ConvNet Architecture Search for Spatiotemporal Feature Learning", 2017; the
network of zhengshou/scnn ``experiments/THUMOS14_Res3D/network_*/train_resnet18_r2.prototxt``:
conv1 (3×7×7, stride 1×2×2, no bias), then eight residual blocks res2a … res5b of two 3×3×3
convolutions, each followed by batch norm (Caffe's BatchNorm then Scale), the sum with the
block's input or its projection (branch1: 1×1×1, res2a stride 1, res3a/res4a/res5a stride 2),
ReLU; pool5 averages each time step over space; fc8 reads pool5 in (channel, time) order.
At 16×112×112 input: 16×56×56 after conv1, 8×28×28, 4×14×14, 2×7×7, pool5 2×1×1, so fc8
sees 1024 values. 33.2 M parameters; 40.9 G multiply-adds in the convolutions per clip
(C3D: 38.5 G).

Module names follow the Caffe layers, so weights load by name: ``conv1``/``bn_conv1``, block
``res2a`` with ``branch1``, ``branch2a``, ``branch2b`` and batch norms ``bn_branch1`` …
(Caffe's ``res2a_branch2a``, ``bn2a_branch2a`` and ``scale2a_branch2a``: one PyTorch batch
norm holds the BatchNorm layer's statistics and the Scale layer's weight and bias).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scnn import kernels
from scnn.clips import check_network_input

RES3D_CHANNELS = (64, 128, 256, 512)  # conv1 and res2, res3, res4, res5 at width 1
BLOCK_NAMES = ("res2a", "res2b", "res3a", "res3b", "res4a", "res4b", "res5a", "res5b")
# The layers whose activations are offered as features (Res3D.activations); fc8: the logits.
RES3D_FEATURE_LAYERS = ("res3b", "res4b", "res5b", "pool5", "fc8")
CAFFE_EPS = 1e-5  # BatchNormParameter.eps's default; the authors' prototxts keep it
MOVING_AVERAGE_FRACTION = 0.999  # BatchNormParameter.moving_average_fraction's default


class CaffeBatchNorm3d(nn.BatchNorm3d):
    """Batch norm whose running statistics are Caffe's: in training, the batch's statistics
    normalise, and the running mean and variance (unbiased) become a decaying average that
    weighs batch i by ``fraction``^(n − i), normalised by their sum, the ``scale_factor``
    Caffe stores as the BatchNorm layer's third blob. A network started from scratch so has
    the first batch's statistics after one step (PyTorch's momentum 0.1 would not), and one
    started from a Caffe snapshot continues its average where the solver left it."""

    def __init__(self, channels: int, eps: float = CAFFE_EPS):
        super().__init__(channels, eps=eps)
        self.fraction = MOVING_AVERAGE_FRACTION
        self.register_buffer("scale_factor", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # new = (fraction · s · old + batch) / (fraction · s + 1): momentum 1 / (f · s + 1)
            weight = self.fraction * float(self.scale_factor) + 1
            self.momentum = 1 / weight
            self.scale_factor.fill_(weight)
        return super().forward(x)


def _conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Conv3d:
    """A 3D convolution without bias (the prototxt's ``bias_term: false``), padded to keep
    the size at stride 1."""
    return nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)


class Block(nn.Module):
    """A residual block: ReLU(BN(branch2b(ReLU(BN(branch2a(x))))) + shortcut), the shortcut
    ``x`` itself or BN(branch1(x)) where the prototxt has a branch1."""

    def __init__(self, c_in: int, c_out: int, stride: int, projection: bool):
        super().__init__()
        self.branch2a = _conv(c_in, c_out, 3, stride)
        self.bn_branch2a = CaffeBatchNorm3d(c_out)
        self.branch2b = _conv(c_out, c_out, 3, 1)
        self.bn_branch2b = CaffeBatchNorm3d(c_out)
        self.branch1 = _conv(c_in, c_out, 1, stride) if projection else None
        self.bn_branch1 = CaffeBatchNorm3d(c_out) if projection else None

    def conv_norm_pairs(self) -> list[tuple[nn.Module, str, str]]:
        branches = ("branch2a", "branch2b", *(("branch1",) if self.branch1 is not None else ()))
        return [(self, branch, f"bn_{branch}") for branch in branches]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU and the sum in place, as Caffe's layers are: no fresh activation-sized tensor
        # (autograd allows it: neither the batch norm's output nor the sum is saved for backward)
        y = F.relu_(kernels.normalize(self.bn_branch2a, kernels.convolve(self.branch2a, x)))
        y = kernels.normalize(self.bn_branch2b, kernels.convolve(self.branch2b, y))
        if self.branch1 is not None:
            x = kernels.normalize(self.bn_branch1, kernels.convolve(self.branch1, x))
        return F.relu_(y.add_(x))


def _block_plan(width: float) -> list[tuple[str, int, int, int, bool]]:
    """(name, in channels, out channels, stride, projection) of each block, in order."""
    channels = [max(1, round(c * width)) for c in RES3D_CHANNELS]
    plan = []
    for stage, c_out in enumerate(channels):
        c_in = channels[max(stage - 1, 0)]
        first, second = BLOCK_NAMES[2 * stage], BLOCK_NAMES[2 * stage + 1]
        plan.append((first, c_in, c_out, 1 if stage == 0 else 2, True))
        plan.append((second, c_out, c_out, 1, False))
    return plan


def stage_sizes(clip_frames: int, crop_size: int) -> list[tuple[int, int, int]]:
    """The (time, height, width) of conv1's output and of res2, res3, res4 and res5's:
    conv1 halves space (7×7, stride 2, padding 3), res3a, res4a and res5a halve time and
    space (3×3×3, stride 2, padding 1); Caffe's convolution output is
    floor((n + 2·pad − k) / stride) + 1, as PyTorch's."""
    t, s = clip_frames, (crop_size + 2 * 3 - 7) // 2 + 1
    sizes = [(t, s, s), (t, s, s)]
    for _ in range(3):
        t, s = (t + 2 - 3) // 2 + 1, (s + 2 - 3) // 2 + 1
        sizes.append((t, s, s))
    if min(t, s) < 1:
        raise ValueError(f"input {clip_frames}×{crop_size}×{crop_size} is too small for Res3D")
    return sizes


class Res3D(nn.Module):
    """Res3D-18: input ``(batch, 3, clip_frames, crop_size, crop_size)``, logits
    ``(batch, num_classes)``. ``width`` scales every channel count (1 is the authors'
    network). pool5 averages over res5b's whole height and width, each time step apart: the
    prototxt's 7×7 (kernel_depth 1) at a 112 crop."""

    def __init__(
        self, num_classes: int, *, width: float = 1.0, clip_frames: int = 16, crop_size: int = 112
    ):
        super().__init__()
        self.num_classes = num_classes
        self.width = width
        self.clip_frames = clip_frames
        self.crop_size = crop_size
        plan = _block_plan(width)
        self.conv1 = nn.Conv3d(
            3, plan[0][1], (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False
        )
        self.bn_conv1 = CaffeBatchNorm3d(plan[0][1])
        for name, c_in, c_out, stride, projection in plan:
            setattr(self, name, Block(c_in, c_out, stride, projection))
        t, h, w = stage_sizes(clip_frames, crop_size)[-1]
        self.pool5_kernel = (1, h, w)  # an average over res5b's whole height and width
        self.fc8 = nn.Linear(plan[-1][2] * t, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """The prototxt's fillers: msra (He, fan-out) convolutions, fc8 Gaussian std 0.01,
        zero bias; batch norms start at weight 1, bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def conv_norm_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(owner, convolution, batch norm) attribute names: what fold_batch_norm folds."""
        pairs = [(self, "conv1", "bn_conv1")]
        for name in BLOCK_NAMES:
            pairs += getattr(self, name).conv_norm_pairs()
        return pairs

    def clip_multiply_adds(self) -> int:
        """Multiply-adds of the convolutions and fc8 for one clip: each weight once per
        output position."""
        sizes = stage_sizes(self.clip_frames, self.crop_size)
        total = self.conv1.weight.numel() * math.prod(sizes[0])
        for index, name in enumerate(BLOCK_NAMES):
            positions = math.prod(sizes[1 + index // 2])
            for block, conv, _ in getattr(self, name).conv_norm_pairs():
                total += getattr(block, conv).weight.numel() * positions
        return total + self.fc8.weight.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x, "fc8")

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """The output of ``layer`` (RES3D_FEATURE_LAYERS), flattened to ``(batch, D)`` in
        Caffe's (channel, time, height, width) order: a block's after its ReLU (Caffe's
        in-place ReLU leaves the blob so), pool5 the averages, fc8 the logits. The layers
        after ``layer`` are not run."""
        check_network_input(
            "Res3D", x, self.clip_frames, self.crop_size, layer, RES3D_FEATURE_LAYERS
        )
        x = F.relu_(kernels.normalize(self.bn_conv1, kernels.convolve(self.conv1, x)))
        for name in BLOCK_NAMES:
            x = getattr(self, name)(x)
            if name == layer:
                return torch.flatten(x, 1)
        # the mean of each time step: PyTorch's CPU avg_pool3d has no bf16 kernel
        x = torch.flatten(x.mean(dim=(3, 4)), 1)
        if layer == "pool5":
            return x
        return self.fc8(x)
