"""Write C3D-v1.0 Caffe files for tests, byte by byte from caffe.proto's field numbers.

Independent of scnn.caffe (which reads them): protobuf's wire encoding is written out here
(varint keys, length-delimited messages, packed float32 blobs), and the layer facts are
transcribed from the authors' prototxts (zhengshou/scnn:
experiments/THUMOS14/network_*/test.prototxt, demo/pred/*/demo_finetuning_feature_extract.prototxt;
C3D's Sports-1M feature extractor names its fc layers fc6-1, fc7-1, fc8-1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (name, Caffe type, parameters) of the authors' test networks, in prototxt order; fc8's
# num_output (2 or 21) varies by network and is left out.
CONV = dict(kernel_size=3, kernel_depth=3, pad=1, temporal_pad=1)  # stride 1 by default
AUTHORS_LAYERS = (
    ("conv1a", "CONVOLUTION3D", dict(num_output=64, **CONV)),
    ("pool1", "POOLING3D", dict(kernel_size=2, kernel_depth=1, stride=2, temporal_stride=1)),
    ("conv2a", "CONVOLUTION3D", dict(num_output=128, **CONV)),
    ("pool2", "POOLING3D", dict(kernel_size=2, kernel_depth=2, stride=2, temporal_stride=2)),
    ("conv3a", "CONVOLUTION3D", dict(num_output=256, **CONV)),
    ("conv3b", "CONVOLUTION3D", dict(num_output=256, **CONV)),
    ("pool3", "POOLING3D", dict(kernel_size=2, kernel_depth=2, stride=2, temporal_stride=2)),
    ("conv4a", "CONVOLUTION3D", dict(num_output=512, **CONV)),
    ("conv4b", "CONVOLUTION3D", dict(num_output=512, **CONV)),
    ("pool4", "POOLING3D", dict(kernel_size=2, kernel_depth=2, stride=2, temporal_stride=2)),
    ("conv5a", "CONVOLUTION3D", dict(num_output=512, **CONV)),
    ("conv5b", "CONVOLUTION3D", dict(num_output=512, **CONV)),
    ("pool5", "POOLING3D", dict(kernel_size=2, kernel_depth=2, stride=2, temporal_stride=2)),
    ("fc6-1", "INNER_PRODUCT", dict(num_output=4096)),
    ("fc7-1", "INNER_PRODUCT", dict(num_output=4096)),
    ("fc8", "INNER_PRODUCT", dict()),
)
# The data layer: frames resized to new_width x new_height, new_length frames, crop_size.
AUTHORS_DATA = dict(new_length=16, new_height=128, new_width=171, crop_size=112, mirror=False)

LAYER_TYPES = {"CONVOLUTION3D": 30, "POOLING3D": 31, "INNER_PRODUCT": 14, "RELU": 18}
PARAM_MESSAGE = {"CONVOLUTION3D": 10, "POOLING3D": 19, "INNER_PRODUCT": 17}
PARAM_NUMBERS = {  # field numbers inside ConvolutionParameter / PoolingParameter / InnerProduct
    "CONVOLUTION3D": dict(
        num_output=1,
        pad=3,
        kernel_size=4,
        kernel_depth=6,
        stride=7,
        temporal_stride=8,
        temporal_pad=12,
    ),
    "POOLING3D": dict(pool=1, kernel_size=2, stride=3, pad=4, kernel_depth=5, temporal_stride=6),
    "INNER_PRODUCT": dict(num_output=1),
}


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3 | 0) + varint(value)


def message_field(number: int, payload: bytes) -> bytes:
    return b"".join(message_parts(number, [payload]))


def message_parts(number: int, parts: list) -> list:
    """A length-delimited field whose payload is ``parts`` (bytes or memoryviews), unjoined:
    a 300 MB model is written piece by piece, not copied into one string."""
    return [varint(number << 3 | 2) + varint(sum(len(part) for part in parts)), *parts]


def blob_parts(values: np.ndarray, *, data_field: int = 6, dim_fields=(1, 2, 3, 4, 5)) -> list:
    """A BlobProto of a 5-d array (num, channels, length, height, width), packed float32 data.
    ``data_field``/``dim_fields`` let a test write BVLC Caffe's numbering instead."""
    dims = b"".join(varint_field(n, d) for n, d in zip(dim_fields, values.shape, strict=False))
    data = memoryview(np.ascontiguousarray(values, dtype="<f4")).cast("B")  # little-endian
    return [dims, *message_parts(data_field, [data])]


def blob(values: np.ndarray, **numbering) -> bytes:
    return b"".join(blob_parts(values, **numbering))


def layer_parts(name: str, kind: str, params: dict, blobs: tuple[np.ndarray, ...] = ()) -> list:
    """A V1 LayerParameter: name 4, type 5, blobs 6, the kind's parameter message."""
    parts = [message_field(4, name.encode()) + varint_field(5, LAYER_TYPES[kind])]
    for values in blobs:
        parts += message_parts(6, blob_parts(values))
    if kind in PARAM_MESSAGE and params:
        numbers = PARAM_NUMBERS[kind]
        body = b"".join(varint_field(numbers[k], v) for k, v in params.items())
        parts.append(message_field(PARAM_MESSAGE[kind], body))
    return parts


def layer(name: str, kind: str, params: dict, blobs: tuple[np.ndarray, ...] = ()) -> bytes:
    return b"".join(layer_parts(name, kind, params, blobs))


def c3d_arrays(
    rng: np.random.Generator,
    num_outputs: int,
    channels: tuple[int, ...] = (64, 128, 256, 256, 512, 512, 512, 512),
    fc_units: int = 4096,
    pool5_positions: int = 16,
    unique: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) per weighted layer of the authors' C3D in Caffe's blob shapes.

    ``unique``: each value tells its layer and position (layer k holds k·2^20 + position),
    exact in float32 for small networks. Otherwise scaled random values that keep a
    forward pass's activations near 1 (so softmax outputs are not all 0 or 1)."""
    arrays = {}
    convs = [name for name, kind, _ in AUTHORS_LAYERS if kind == "CONVOLUTION3D"]
    shapes = {}
    for name, c_in, c_out in zip(convs, (3, *channels[:-1]), channels, strict=True):
        shapes[name] = ((c_out, c_in, 3, 3, 3), (1, 1, 1, 1, c_out))
    fc_in = {"fc6-1": channels[-1] * pool5_positions, "fc7-1": fc_units, "fc8": fc_units}
    fc_out = {"fc6-1": fc_units, "fc7-1": fc_units, "fc8": num_outputs}
    for name in fc_in:
        shapes[name] = ((1, 1, 1, fc_out[name], fc_in[name]), (1, 1, 1, 1, fc_out[name]))
    for k, (name, (w_shape, b_shape)) in enumerate(shapes.items(), start=1):
        if unique:
            weight = k * 2**20 + np.arange(np.prod(w_shape), dtype=np.float64)
            bias = -(k * 2**20 + np.arange(np.prod(b_shape), dtype=np.float64))
        else:
            fan_in = np.prod(w_shape[1:]) if name.startswith("conv") else w_shape[-1]
            # conv1a sees pixels (±100), not unit activations; a small fc8 keeps softmax soft
            damping = {"conv1a": 1 / 60, "fc8": 0.3}.get(name, 1.0)
            scale = np.sqrt(2.0 / fan_in) * damping
            # uniform values of standard deviation ``scale`` (quicker to draw than normal)
            weight = (rng.random(w_shape, dtype=np.float32) - 0.5) * np.float32(scale * 12**0.5)
            bias = (rng.random(b_shape, dtype=np.float32) - 0.5) * np.float32(0.02)
        arrays[name] = (
            weight.reshape(w_shape).astype(np.float32),
            bias.reshape(b_shape).astype(np.float32),
        )
    return arrays


def write_caffemodel(
    path: Path,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    rename: dict[str, str] | None = None,
    params: bool = True,
) -> Path:
    """A NetParameter (name 1, V1 layers 2) with the authors' layers, ReLUs between, and the
    weights of ``arrays``; ``rename`` maps the authors' names to a file's (Sports-1M's fc)."""
    rename = rename or {}
    parts = [message_field(1, b"DeepConv3DNet_test")]
    for name, kind, layer_params in AUTHORS_LAYERS:
        if name not in arrays and kind != "POOLING3D":
            continue
        blobs = arrays.get(name, ())
        values = dict(layer_params)
        if kind == "CONVOLUTION3D":
            values["num_output"] = blobs[0].shape[0]
        elif kind == "INNER_PRODUCT":
            values["num_output"] = blobs[0].shape[3]
        named = rename.get(name, name)
        parts += message_parts(2, layer_parts(named, kind, values if params else {}, blobs))
        if kind != "POOLING3D":
            parts.append(message_field(2, layer(f"relu-{name}", "RELU", {})))
    with path.open("wb") as file:
        for part in parts:
            file.write(part)
    return path


def write_mean(path: Path, cube_bgr: np.ndarray) -> Path:
    """A mean file: one BlobProto of shape (1, 3, length, height, width), BGR channels."""
    with path.open("wb") as file:
        for part in blob_parts(cube_bgr[None]):
            file.write(part)
    return path
