"""Protobuf's wire format, read from a Caffe file a field at a time (no protobuf package).

Both of the S-CNN authors' releases are read with it: C3D-v1.0 (scnn.caffe) and C3D-v1.1
(scnn.caffe_res3d). Only headers are decoded in memory; the packed floats of a blob are read
from the file straight into a tensor (:func:`read_floats`), so memory stays bounded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from scnn.errors import ModelError

# Wire types of protobuf's encoding.
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
# NetParameter's layers: V1LayerParameter ``layers`` (C3D-v1.0), LayerParameter ``layer``
# (C3D-v1.1, as BVLC Caffe's later releases).
NET_V1_LAYERS, NET_LAYERS = 2, 100
V10, V11 = "C3D-v1.0", "C3D-v1.1"
MAX_LAYERS = 1000  # a network has a few dozen: a file of more is refused before it fills memory
# What a file of the other release is, for the error that refuses it.
OTHER_NETWORK = {
    V10: "a Res3D-18 model (C3D-v1.1, BVLC Caffe's later format), which goes with "
    "model.backbone res3d18",
    V11: "a C3D model, which goes with model.backbone c3d",
}


@dataclass(frozen=True)
class Blob:
    """Where one parameter blob's float32 values lie in the file."""

    shape: tuple[int, ...]
    offset: int  # bytes from the start of the file
    count: int  # float32 values


@dataclass(frozen=True)
class Layer:
    """One layer of a Caffe model file: its type (C3D-v1.0: an enum value, C3D-v1.1: a
    string), its blobs and the parameters of its type's message."""

    name: str
    type: int | str
    blobs: tuple[Blob, ...]
    params: dict[str, Any]


class Wire:
    """Protobuf wire-format fields of a message lying in ``file`` between two offsets;
    ``release`` names the format expected, in errors."""

    def __init__(self, file: BinaryIO, path: Path, release: str = V10):
        self.file = file
        self.path = path
        self.release = release
        self.size = file.seek(0, 2)

    def fail(self, what: str, where: str) -> ModelError:
        return ModelError(
            f"{where}: {what} (not a {self.release} Caffe model, or truncated)", self.path
        )

    def _varint(self, offset: int, end: int, where: str) -> tuple[int, int]:
        self.file.seek(offset)
        head = self.file.read(min(10, end - offset))
        value = 0
        for index, byte in enumerate(head):
            value |= (byte & 0x7F) << (7 * index)
            if byte < 0x80:
                return value, offset + index + 1
        raise self.fail("a number runs past its message", where)

    def fields(
        self, start: int, end: int, where: str, cut: bool = False
    ) -> Iterator[tuple[int, int, int, int]]:
        """(field number, wire type, value, offset): ``value`` is a varint's value or the
        byte length of a length-delimited or fixed-size field, whose bytes start at
        ``offset``. ``cut``: a field that runs past ``end`` is yielded, not refused (a
        truncated file's last layer, whose name is still read)."""
        if end > self.size:
            raise self.fail(f"needs {end} bytes, the file has {self.size}", where)
        offset = start
        while offset < end:
            key, offset = self._varint(offset, end, where)
            number, wire = key >> 3, key & 7
            if wire == VARINT:
                value, offset = self._varint(offset, end, where)
                yield number, wire, value, offset
                continue
            if wire == LENGTH_DELIMITED:
                value, offset = self._varint(offset, end, where)
            elif wire in (FIXED32, FIXED64):
                value = 4 if wire == FIXED32 else 8
            else:
                raise self.fail(f"field {number} has wire type {wire}", where)
            if offset + value > end and not cut:
                raise self.fail(f"field {number} runs past its message", where)
            yield number, wire, value, offset
            offset += value

    def varints(self, offset: int, length: int, where: str) -> list[int]:
        """The values of a packed repeated varint field (a BlobShape's dims)."""
        values, end = [], offset + length
        while offset < end:
            value, offset = self._varint(offset, end, where)
            values.append(value)
        return values

    def float32(self, offset: int) -> float:
        """A fixed32 field's value as a float (a BatchNormParameter's eps)."""
        self.file.seek(offset)
        return struct.unpack("<f", self.file.read(4))[0]

    def text(self, offset: int, length: int) -> str:
        self.file.seek(offset)
        return self.file.read(length).decode("utf-8", errors="replace")

    def blob(self, shape: tuple[int, ...], data: tuple[int, int] | None, where: str) -> Blob:
        """The blob of ``shape`` whose packed floats lie at ``data`` (offset, bytes), checked
        to hold exactly as many values as the shape needs."""
        if max(shape) > self.size:  # beside a 0, any number makes a product of 0
            raise self.fail(f"blob of shape {shape} has a dimension beyond the file's size", where)
        count = int(np.prod(shape, dtype=object))  # exact: 64 bits would wrap round
        if data is None or data[1] != 4 * count:
            stored = 0 if data is None else data[1] // 4
            raise self.fail(f"blob of shape {shape} holds {stored} values, not {count}", where)
        return Blob(shape, data[0], count)


LayerParser = Callable[[Wire, int, int, int], Layer]  # (wire, start, end, index) -> Layer


def _cut_layer_name(wire: Wire, start: int, name_field: int) -> str:
    """The name of the layer a truncated file ends in, where its bytes still hold it."""
    try:
        for number, kind, value, offset in wire.fields(start, wire.size, "", cut=True):
            if number == name_field and kind == LENGTH_DELIMITED and offset + value <= wire.size:
                return wire.text(offset, value)
    except ModelError:  # the file ends inside a field's header
        pass
    return "?"


def read_net(
    path: str | Path,
    release: str,
    parse_layer: LayerParser,
    other_release: str,
    name_field: int,
) -> dict[str, Layer]:
    """The layers of a ``release`` model file by name, each parsed by ``parse_layer``; blob
    values stay in the file. A file of ``other_release`` (its layers in the other field) is
    a ModelError saying so; a truncated one names the layer it ends in (``name_field``: the
    layer name's field number)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("Caffe model file not found", path)
    own, other = (NET_V1_LAYERS, NET_LAYERS) if release == V10 else (NET_LAYERS, NET_V1_LAYERS)
    layers: dict[str, Layer] = {}
    with path.open("rb") as file:
        wire = Wire(file, path, release)
        for number, kind, value, offset in wire.fields(0, wire.size, "NetParameter", cut=True):
            if offset + value > wire.size and kind != VARINT:
                name = _cut_layer_name(wire, offset, name_field) if number == own else "?"
                missing = offset + value - wire.size
                raise ModelError(
                    f"layer {name}: the file ends {missing} bytes before the layer does "
                    "(truncated)",
                    path,
                )
            if number == other:
                raise ModelError(
                    f"layers in {other_release}'s format (NetParameter field {other}), not "
                    f"{release}'s (field {own}): {OTHER_NETWORK[release]}",
                    path,
                )
            if number == own and kind == LENGTH_DELIMITED:
                if len(layers) == MAX_LAYERS:
                    raise ModelError(f"more than {MAX_LAYERS} layers: not a {release} model", path)
                layer = parse_layer(wire, offset, offset + value, len(layers))
                if layer.name in layers:
                    raise ModelError(f"layer {layer.name} appears twice", path)
                layers[layer.name] = layer
    if not layers:
        raise ModelError(f"no layers (not a {release} Caffe model)", path)
    return layers


def caffe_release(path: str | Path) -> str:
    """V11 when the Caffe model ``path`` holds its layers in NetParameter's field 100, as
    C3D-v1.1 writes them, else V10, whose reader says what is wrong with a file that is
    neither. Reads only the top-level field headers (a truncated file is the reader's to
    name)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("Caffe model file not found", path)
    with path.open("rb") as file:
        wire = Wire(file, path, f"{V10} or {V11}")
        for number, kind, _, _ in wire.fields(0, wire.size, "NetParameter", cut=True):
            if kind == LENGTH_DELIMITED and number in (NET_V1_LAYERS, NET_LAYERS):
                return V11 if number == NET_LAYERS else V10
    return V10


def read_floats(file: BinaryIO, offset: int, count: int, path: Path) -> torch.Tensor:
    """``count`` little-endian float32 values at ``offset`` of ``file``."""
    file.seek(offset)
    values = np.fromfile(file, dtype="<f4", count=count)
    if len(values) != count:
        raise ModelError("truncated blob data", path)
    return torch.from_numpy(values)
