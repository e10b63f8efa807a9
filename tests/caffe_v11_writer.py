"""Write C3D-v1.1 (Res3D-18) Caffe files for tests, byte by byte from caffe.proto's numbers.

Independent of scnn.caffe_res3d (which reads them): new-style ``layer`` messages (NetParameter
field 100) with string types, BlobProto with a BlobShape, and the layers transcribed from the
authors' prototxt (zhengshou/scnn:
experiments/THUMOS14_Res3D/network_*/train_resnet18_r2.prototxt), in its order.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from caffe_writer import message_field, message_parts, varint, varint_field

# Field numbers of the C3D-v1.1 fork's caffe.proto.
NET_NAME, NET_LAYER = 1, 100
LAYER_NAME, LAYER_TYPE, LAYER_BOTTOM, LAYER_TOP, LAYER_BLOBS = 1, 2, 3, 4, 7
BLOB_SHAPE, BLOB_DATA, SHAPE_DIM = 7, 5, 1
PARAM_MESSAGE = {
    "Convolution3D": 6661,
    "Pooling3D": 6662,
    "BatchNorm": 139,
    "Scale": 142,
    "InnerProduct": 117,
    "Eltwise": 110,
}
PARAM_NUMBERS = {
    "Convolution3D": dict(
        num_output=1,
        bias_term=2,
        pad=3,
        kernel_size=4,
        kernel_depth=6,
        stride=7,
        temporal_stride=8,
        temporal_pad=12,
    ),
    "Pooling3D": dict(pool=1, kernel_size=2, stride=3, pad=4, kernel_depth=5, temporal_stride=6),
    "BatchNorm": dict(use_global_stats=1, moving_average_fraction=2, eps=3),
    "Scale": dict(axis=1, num_axes=2, bias_term=4),
    "InnerProduct": dict(num_output=1, bias_term=2),
    "Eltwise": dict(operation=1),
}
FLOAT_PARAMS = {"moving_average_fraction", "eps"}  # fixed32 on the wire
AVE = 1  # Pooling3DParameter.PoolMethod


def res3d_layers(num_outputs: int, channels=(64, 128, 256, 512), pool: int = 7) -> list:
    """(name, type, params, bottoms) of the train prototxt's layers after the data layer."""
    layers = []

    def conv(name, bottom, c_out, k, kd, pad, tpad, stride, tstride):
        params = dict(num_output=c_out, kernel_size=k, kernel_depth=kd, pad=pad)
        params |= dict(temporal_pad=tpad, stride=stride, temporal_stride=tstride, bias_term=0)
        layers.append((name, "Convolution3D", params, [bottom]))

    def norm(bn, scale, blob):
        layers.append((bn, "BatchNorm", dict(use_global_stats=0), [blob]))
        layers.append((scale, "Scale", dict(bias_term=1), [blob]))

    conv("conv1", "data", channels[0], 7, 3, 3, 1, 2, 1)
    norm("bn_conv1", "scale_conv1", "conv1")
    layers.append(("conv1_relu", "ReLU", {}, ["conv1"]))
    previous = "conv1"
    for stage, c_out in zip((2, 3, 4, 5), channels, strict=True):
        stride = 1 if stage == 2 else 2
        for block in ("a", "b"):
            res = f"res{stage}{block}"
            shortcut = previous
            if block == "a":
                conv(f"{res}_branch1", previous, c_out, 1, 1, 0, 0, stride, stride)
                norm(f"bn{stage}{block}_branch1", f"scale{stage}{block}_branch1", res + "_branch1")
                shortcut = f"{res}_branch1"
            s = stride if block == "a" else 1
            conv(f"{res}_branch2a", previous, c_out, 3, 3, 1, 1, s, s)
            norm(f"bn{stage}{block}_branch2a", f"scale{stage}{block}_branch2a", res + "_branch2a")
            layers.append((f"{res}_branch2a_relu", "ReLU", {}, [f"{res}_branch2a"]))
            conv(f"{res}_branch2b", f"{res}_branch2a", c_out, 3, 3, 1, 1, 1, 1)
            norm(f"bn{stage}{block}_branch2b", f"scale{stage}{block}_branch2b", res + "_branch2b")
            layers.append((res, "Eltwise", {}, [shortcut, f"{res}_branch2b"]))
            layers.append((f"{res}_relu", "ReLU", {}, [res]))
            previous = res
    pool_params = dict(kernel_size=pool, kernel_depth=1, stride=1, temporal_stride=1, pool=AVE)
    layers.append(("pool5", "Pooling3D", pool_params, ["res5b"]))
    layers.append(("fc8-pro", "InnerProduct", dict(num_output=num_outputs), ["pool5"]))
    return layers


def res3d_arrays(
    rng: np.random.Generator, num_outputs: int, channels=(64, 128, 256, 512), frames: int = 16
) -> dict[str, tuple[np.ndarray, ...]]:
    """Random blobs in Caffe's shapes that keep a forward pass's activations near 1: convs
    He-scaled (conv1 damped for pixels of ±128); BatchNorm blobs (mean·s, variance·s, s) with
    a scale factor s near the solver's ~1000 and variances from 1e-4 to 1, each paired with a
    Scale weight of about √variance, so eps and s both matter; fc8 small."""
    arrays: dict[str, tuple[np.ndarray, ...]] = {}
    in_channels = {"data": 3}
    for name, kind, params, bottoms in res3d_layers(num_outputs, channels):
        if kind == "Convolution3D":
            c_in, c_out = in_channels[bottoms[0]], params["num_output"]
            shape = (
                c_out,
                c_in,
                params["kernel_depth"],
                params["kernel_size"],
                params["kernel_size"],
            )
            scale = np.sqrt(2.0 / np.prod(shape[1:])) * (1 / 60 if name == "conv1" else 0.7)
            arrays[name] = (rng.normal(0, scale, shape).astype(np.float32),)
            in_channels[name] = c_out
            last = c_out
        elif kind == "BatchNorm":
            s = np.float32(rng.uniform(900, 1000))
            variance = 10 ** rng.uniform(-4, 0, last)
            mean = rng.normal(0, 0.1, last)
            arrays[name] = (
                (mean * s).astype(np.float32),
                (variance * s).astype(np.float32),
                np.array([s], np.float32),
            )
            arrays[name.replace("bn", "scale", 1)] = (
                (np.sqrt(variance) * rng.uniform(0.5, 1.0, last)).astype(np.float32),
                rng.normal(0, 0.1, last).astype(np.float32),
            )
        elif kind == "Eltwise":
            in_channels[name] = in_channels[bottoms[1]]
        elif kind == "InnerProduct":
            fan_in = channels[-1] * (frames // 8)
            weight = rng.normal(0, 3 / np.sqrt(fan_in), (num_outputs, fan_in))
            bias = rng.normal(0, 0.3, num_outputs)
            arrays[name] = (weight.astype(np.float32), bias.astype(np.float32))
    return arrays


def blob_parts(values: np.ndarray) -> list:
    """A BlobProto: shape 7 (BlobShape, packed dims), data 5 (packed little-endian float32)."""
    dims = b"".join(varint(d) for d in values.shape)
    shape = message_field(BLOB_SHAPE, message_field(SHAPE_DIM, dims))
    data = memoryview(np.ascontiguousarray(values, dtype="<f4")).cast("B")
    return [shape, *message_parts(BLOB_DATA, [data])]


def _param(number: int, name: str, value) -> bytes:
    if name in FLOAT_PARAMS:
        return varint(number << 3 | 5) + struct.pack("<f", value)
    return varint_field(number, value)


def layer_parts(name: str, kind: str, params: dict, bottoms: list, blobs=()) -> list:
    """A LayerParameter: name 1, type 2, bottoms 3, top 4, blobs 7, its parameter message."""
    head = message_field(LAYER_NAME, name.encode()) + message_field(LAYER_TYPE, kind.encode())
    head += b"".join(message_field(LAYER_BOTTOM, b.encode()) for b in bottoms)
    head += message_field(
        LAYER_TOP, (bottoms[0] if kind in ("BatchNorm", "Scale", "ReLU") else name).encode()
    )
    parts = [head]
    for values in blobs:
        parts += message_parts(LAYER_BLOBS, blob_parts(values))
    if kind in PARAM_MESSAGE and params:
        numbers = PARAM_NUMBERS[kind]
        body = b"".join(_param(numbers[k], k, v) for k, v in params.items())
        parts.append(message_field(PARAM_MESSAGE[kind], body))
    return parts


def write_res3d_caffemodel(
    path: Path,
    arrays: dict[str, tuple[np.ndarray, ...]],
    *,
    channels=(64, 128, 256, 512),
    changes: dict[str, dict] | None = None,
    rename: dict[str, str] | None = None,
) -> Path:
    """A NetParameter (name 1, layers 100) of the prototxt's layers with ``arrays``' blobs;
    ``changes`` overrides parameters of a layer, ``rename`` renames layers (a layer mapped
    to "" is left out)."""
    changes, rename = changes or {}, rename or {}
    num_outputs = arrays["fc8-pro"][0].shape[0]
    parts = [message_field(NET_NAME, b"C3D-ResNet18-Sports1M")]
    parts += message_parts(NET_LAYER, layer_parts("data", "VideoData", {}, []))
    for name, kind, params, bottoms in res3d_layers(num_outputs, channels):
        named = rename.get(name, name)
        if named == "":
            continue
        values = params | changes.get(name, {})
        parts += message_parts(
            NET_LAYER, layer_parts(named, kind, values, bottoms, arrays.get(name, ()))
        )
    with path.open("wb") as file:
        for part in parts:
            file.write(part)
    return path
