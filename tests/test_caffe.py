"""The authors' Caffe files: reader, layer geometry, mean cube, import, and an end-to-end
check against a reference forward written from Caffe's definitions (tests/caffe_writer.py
writes the files, independently of the reader)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from caffe_writer import (
    AUTHORS_DATA,
    AUTHORS_LAYERS,
    blob,
    c3d_arrays,
    layer,
    message_field,
    write_caffemodel,
    write_mean,
)

from scnn.annotations import load_ground_truth
from scnn.bundled_data import resolve_ground_truth
from scnn.caffe import (
    CAFFE_NAMES,
    CAFFE_OPTIONS,
    caffe_clip_config,
    class_names,
    import_caffe,
    load_caffe_weights,
    read_mean_cube,
)
from scnn.errors import ModelError
from scnn.model import C3D
from scnn.modelfile import load_model
from scnn.postprocess import window_length_prior

SMALL = dict(width=1 / 16, crop_size=32)  # a C3D small enough to fill quickly
SMALL_CHANNELS = (4, 8, 16, 16, 32, 32, 32, 32)
SMALL_FC = 256


def _small_arrays(num_outputs: int, unique: bool = True) -> dict:
    rng = np.random.default_rng(0)
    return c3d_arrays(rng, num_outputs, SMALL_CHANNELS, SMALL_FC, pool5_positions=1, unique=unique)


# --- layer geometry: scnn's C3D against the authors' prototxts -------------------------------


def test_the_networks_geometry_is_the_authors_prototxts():
    """Every conv, pool and fc of the imported network, as the prototxts define them."""
    model = C3D(21, width=CAFFE_OPTIONS.width, pooling=CAFFE_OPTIONS.pooling)
    scnn_names = {**CAFFE_NAMES, **{f"pool{k}": f"pool{k}" for k in range(1, 6)}}
    for name, kind, params in AUTHORS_LAYERS:
        module = getattr(model, scnn_names[name])
        if kind == "CONVOLUTION3D":
            assert module.out_channels == params["num_output"], name
            assert module.kernel_size == (params["kernel_depth"], *[params["kernel_size"]] * 2)
            assert module.padding == (params["temporal_pad"], *[params["pad"]] * 2)
            assert module.stride == (1, 1, 1)
        elif kind == "POOLING3D":
            assert module.kernel_size == (params["kernel_depth"], *[params["kernel_size"]] * 2)
            assert module.stride == (params["temporal_stride"], *[params["stride"]] * 2)
            assert module.padding == (0, 0, 0) and module.ceil_mode, name  # Caffe: no pad, ceil
        elif params:
            assert module.out_features == params["num_output"], name
    assert model.fc6.in_features == 512 * 1 * 4 * 4  # pool5: 2×7×7 -> 1×4×4
    assert (model.clip_frames, model.crop_size) == (16, 112)
    clip = caffe_clip_config(torch.zeros(16, 128, 171, 3))
    assert clip.frame_size == (AUTHORS_DATA["new_width"], AUTHORS_DATA["new_height"])
    assert clip.clip_frames == AUTHORS_DATA["new_length"]
    assert clip.crop_size == AUTHORS_DATA["crop_size"] and clip.bgr
    assert clip.std_rgb == (1.0, 1.0, 1.0)  # no scaling


def test_caffe_pooling_cuts_the_last_window_short():
    """pool5 on 2×7×7: windows over columns [0,1], [2,3], [4,5], [6] (the padded rule
    of the PyTorch port: [-1,0], [1,2], [3,4], [5,6])."""
    x = torch.arange(7.0).view(1, 1, 1, 1, 7).expand(1, 1, 2, 7, 7).contiguous()
    caffe = C3D(2, width=1 / 16, pooling="caffe").pool5
    padded = C3D(2, width=1 / 16, pooling="padded").pool5
    assert caffe(x)[0, 0, 0, 0].tolist() == [1, 3, 5, 6]
    assert padded(x)[0, 0, 0, 0].tolist() == [0, 2, 4, 6]
    with pytest.raises(ValueError, match="pooling 'round'"):
        C3D(2, pooling="round")


# --- reading weights --------------------------------------------------------------------------


def test_every_tensor_lands_where_caffe_uses_it(tmp_path):
    arrays = _small_arrays(21)
    path = write_caffemodel(tmp_path / "loc.caffemodel", arrays)
    model = C3D(21, **SMALL)
    load_caffe_weights(model, path)
    for caffe_name, name in CAFFE_NAMES.items():
        weight, bias = arrays[caffe_name]
        module = getattr(model, name)
        if name.startswith("conv"):  # (out, in, depth, k, k) in both
            assert torch.equal(module.weight, torch.from_numpy(weight))
        else:  # (1, 1, 1, out, in) -> (out, in)
            assert torch.equal(module.weight, torch.from_numpy(weight[0, 0, 0]))
        assert torch.equal(module.bias, torch.from_numpy(bias.reshape(-1)))
    # spot checks of the layout, value by value: layer k holds k·2^20 + position
    assert model.conv3a.weight[2, 5, 1, 0, 2].item() == 3 * 2**20 + np.ravel_multi_index(
        (2, 5, 1, 0, 2), arrays["conv3a"][0].shape
    )
    assert model.fc7.weight[7, 100].item() == 10 * 2**20 + 7 * SMALL_FC + 100
    assert model.fc8.bias[20].item() == -(11 * 2**20 + 20)


def test_sports1m_model_loads_without_its_487_way_fc8(tmp_path):
    arrays = _small_arrays(487)
    rename = {"fc6-1": "fc6-1", "fc7-1": "fc7-1", "fc8": "fc8-1"}
    path = write_caffemodel(tmp_path / "sport1m.caffemodel", arrays, rename=rename)
    model = C3D(21, **SMALL)
    fc8_before = model.fc8.weight.clone()
    load_caffe_weights(model, path, fc8=False)
    assert torch.equal(model.fc7.bias, torch.from_numpy(arrays["fc7-1"][1].reshape(-1)))
    assert torch.equal(model.fc8.weight, fc8_before)
    with pytest.raises(ModelError, match="layer fc8 is missing"):
        load_caffe_weights(model, path)


def _bvlc_layer() -> bytes:
    """conv1a as BVLC Caffe's V1 files store it: BlobProto data in field 5, no length."""
    weight = np.zeros((64, 3, 3, 3), np.float32)
    return message_field(4, b"conv1a") + message_field(
        6, blob(weight, data_field=5, dim_fields=(1, 2, 3, 4))
    )


def _without(arrays: dict, name: str) -> dict:
    return {k: v for k, v in arrays.items() if k != name}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: write_caffemodel(p, _without(_small_arrays(21), "conv3b")), "conv3b is missing"),
        (
            lambda p: write_caffemodel(p, _small_arrays(2)),
            "layer fc8 has num_output 2, the network 21",
        ),
        (
            lambda p: write_caffemodel(p, _small_arrays(2), params=False),
            r"layer fc8: blob of shape \(1, 1, 1, 2, 256\), the network needs \(1, 1, 1, 21, 256\)",
        ),
        (
            lambda p: p.write_bytes(write_caffemodel(p, _small_arrays(21)).read_bytes()[:-5000]),
            "truncated",
        ),
        (lambda p: p.write_bytes(message_field(100, layer("conv1a", "RELU", {}))), "BVLC"),
        (
            lambda p: p.write_bytes(message_field(2, _bvlc_layer())),
            "BlobProto field 5 has wire type 2",
        ),
        (lambda p: p.write_bytes(b"PK\x03\x04 a zip, e.g. a torch.save file"), "not a C3D-v1.0"),
    ],
    ids=[
        "missing-layer",
        "wrong-outputs",
        "wrong-shape",
        "truncated",
        "bvlc-format",
        "bvlc-blob",
        "not-caffe",
    ],
)
def test_a_file_that_is_not_such_a_model_is_one_line_naming_it(tmp_path, make, message):
    path = tmp_path / "bad.caffemodel"
    make(path)
    with pytest.raises(ModelError, match=message) as caught:
        load_caffe_weights(C3D(21, **SMALL), path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_other_geometry_in_the_file_is_refused(tmp_path):
    arrays = _small_arrays(21)
    path = write_caffemodel(tmp_path / "loc.caffemodel", arrays)
    text = path.read_bytes()
    # pool1 with kernel_depth 2 instead of 1: a different network
    pool1 = layer(
        "pool1", "POOLING3D", dict(kernel_size=2, kernel_depth=1, stride=2, temporal_stride=1)
    )
    changed = layer(
        "pool1", "POOLING3D", dict(kernel_size=2, kernel_depth=2, stride=2, temporal_stride=1)
    )
    assert text.count(pool1) == 1
    path.write_bytes(text.replace(pool1, changed))
    with pytest.raises(ModelError, match="layer pool1 has kernel_depth 2, the network 1"):
        load_caffe_weights(C3D(21, **SMALL), path)


# --- the mean cube ---------------------------------------------------------------------------


def test_mean_cube_comes_back_rgb_frame_by_frame(tmp_path):
    cube_bgr = np.random.default_rng(1).uniform(0, 255, (3, 16, 128, 171)).astype(np.float32)
    cube = read_mean_cube(write_mean(tmp_path / "mean.binaryproto", cube_bgr))
    assert cube.shape == (16, 128, 171, 3)
    assert cube[5, 100, 170, 0].item() == cube_bgr[2, 5, 100, 170]  # R is Caffe's channel 2
    assert cube[0, 0, 1, 2].item() == cube_bgr[0, 0, 0, 1]  # B is channel 0
    with pytest.raises(ModelError, match="mean blob has shape"):
        read_mean_cube(write_mean(tmp_path / "gray.binaryproto", cube_bgr[:1]))


# --- import ----------------------------------------------------------------------------------

# The authors' window-length prior (experiments/THUMOS14/window_weight/weight.csv), rows
# L = 16…512, for BaseballPitch (index 1) and VolleyballSpiking (index 20).
AUTHORS_PRIOR = {
    0: (0, 0.066667, 0.45, 0.43333, 0.05, 0),
    19: (0.24031, 0.39147, 0.24419, 0.065891, 0.042636, 0.015504),
}


def test_import_defaults_thumos14_classes_and_the_authors_prior():
    classes = class_names("thumos14")
    assert (
        len(classes) == 20 and classes[0] == "BaseballPitch" and classes[-1] == "VolleyballSpiking"
    )
    val = load_ground_truth(resolve_ground_truth("thumos14-val"))
    prior = window_length_prior(val.instances, classes)
    for column, values in AUTHORS_PRIOR.items():
        np.testing.assert_allclose(prior[:, column], values, atol=1e-5)


def test_class_table_indices_must_be_fc8s(tmp_path):
    table = tmp_path / "classes.csv"
    table.write_text("index,name\n1,Jump\n3,Run\n")
    with pytest.raises(ModelError, match=r"class indices must be 1..2"):
        class_names(table)
