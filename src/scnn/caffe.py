"""The S-CNN authors' Caffe files (C3D-v1.0) read without Caffe, and either release's pair of
networks imported as a model directory (C3D-v1.1, Res3D-18, is read by scnn.caffe_res3d).

The reader follows the field numbers of the C3D-v1.0 fork's ``caffe.proto`` (zhengshou/scnn,
``C3D-v1.0/C3D_overlap_loss/src/caffe/proto/caffe.proto``); protobuf's wire format is decoded
by scnn.caffe_wire, so no protobuf package or generated code is needed:

    NetParameter    name 1, layers 2 (V1 LayerParameter; C3D-v1.1's ``layer`` is 100)
    LayerParameter  name 4, type 5 (enum), blobs 6, convolution_param 10,
                    inner_product_param 17, pooling_param 19
    BlobProto       num 1, channels 2, length 3, height 4, width 5, data 6 (packed float32)

Caffe stores a 3D convolution's weights (out, in, depth, k, k), PyTorch's Conv3d layout, its
biases (1, 1, 1, 1, N) and an inner product's weights (1, 1, 1, N_out, N_in), PyTorch's
Linear layout; fc6 reads pool5 in (channel, length, height, width) order, as C3D flattens it.
Only the headers are parsed in memory: each blob's floats are read from the file straight
into the network's tensor, so a 300 MB model needs its network's memory and one blob more.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from scnn.bundled_data import resolve_class_table, resolve_ground_truth
from scnn.caffe_res3d import RES3D_CONVENTION, RES3D_OPTIONS, load_res3d_weights
from scnn.caffe_wire import (
    LENGTH_DELIMITED,
    NET_LAYERS,
    NET_V1_LAYERS,
    V10,
    V11,
    VARINT,
    Blob,
    Layer,
    Wire,
    caffe_release,
    read_floats,
    read_net,
)
from scnn.clips import (
    C3D_MEAN_RGB,
    CLIP_FRAMES,
    CROP_SIZE,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    ClipConfig,
    InputConvention,
)
from scnn.errors import ModelError
from scnn.formats import load_ground_truth, read_class_table
from scnn.model import C3D, CONV_NAMES, ModelOptions, network_for_weights
from scnn.modelfile import LoadedModel, save_model
from scnn.postprocess import window_length_prior
from scnn.windows import WindowConfig

# Caffe's layer names (the authors' prototxts) for scnn's C3D layers. The Sports-1M model
# names its fc layers likewise (fc6-1, fc7-1) and its 487-way output fc8-1, which is not used.
CAFFE_NAMES = {
    "conv1a": "conv1",
    "conv2a": "conv2",
    **{name: name for name in CONV_NAMES[2:]},
    "fc6-1": "fc6",
    "fc7-1": "fc7",
    "fc8": "fc8",
}
SPORTS1M_FC8 = "fc8-1"  # the 487-way output's name in the Sports-1M C3D
POOL_NAMES = ("pool1", "pool2", "pool3", "pool4", "pool5")
CONVOLUTION3D, POOLING3D, INNER_PRODUCT = 30, 31, 14  # LayerParameter.LayerType values
TYPE_NAMES = {
    CONVOLUTION3D: "CONVOLUTION3D",
    POOLING3D: "POOLING3D",
    INNER_PRODUCT: "INNER_PRODUCT",
}
MAX_POOLING = 0  # PoolingParameter.PoolMethod.MAX

LAYER_NAME, LAYER_TYPE, LAYER_BLOBS = 4, 5, 6
LAYER_PARAMS = {10: "convolution", 17: "inner_product", 19: "pooling"}
BLOB_DIMS, BLOB_DATA = (1, 2, 3, 4, 5), 6
# Fields of the parameter messages, by number, with the defaults caffe.proto gives them.
PARAM_FIELDS = {
    "convolution": {
        1: ("num_output", 0),
        3: ("pad", 0),
        4: ("kernel_size", 0),
        6: ("kernel_depth", 0),
        7: ("stride", 1),
        8: ("temporal_stride", 1),
        12: ("temporal_pad", 0),
    },
    "inner_product": {1: ("num_output", 0)},
    "pooling": {
        1: ("pool", MAX_POOLING),
        2: ("kernel_size", 0),
        3: ("stride", 1),
        4: ("pad", 0),
        5: ("kernel_depth", 0),
        6: ("temporal_stride", 1),
    },
}


def _blob(wire: Wire, start: int, end: int, where: str) -> Blob:
    dims = dict.fromkeys(BLOB_DIMS, 0)
    data: tuple[int, int] | None = None
    for number, kind, value, offset in wire.fields(start, end, where):
        expected = VARINT if number in BLOB_DIMS else LENGTH_DELIMITED
        # BVLC's BlobProto keeps its packed data in field 5: a wire type differs here
        if (number in BLOB_DIMS or number == BLOB_DATA) and kind != expected:
            raise wire.fail(f"BlobProto field {number} has wire type {kind}", where)
        if number in BLOB_DIMS:
            dims[number] = value
        elif number == BLOB_DATA:
            data = (offset, value)
    return wire.blob(tuple(dims[n] for n in BLOB_DIMS), data, where)


def _params(wire: Wire, kind: str, start: int, end: int, where: str) -> dict[str, int]:
    known = PARAM_FIELDS[kind]
    params = {name: default for name, default in known.values()}
    for number, wire_type, value, _ in wire.fields(start, end, where):
        if number in known and wire_type == VARINT:
            params[known[number][0]] = value
    return params


def _layer(wire: Wire, start: int, end: int, index: int) -> Layer:
    name, layer_type, blobs, params = f"#{index + 1}", 0, [], {}
    for number, kind, value, offset in wire.fields(start, end, f"layer {name}"):
        if number == LAYER_NAME and kind == LENGTH_DELIMITED:
            name = wire.text(offset, value)
    where = f"layer {name}"
    for number, kind, value, offset in wire.fields(start, end, where):
        if number == LAYER_TYPE and kind == VARINT:
            layer_type = value
        elif number == LAYER_BLOBS and kind == LENGTH_DELIMITED:
            blobs.append(_blob(wire, offset, offset + value, f"{where}, blob {len(blobs)}"))
        elif number in LAYER_PARAMS and kind == LENGTH_DELIMITED:
            params = _params(wire, LAYER_PARAMS[number], offset, offset + value, where)
    return Layer(name, layer_type, tuple(blobs), params)


def is_caffe_model(path: str | Path) -> bool:
    """Whether ``path`` starts as a NetParameter does (its name, field 1, or a layer, field 2
    or 100), which neither a torch.save zip ("PK") nor a pickle (0x80) does. The authors'
    files have no suffix (``conv3d_deepnetA_sport1m_iter_1900000``), so the content tells."""
    path = Path(path)
    if path.suffix == ".caffemodel":
        return True
    try:
        with path.open("rb") as file:
            first = file.read(1)
    except OSError:
        return False
    return first in (
        bytes([1 << 3 | LENGTH_DELIMITED]),
        bytes([NET_V1_LAYERS << 3 | LENGTH_DELIMITED]),
        bytes([(NET_LAYERS << 3 | LENGTH_DELIMITED) & 0x7F | 0x80]),  # a varint's first byte
    )


def read_layers(path: str | Path) -> dict[str, Layer]:
    """The layers of a C3D-v1.0 ``.caffemodel`` by name; blob values stay in the file."""
    return read_net(path, V10, _layer, V11, LAYER_NAME)


def _expected_params(module: nn.Module) -> dict[str, int]:
    """The Caffe parameters that build ``module`` (a Conv3d, MaxPool3d or Linear)."""
    if isinstance(module, nn.Conv3d):
        return {
            "num_output": module.out_channels,
            "kernel_depth": module.kernel_size[0],
            "kernel_size": module.kernel_size[1],
            "temporal_pad": module.padding[0],
            "pad": module.padding[1],
            "temporal_stride": module.stride[0],
            "stride": module.stride[1],
        }
    if isinstance(module, nn.MaxPool3d):
        return {
            "pool": MAX_POOLING,
            "kernel_depth": module.kernel_size[0],
            "kernel_size": module.kernel_size[1],
            "temporal_stride": module.stride[0],
            "stride": module.stride[1],
            "pad": 0,
        }
    return {"num_output": module.out_features}


def _check_geometry(layer: Layer, module: nn.Module, expected_type: int, path: Path) -> None:
    if layer.type != expected_type:
        found = TYPE_NAMES.get(layer.type, f"type {layer.type}")
        raise ModelError(
            f"layer {layer.name} is {found}, expected {TYPE_NAMES[expected_type]}", path
        )
    for name, value in _expected_params(module).items():
        if layer.params and layer.params[name] != value:
            raise ModelError(
                f"layer {layer.name} has {name} {layer.params[name]}, the network {value}",
                path,
            )


def _caffe_shapes(module: nn.Conv3d | nn.Linear) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The blob shapes Caffe gives ``module``'s weight and bias (see the module docstring)."""
    if isinstance(module, nn.Conv3d):
        weight = tuple(module.weight.shape)
    else:
        weight = (1, 1, 1, *module.weight.shape)
    return weight, (1, 1, 1, 1, module.weight.shape[0])


def load_caffe_weights(
    model: C3D, path: str | Path, *, fc8: bool = True, fc8_layer: str = "fc8"
) -> None:
    """Copy conv1a … fc7-1 (and fc8 unless ``fc8`` is False: training replaces the Sports-1M
    model's 487-way output) from a C3D-v1.0 ``.caffemodel`` into ``model``, checking each
    layer's type, geometry (where the file records it) and blob shapes against ``model``.
    ``fc8_layer``: fc8's name in the file (SPORTS1M_FC8 in the Sports-1M model). The
    max-pools' kernels and strides are checked too. Any mismatch is a ModelError naming
    the file and the layer."""
    path = Path(path)
    layers = read_layers(path)
    for caffe_name in POOL_NAMES:
        if caffe_name in layers:
            _check_geometry(layers[caffe_name], getattr(model, caffe_name), POOLING3D, path)
    wanted = [
        (fc8_layer if s == "fc8" else c, s) for c, s in CAFFE_NAMES.items() if fc8 or s != "fc8"
    ]
    for caffe_name, _ in wanted:
        if caffe_name not in layers:
            raise ModelError(f"layer {caffe_name} is missing", path)
    with path.open("rb") as file, torch.no_grad():
        for caffe_name, name in wanted:
            module, layer = getattr(model, name), layers[caffe_name]
            kind = CONVOLUTION3D if isinstance(module, nn.Conv3d) else INNER_PRODUCT
            _check_geometry(layer, module, kind, path)
            shapes = _caffe_shapes(module)
            if len(layer.blobs) != 2:
                raise ModelError(f"layer {caffe_name} has {len(layer.blobs)} blobs, not 2", path)
            for blob, shape, tensor in zip(
                layer.blobs, shapes, (module.weight, module.bias), strict=True
            ):
                if blob.shape != shape:
                    raise ModelError(
                        f"layer {caffe_name}: blob of shape {blob.shape}, the network needs "
                        f"{shape}",
                        path,
                    )
                tensor.copy_(_read_values(file, blob, path).view(tensor.shape))


def _read_values(file: BinaryIO, blob: Blob, path: Path) -> torch.Tensor:
    return read_floats(file, blob.offset, blob.count, path)


def read_mean_cube(path: str | Path) -> torch.Tensor:
    """C3D's mean file (a BlobProto of shape (1, 3, length, height, width), BGR channels, as
    OpenCV decoded the frames) as a ``(length, height, width, 3)`` RGB float32 tensor."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("mean file not found", path)
    with path.open("rb") as file:
        wire = Wire(file, path)
        blob = _blob(wire, 0, wire.size, "mean BlobProto")
        if blob.shape[:2] != (1, 3):
            raise ModelError(f"mean blob has shape {blob.shape}, expected (1, 3, L, H, W)", path)
        cube = _read_values(file, blob, path).view(blob.shape)[0]
    return cube.flip(0).permute(1, 2, 3, 0).contiguous()


# The authors' networks: the faithful C3D, pooled as Caffe pools (scnn.model.POOLING_RULES).
CAFFE_OPTIONS = ModelOptions(width=1.0, dropout=0.5, batch_norm=False, pooling="caffe")


def caffe_convention(mean_cube: torch.Tensor | None = None) -> InputConvention:
    """The input the authors' C3D networks (and the Sports-1M C3D they start from) learnt on,
    their prototxts' data layer: 16 frames of 171×128, BGR, minus the per-pixel cube of their
    mean file (``mean_cube``; without it, its per-channel stand-in), centre crop 112, no
    scaling."""
    return InputConvention(
        frame_size=(FRAME_WIDTH, FRAME_HEIGHT),
        crop_size=CROP_SIZE,
        clip_frames=CLIP_FRAMES,
        bgr=True,
        mean=C3D_MEAN_RGB if mean_cube is None else mean_cube,
        std=(1.0, 1.0, 1.0),
    )


def caffe_clip_config(convention: InputConvention) -> ClipConfig:
    """The clip config of a model directory imported from Caffe: ``convention``'s frames,
    crop and channels, no mirroring; ``mean_rgb`` records a cube's per-channel average."""
    cube, mean = convention.mean_cube, convention.mean
    if cube is not None:
        mean = cube.mean(dim=(0, 1, 2))
    elif isinstance(mean, float | int):  # one value for every channel
        mean = (mean,) * 3
    return ClipConfig(
        frame_size=convention.frame_size,
        crop_size=convention.crop_size,
        clip_frames=convention.clip_frames,
        mean_rgb=tuple(round(float(v), 3) for v in mean),
        std_rgb=convention.std,
        bgr=convention.bgr,
        mirror=False,
    )


def class_names(table: str | Path) -> tuple[str, ...]:
    """The class names of a class table in index order; the indices must be 1..K, fc8's
    outputs after background (0)."""
    path = resolve_class_table(table)
    by_index = read_class_table(path)
    if sorted(by_index) != list(range(1, len(by_index) + 1)):
        raise ModelError(f"class indices must be 1..{len(by_index)}, as fc8's outputs", path)
    return tuple(by_index[index] for index in range(1, len(by_index) + 1))


def import_caffe(
    proposal: str | Path,
    localization: str | Path,
    mean: str | Path | None,
    out: str | Path,
    *,
    classes: str | Path = "thumos14",
    prior_from: str | Path = "thumos14-val",
) -> None:
    """Write a model directory from the authors' proposal and localization ``.caffemodel``
    files: the THUMOS14 classes in fc8's order and the window-length prior of the THUMOS14
    val annotations by default, as the authors computed it. The release is told by the
    files: C3D-v1.0 (C3D) needs the mean file ``mean``; C3D-v1.1 (Res3D-18) subtracts the
    value 128 and takes none."""
    names = class_names(classes)
    release = caffe_release(proposal)
    if caffe_release(localization) != release:
        raise ModelError(f"not a {release} file as the proposal network is", localization)
    if release == V11:
        if mean is not None:
            raise ModelError("the C3D-v1.1 networks subtract the value 128: leave out --mean", mean)
        options, convention = RES3D_OPTIONS, RES3D_CONVENTION
    else:
        if mean is None:
            raise ModelError(
                "a C3D-v1.0 network: give its mean file (--mean "
                "train01_16_128_171_mean.binaryproto)",
                proposal,
            )
        mean_cube = read_mean_cube(mean)
        expected = (CLIP_FRAMES, FRAME_HEIGHT, FRAME_WIDTH, 3)
        if tuple(mean_cube.shape) != expected:
            shape = (1, 3, *mean_cube.shape[:3])
            raise ModelError(
                f"mean blob has shape {shape}, the networks need (1, 3, 16, 128, 171)", mean
            )
        options, convention = CAFFE_OPTIONS, caffe_convention(mean_cube)
    clip = caffe_clip_config(convention)
    networks = {}
    for name, path, outputs in (
        ("proposal", proposal, 2),
        ("localization", localization, len(names) + 1),
    ):
        network = network_for_weights(outputs, options, clip)
        if release == V11:
            load_res3d_weights(network, path)
        else:
            load_caffe_weights(network, path)
        networks[name] = network.eval()
    windows = WindowConfig()
    prior = window_length_prior(
        load_ground_truth(resolve_ground_truth(prior_from)).instances, names
    )
    model = LoadedModel(
        proposal=networks["proposal"],
        localization=networks["localization"],
        classes=names,
        prior=prior,
        windows=windows,
        convention=convention,
        clip=clip,
        options=options,
        config={
            "imported_from": {
                "release": release,
                "proposal": Path(proposal).name,
                "localization": Path(localization).name,
                "mean": None if mean is None else Path(mean).name,
                "classes": str(classes),
                "prior_from": str(prior_from),
            }
        },
    )
    save_model(out, model)
