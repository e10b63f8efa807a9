"""C3D, the backbone of all three S-CNN networks, with options that make it fit a CPU.

Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015;
used by Shou et al., CVPR 2016 (method.md §2). Layer names follow the widely used PyTorch
conversion of the Sports-1M weights (conv1 … conv5b, fc6, fc7, fc8), so that file loads by
name. The faithful network (width 1, 16×112×112 input) has 78,081,813 parameters with a
21-way fc8 and costs 77.1 GFLOP per clip; width 1/8 on 16×56×56 input costs 0.36 GFLOP.

Memory format: the model runs unchanged on channels-last input,
``x.to(memory_format=torch.channels_last_3d)``, with or without
``model.to(memory_format=torch.channels_last_3d)``. Channels-last keeps the channels of one
voxel adjacent, the layout oneDNN (CPU) and cuDNN convolve fastest, and it is the layout
``assemble_clips`` returns. Measured: width 1/8, 16×56×56, batch 8, one CPU thread: forward
0.043 → 0.022 s, training step 0.10 → 0.065 s; faithful model on an H100, batch 32:
forward 1889 → 2098 clips/s in fp32 (TF32) and 2448 → 2862 in bf16, training 560 → 605
and 1017 → 1164 clips/s. The one layout-sensitive step, flattening pool5 for fc6, uses
``flatten`` (which copies when needed) rather than ``view``, so fc6 always sees features in
Caffe's (channel, time, height, width) order and the Sports-1M fc6 weights stay valid.

The forward pass calls each layer through :mod:`scnn.kernels`, which works around PyTorch's
CPU kernels where C3D meets them (same values, the right gradient). :func:`fold_batch_norm`,
which prepares the inference copies, belongs with the architecture: it is an identity of the
layers (a convolution followed by a batch norm is one convolution), not a kernel workaround.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from scnn import kernels
from scnn.clips import ClipConfig, InputConvention, check_network_input
from scnn.errors import ModelError, ScnnError, load_refusal
from scnn.res3d import RES3D_FEATURE_LAYERS, Res3D

C3D_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)  # conv1 … conv5b at width 1
C3D_FC_UNITS = 4096  # fc6 and fc7 at width 1
CONV_NAMES = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
PRETRAINED_NAMES = (*CONV_NAMES, "fc6", "fc7")  # fc8 is always new
# The layers whose activations are offered as features (C3D.activations); fc8: the logits.
FEATURE_LAYERS = ("conv5b", "pool5", "fc6", "fc7", "fc8")
# The backbones a model is built on: C3D (the authors' first release and scnn's own models)
# or Res3D-18 (their second release, scnn.res3d).
BACKBONES = ("c3d", "res3d18")
# Max-pooling after conv1, conv2, conv3b, conv4b, conv5b: name, kernel = stride (t, h, w).
_POOLS = {
    "conv1": ("pool1", (1, 2, 2)),  # keep time: conv2 still sees all 16 frames
    "conv2": ("pool2", (2, 2, 2)),
    "conv3b": ("pool3", (2, 2, 2)),
    "conv4b": ("pool4", (2, 2, 2)),
    "conv5b": ("pool5", (2, 2, 2)),
}
# How a pool treats a size its kernel does not divide (pool5's 7×7 at a 112 crop):
# "caffe": C3D's pool3d_layer.cpp, output ceil((n − k) / s) + 1, the last window cut short
#   (7 → 4 with windows over [0,1], [2,3], [4,5], [6]); every Sports-1M and S-CNN weight was
#   trained with it.
# "padded": floor rounding with pool5 padded by 1 in height and width (windows [-1,0], [1,2],
#   [3,4], [5,6]), the approximation of a popular PyTorch port, kept for models trained with it.
POOLING_RULES = ("caffe", "padded")
_PADDED_POOL5 = (0, 1, 1)


def _scaled(units: int, width: float) -> int:
    return max(1, round(units * width))


def _pool(name: str, pooling: str) -> nn.MaxPool3d:
    """The max-pool after conv layer ``name`` under ``pooling`` (see POOLING_RULES)."""
    if pooling not in POOLING_RULES:
        raise ValueError(f"pooling '{pooling}' is not one of {', '.join(POOLING_RULES)}")
    pool, kernel = _POOLS[name]
    if pooling == "caffe":
        return nn.MaxPool3d(kernel, stride=kernel, padding=(0, 0, 0), ceil_mode=True)
    padding = _PADDED_POOL5 if pool == "pool5" else (0, 0, 0)
    return nn.MaxPool3d(kernel, stride=kernel, padding=padding)


def _pooled_size(size: tuple[int, ...], pool: nn.MaxPool3d) -> tuple[int, ...]:
    """The output size (t, h, w) of ``pool`` (kernel = stride) on input ``size``."""
    rounding = math.ceil if pool.ceil_mode else math.floor
    return tuple(
        rounding((n + 2 * p - k) / k) + 1
        for n, k, p in zip(size, pool.kernel_size, pool.padding, strict=True)
    )


def _conv_sizes(
    clip_frames: int, crop_size: int, pooling: str
) -> tuple[list[tuple[int, int, int]], int]:
    """Each conv layer's input/output size (t, h, w), and the number of pool5 positions."""
    size = (clip_frames, crop_size, crop_size)
    sizes = []
    for name in CONV_NAMES:
        sizes.append(size)
        if name in _POOLS:
            size = _pooled_size(size, _pool(name, pooling))
            if min(size) < 1:
                raise ValueError(
                    f"input {clip_frames}×{crop_size}×{crop_size} is too small for C3D"
                )
    return sizes, size[0] * size[1] * size[2]


class C3D(nn.Module):
    """C3D: 8 conv3d layers (3×3×3, padding 1, ReLU), 5 max-pools, fc6, fc7, fc8.

    Input ``(batch, 3, clip_frames, crop_size, crop_size)``; output logits
    ``(batch, num_classes)``. ``width`` scales every channel count and fc6/fc7 (1/8 gives a
    CPU-sized model); fc6's input size follows from ``clip_frames`` and ``crop_size``.
    ``batch_norm`` (not in the original) adds BatchNorm3d after each conv, which helps a
    model trained from scratch; its layers are ``norm1`` … ``norm5b``. ``pooling`` is the
    max-pools' rounding rule (POOLING_RULES): "caffe", as C3D was trained, by default.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        width: float = 1.0,
        clip_frames: int = 16,
        crop_size: int = 112,
        dropout: float = 0.5,
        batch_norm: bool = False,
        pooling: str = "caffe",
    ):
        super().__init__()
        self.num_classes = num_classes
        self.width = width
        self.clip_frames = clip_frames
        self.crop_size = crop_size
        self.batch_norm = batch_norm
        self.pooling = pooling
        channels = [_scaled(c, width) for c in C3D_CHANNELS]
        fc_units = _scaled(C3D_FC_UNITS, width)
        _, pool5_positions = _conv_sizes(clip_frames, crop_size, pooling)

        for name, in_channels, out_channels in zip(
            CONV_NAMES, [3, *channels[:-1]], channels, strict=True
        ):
            setattr(self, name, nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1))
            norm = nn.BatchNorm3d(out_channels) if batch_norm else nn.Identity()
            setattr(self, name.replace("conv", "norm"), norm)
        for name, (pool, _) in _POOLS.items():
            setattr(self, pool, _pool(name, pooling))
        self.fc6 = nn.Linear(channels[-1] * pool5_positions, fc_units)
        self.fc7 = nn.Linear(fc_units, fc_units)
        self.fc8 = nn.Linear(fc_units, num_classes)
        self.dropout = nn.Dropout(dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation, so a model trained from scratch (no Sports-1M weights, no
        batch norm) still passes a signal through 10 ReLU layers; a small fc8, so the first
        softmax is close to uniform."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fc8.weight, std=0.01)

    def conv_norm_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(owner, convolution, batch norm) attribute names: what fold_batch_norm folds."""
        return [(self, name, name.replace("conv", "norm")) for name in CONV_NAMES]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x, "fc8")

    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """The output of ``layer`` (FEATURE_LAYERS), flattened to ``(batch, D)`` in Caffe's
        (channel, time, height, width) order: conv5b, pool5, fc6 and fc7 after their ReLU
        (Caffe's in-place ReLU leaves them so, as C3D's feature extractor reads them), fc8
        the logits. The layers after ``layer`` are not run."""
        check_network_input("C3D", x, self.clip_frames, self.crop_size, layer, FEATURE_LAYERS)
        for name in CONV_NAMES:  # each layer through its CPU-kernel workaround (kernels.py)
            x = kernels.convolve(getattr(self, name), x)
            x = kernels.normalize(getattr(self, name.replace("conv", "norm")), x)
            if name == layer:
                return torch.flatten(F.relu(x), 1)
            if name in _POOLS:
                x = kernels.max_pool(getattr(self, _POOLS[name][0]), x)
            x = F.relu(x)  # after pooling: the same values (ReLU is monotonic), on 1/4-1/8 as many
        x = torch.flatten(x, 1)
        if layer == "pool5":
            return x
        x = self.dropout(F.relu(self.fc6(x)))
        if layer == "fc6":
            return x
        x = self.dropout(F.relu(self.fc7(x)))
        if layer == "fc7":
            return x
        return self.fc8(x)


@dataclass(frozen=True)
class ModelOptions:
    """How the networks are built, besides their number of outputs and input size.
    Res3D-18 always has batch norm and no dropout: ``dropout``, ``batch_norm`` and
    ``pooling`` are C3D's."""

    width: float = 1.0  # channel multiplier: 1 is the faithful C3D
    dropout: float = 0.5
    batch_norm: bool = False  # not in C3D; helps a small model trained from scratch
    pooling: str = "caffe"  # max-pool rounding, POOLING_RULES
    backbone: str = "c3d"  # BACKBONES

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_RULES:
            raise ScnnError(f"pooling '{self.pooling}' is not one of {', '.join(POOLING_RULES)}")
        if self.backbone not in BACKBONES:
            raise ScnnError(f"backbone '{self.backbone}' is not one of {', '.join(BACKBONES)}")


Network = C3D | Res3D  # what build_network builds


def feature_layers(network: Network) -> tuple[str, ...]:
    """The layers ``network.activations`` offers."""
    return RES3D_FEATURE_LAYERS if isinstance(network, Res3D) else FEATURE_LAYERS


def build_network(
    num_outputs: int, options: ModelOptions, clip: ClipConfig | InputConvention
) -> Network:
    """A network of ``options.backbone`` with ``num_outputs`` outputs for clips of
    ``clip``'s frames and crop size."""
    if options.backbone == "res3d18":
        return Res3D(
            num_outputs,
            width=options.width,
            clip_frames=clip.clip_frames,
            crop_size=clip.crop_size,
        )
    return C3D(
        num_outputs,
        width=options.width,
        clip_frames=clip.clip_frames,
        crop_size=clip.crop_size,
        dropout=options.dropout,
        batch_norm=options.batch_norm,
        pooling=options.pooling,
    )


def network_for_weights(
    num_outputs: int, options: ModelOptions, clip: ClipConfig | InputConvention
) -> Network:
    """:func:`build_network` for weights about to be loaded into it: its initial weights are
    drawn from a fork of torch's RNG, so loading a model leaves the caller's random state as
    it was."""
    with torch.random.fork_rng(devices=[]):
        return build_network(num_outputs, options, clip)


def fold_batch_norm(model: Network) -> Network:
    """``model`` (in eval mode) with each batch norm folded into the convolution before it:
    the same function with one layer fewer per block, for inference. Changes ``model``."""
    for owner, conv_name, norm_name in model.conv_norm_pairs():
        norm = getattr(owner, norm_name)
        if isinstance(norm, nn.BatchNorm3d):
            setattr(owner, conv_name, fuse_conv_bn_eval(getattr(owner, conv_name), norm))
            setattr(owner, norm_name, nn.Identity())
    return model


def load_sports1m_weights(model: C3D, path: str | Path, *, fc8: bool = False) -> None:
    """Copy conv1 … conv5b, fc6 and fc7 from a Sports-1M C3D state dict file into ``model``.

    The file is a ``torch.save``-d dict of tensors named like the model's layers (the widely
    used PyTorch conversion of the Caffe weights, ``c3d.pickle``). It is read with
    ``weights_only=True``, so a file that would run code when unpickled is refused. fc8 (487
    Sports-1M classes) is copied only with ``fc8``: training replaces it, feature extraction
    reads its logits. A missing layer or a shape mismatch (another width or input size)
    raises :class:`ModelError` naming the layer and both shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError("weight file not found", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure: the file is not a plain tensor dict
        raise ModelError(f"not a plain state dict of tensors ({load_refusal(exc)})", path) from exc
    if not isinstance(state, dict):
        raise ModelError(f"expected a dict of tensors, found {type(state).__name__}", path)
    layers = (*PRETRAINED_NAMES, "fc8") if fc8 else PRETRAINED_NAMES
    keys = [f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")]
    copy_pretrained(model, state, keys, path)


def copy_pretrained(model: C3D, state: dict, keys: list[str], source: str | Path) -> None:
    """Copy the tensors ``keys`` of ``state`` (read from ``source``) into ``model``; a missing
    key or a shape mismatch raises :class:`ModelError` naming the tensor and both shapes."""
    own = model.state_dict()
    updates = {}
    for key in keys:
        if key not in state:
            raise ModelError(f"{key} is missing", source)
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor):
            raise ModelError(f"{key} is a {type(tensor).__name__}, not a tensor", source)
        if tensor.shape != own[key].shape:
            raise ModelError(
                f"{key} has shape {tuple(tensor.shape)} in the file but the model needs "
                f"{tuple(own[key].shape)} (another width or input size: the Sports-1M "
                "weights need width 1 and 16×112×112 input)",
                source,
            )
        updates[key] = tensor
    model.load_state_dict(updates, strict=False)


def clip_gflops(model: Network) -> float:
    """Floating-point operations for one clip, in GFLOP: 2 × the multiply-adds of the conv
    and fc layers (biases, ReLU, pooling and norms are not counted, as in the C3D paper's
    77.1 GFLOP). Works on a model built on the meta device, so costs can be read without
    allocating weights."""
    if isinstance(model, Res3D):
        return 2 * model.clip_multiply_adds() / 1e9
    sizes, _ = _conv_sizes(model.clip_frames, model.crop_size, model.pooling)
    multiply_adds = 0
    for name, (t, h, w) in zip(CONV_NAMES, sizes, strict=True):
        multiply_adds += getattr(model, name).weight.numel() * t * h * w
    for layer in (model.fc6, model.fc7, model.fc8):
        multiply_adds += layer.weight.numel()
    return 2 * multiply_adds / 1e9
