"""The S-CNN authors' second release (C3D-v1.1, Res3D-18) read without Caffe.

Field numbers from the C3D-v1.1 fork's ``caffe.proto`` (zhengshou/scnn,
``C3D-v1.1/C3D_overlap_loss/src/caffe/proto/caffe.proto``), decoded with scnn.caffe_wire:

    NetParameter    layer 100 (LayerParameter)
    LayerParameter  name 1, type 2 (a string), blobs 7, eltwise_param 110,
                    inner_product_param 117, batch_norm_param 139, scale_param 142,
                    convolution3d_param 6661, pooling3d_param 6662
    BlobProto       shape 7 (BlobShape: dim 1, packed int64), data 5 (packed float32);
                    num 1, channels 2, height 3, width 4 where a blob has no shape

Blobs: a Convolution3D's weights (out, in, depth, k, k), PyTorch's Conv3d layout, no bias
(``bias_term: false``); a BatchNorm's mean (C), variance (C) and scale factor (1): the
stored mean and variance divided by the scale factor are the statistics
(``batch_norm_layer.cpp``; a factor of 0 gives 0); a Scale's weight (C) and bias (C); an
InnerProduct's weights (N_out, N_in) and bias (N_out). As for C3D-v1.0, only the headers are
parsed in memory; each blob's floats go from the file straight into the network's tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from scnn.caffe_wire import (
    FIXED32,
    LENGTH_DELIMITED,
    V10,
    V11,
    VARINT,
    Blob,
    Layer,
    Wire,
    read_floats,
    read_net,
)
from scnn.clips import CLIP_FRAMES, CROP_SIZE, FRAME_HEIGHT, FRAME_WIDTH, InputConvention
from scnn.errors import ModelError
from scnn.model import ModelOptions
from scnn.res3d import BLOCK_NAMES, CaffeBatchNorm3d, Res3D

# The authors' networks and their input (the prototxts' data layer): 16 frames of 171×128,
# BGR, minus mean_value 128 on every channel, centre crop 112, no scaling.
RES3D_OPTIONS = ModelOptions(width=1.0, dropout=0.0, backbone="res3d18")
RES3D_CONVENTION = InputConvention(
    frame_size=(FRAME_WIDTH, FRAME_HEIGHT),
    crop_size=CROP_SIZE,
    clip_frames=CLIP_FRAMES,
    bgr=True,
    mean=128.0,
    std=(1.0, 1.0, 1.0),
)
FC8_LAYER = "fc8-pro"  # fc8's name in the S-CNN networks (the Sports-1M model's fc8 is new)

LAYER_NAME, LAYER_TYPE, LAYER_BLOBS = 1, 2, 7
BLOB_SHAPE, BLOB_DATA, BLOB_DOUBLE_DATA, SHAPE_DIM = 7, 5, 8, 1
BLOB_LEGACY_DIMS = (1, 2, 3, 4)  # num, channels, height, width
CONVOLUTION3D, POOLING3D, BATCH_NORM, SCALE, ELTWISE, INNER_PRODUCT = (
    "Convolution3D",
    "Pooling3D",
    "BatchNorm",
    "Scale",
    "Eltwise",
    "InnerProduct",
)
AVE_POOLING, ELTWISE_SUM = 1, 1
# Each layer type's parameter message: its field number in LayerParameter, and its fields
# (number: name, default) as caffe.proto gives them; eps and coeff are floats.
PARAM_MESSAGES = {
    CONVOLUTION3D: (
        6661,
        {
            1: ("num_output", 0),
            2: ("bias_term", 1),
            3: ("pad", 0),
            4: ("kernel_size", 0),
            5: ("group", 1),
            6: ("kernel_depth", 0),
            7: ("stride", 1),
            8: ("temporal_stride", 1),
            12: ("temporal_pad", 0),
        },
    ),
    POOLING3D: (
        6662,
        {
            1: ("pool", 0),
            2: ("kernel_size", 0),
            3: ("stride", 1),
            4: ("pad", 0),
            5: ("kernel_depth", 0),
            6: ("temporal_stride", 1),
        },
    ),
    BATCH_NORM: (139, {3: ("eps", float(np.float32(1e-5)))}),
    SCALE: (142, {1: ("axis", 1), 2: ("num_axes", 1), 4: ("bias_term", 0)}),
    ELTWISE: (110, {1: ("operation", ELTWISE_SUM), 2: ("coeff", ())}),
    INNER_PRODUCT: (117, {1: ("num_output", 0), 2: ("bias_term", 1), 5: ("axis", 1)}),
}


def _signed(value: int) -> int:
    """A varint read as int32/int64: negative numbers are stored as 2^64 − |n|."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _blob(wire: Wire, start: int, end: int, where: str) -> Blob:
    shape: list[int] | None = None
    legacy = dict.fromkeys(BLOB_LEGACY_DIMS, 0)
    data: tuple[int, int] | None = None
    for number, kind, value, offset in wire.fields(start, end, where):
        if number == BLOB_SHAPE and kind == LENGTH_DELIMITED:
            shape = []
            for dim_number, dim_kind, dim, dim_offset in wire.fields(offset, offset + value, where):
                if dim_number == SHAPE_DIM and dim_kind == LENGTH_DELIMITED:
                    shape += wire.varints(dim_offset, dim, where)
                elif dim_number == SHAPE_DIM and dim_kind == VARINT:
                    shape.append(dim)
        elif number == BLOB_DATA:
            if kind != LENGTH_DELIMITED:
                raise wire.fail(f"BlobProto field {number} has wire type {kind}", where)
            data = (offset, value)
        elif number == BLOB_DOUBLE_DATA:
            raise wire.fail("a blob of double-precision values", where)
        elif number in BLOB_LEGACY_DIMS and kind == VARINT:
            legacy[number] = value
    if shape is None:
        shape = [legacy[n] for n in BLOB_LEGACY_DIMS]
    return wire.blob(tuple(shape), data, where)


def _defaults(layer_type: str) -> dict[str, object]:
    """caffe.proto's defaults of ``layer_type``'s parameter message (none for other types)."""
    fields = PARAM_MESSAGES.get(layer_type, (None, {}))[1]
    return {field: default for field, default in fields.values()}


def _params(wire: Wire, layer_type: str, start: int, end: int, where: str) -> dict[str, object]:
    known = PARAM_MESSAGES[layer_type][1]
    params = _defaults(layer_type)
    coeffs: list[float] = []
    for number, kind, value, offset in wire.fields(start, end, where):
        if number not in known:
            continue
        name = known[number][0]
        if kind == VARINT:
            params[name] = _signed(value)
        elif kind == FIXED32 and name == "coeff":
            coeffs.append(wire.float32(offset))
        elif kind == FIXED32:
            params[name] = wire.float32(offset)
        elif kind == LENGTH_DELIMITED and name == "coeff":  # packed
            coeffs += [wire.float32(offset + 4 * k) for k in range(value // 4)]
    if coeffs:
        params["coeff"] = tuple(coeffs)
    return params


def _layer(wire: Wire, start: int, end: int, index: int) -> Layer:
    name, layer_type = f"#{index + 1}", ""
    for number, kind, value, offset in wire.fields(start, end, f"layer {name}"):
        if number == LAYER_NAME and kind == LENGTH_DELIMITED:
            name = wire.text(offset, value)
        elif number == LAYER_TYPE and kind == LENGTH_DELIMITED:
            layer_type = wire.text(offset, value)
    where = f"layer {name}"
    blobs, params = [], _defaults(layer_type)
    message = PARAM_MESSAGES.get(layer_type, (None, {}))[0]
    for number, kind, value, offset in wire.fields(start, end, where):
        if number == LAYER_BLOBS and kind == LENGTH_DELIMITED:
            blobs.append(_blob(wire, offset, offset + value, f"{where}, blob {len(blobs)}"))
        elif number == message and kind == LENGTH_DELIMITED:
            params = _params(wire, layer_type, offset, offset + value, where)
    return Layer(name, layer_type, tuple(blobs), params)


def read_layers(path: str | Path) -> dict[str, Layer]:
    """The layers of a C3D-v1.1 ``.caffemodel`` by name; blob values stay in the file."""
    return read_net(path, V11, _layer, V10, LAYER_NAME)


@dataclass(frozen=True)
class _Expected:
    """A layer of the file as the network needs it: its type, parameters, blob shapes, and
    the module its blobs fill (None: a layer without weights, checked only)."""

    type: str
    params: dict[str, object]
    shapes: tuple[tuple[int, ...], ...]
    module: nn.Module | None = None


def _convolution(conv: nn.Conv3d) -> _Expected:
    params = {
        "num_output": conv.out_channels,
        "bias_term": 0,
        "kernel_depth": conv.kernel_size[0],
        "kernel_size": conv.kernel_size[1],
        "temporal_pad": conv.padding[0],
        "pad": conv.padding[1],
        "temporal_stride": conv.stride[0],
        "stride": conv.stride[1],
        "group": 1,
    }
    return _Expected(CONVOLUTION3D, params, (tuple(conv.weight.shape),), conv)


def _normalization(norm: CaffeBatchNorm3d, caffe_names: tuple[str, str]) -> dict[str, _Expected]:
    """Caffe's BatchNorm (statistics) and Scale (weight, bias) layers of one batch norm."""
    channels = (norm.num_features,)
    eps = float(np.float32(norm.eps))
    scale = {"axis": 1, "num_axes": 1, "bias_term": 1}
    return {
        caffe_names[0]: _Expected(BATCH_NORM, {"eps": eps}, (channels, channels, (1,)), norm),
        caffe_names[1]: _Expected(SCALE, scale, (channels, channels), norm),
    }


def expected_layers(model: Res3D, fc8_layer: str | None = FC8_LAYER) -> dict[str, _Expected]:
    """The Caffe layers of ``model`` by their names in the authors' prototxts, in order;
    fc8 as ``fc8_layer`` (None: left out)."""
    layers = {"conv1": _convolution(model.conv1)}
    layers |= _normalization(model.bn_conv1, ("bn_conv1", "scale_conv1"))
    for name in BLOCK_NAMES:
        stage = name[3:]  # "2a"
        for block, conv, norm in getattr(model, name).conv_norm_pairs():
            layers[f"{name}_{conv}"] = _convolution(getattr(block, conv))
            caffe_names = (f"bn{stage}_{conv}", f"scale{stage}_{conv}")
            layers |= _normalization(getattr(block, norm), caffe_names)
        layers[name] = _Expected(ELTWISE, {"operation": ELTWISE_SUM, "coeff": ()}, ())
    depth, size = model.pool5_kernel[:2]
    pool = {
        "pool": AVE_POOLING,
        "kernel_depth": depth,
        "kernel_size": size,
        "temporal_stride": 1,
        "stride": 1,
        "pad": 0,
    }
    layers["pool5"] = _Expected(POOLING3D, pool, ())
    if fc8_layer is not None:
        fc = {"num_output": model.fc8.out_features, "bias_term": 1, "axis": 1}
        shapes = (tuple(model.fc8.weight.shape), (model.fc8.out_features,))
        layers[fc8_layer] = _Expected(INNER_PRODUCT, fc, shapes, model.fc8)
    return layers


def _check(layer: Layer, expected: _Expected, path: Path) -> None:
    """The layer's type, parameters and blob shapes, as the network needs them."""
    if layer.type != expected.type:
        raise ModelError(f"layer {layer.name} is {layer.type!r}, expected {expected.type}", path)
    for name, value in expected.params.items():
        if name == "coeff" and all(c == 1 for c in layer.params[name]):
            continue  # coefficients of 1: a plain sum
        if layer.params[name] != value:
            raise ModelError(
                f"layer {layer.name} has {name} {layer.params[name]}, the network {value}", path
            )
    shapes = tuple(blob.shape for blob in layer.blobs)
    if expected.module is not None and shapes != expected.shapes:
        raise ModelError(
            f"layer {layer.name}: blobs of shapes {list(shapes)}, the network needs "
            f"{list(expected.shapes)}",
            path,
        )


def _fill(layer: Layer, module: nn.Module, file: BinaryIO, path: Path) -> None:
    """Copy ``layer``'s blobs into ``module``: a convolution's weights, a batch norm's
    statistics (divided by the scale factor, in float32 as Caffe does) or an affine
    Scale's weight and bias, a linear layer's weight and bias."""
    values = [read_floats(file, blob.offset, blob.count, path) for blob in layer.blobs]
    if layer.type == CONVOLUTION3D:
        module.weight.copy_(values[0].view(module.weight.shape))
    elif layer.type == BATCH_NORM:
        stored = float(values[2][0])
        factor = np.float32(0) if stored == 0 else np.float32(1) / np.float32(stored)
        module.running_mean.copy_(values[0] * torch.tensor(factor))
        module.running_var.copy_(values[1] * torch.tensor(factor))
        module.scale_factor.fill_(stored)
    else:  # Scale, InnerProduct
        module.weight.copy_(values[0].view(module.weight.shape))
        module.bias.copy_(values[1])


def load_res3d_weights(model: Res3D, path: str | Path, *, fc8: bool = True) -> None:
    """Copy every layer of a C3D-v1.1 Res3D-18 ``.caffemodel`` into ``model`` (fc8, Caffe's
    fc8-pro, unless ``fc8`` is False: training from the Sports-1M model replaces its output),
    checking each layer's type, parameters and blob shapes against ``model``; the weightless
    Eltwise and Pooling3D layers are checked where the file has them. Any mismatch is a
    ModelError naming the file and the layer."""
    path = Path(path)
    layers = read_layers(path)
    expected = expected_layers(model, FC8_LAYER if fc8 else None)
    for name, wanted in expected.items():
        if name not in layers and wanted.module is not None:
            raise ModelError(f"layer {name} is missing", path)
        if name in layers:
            _check(layers[name], wanted, path)
    with path.open("rb") as file, torch.no_grad():
        for name, wanted in expected.items():
            if wanted.module is not None:
                _fill(layers[name], wanted.module, file, path)
