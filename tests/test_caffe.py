"""The authors' Caffe files: reader, layer geometry, mean cube, import, and an end-to-end
check against a reference forward written from Caffe's definitions (tests/caffe_writer.py
writes the files, independently of the reader)."""

import contextlib
import json
import math
import subprocess
from dataclasses import replace
from pathlib import Path

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
    varint_field,
    write_caffemodel,
    write_mean,
)
from pause import Pause
from tiny import MODEL_CLIP, MODEL_OPTIONS, random_model
from videos import write_video

from scnn import training_job
from scnn.bundled_data import resolve_ground_truth
from scnn.caffe import (
    CAFFE_NAMES,
    CAFFE_OPTIONS,
    caffe_convention,
    class_names,
    load_caffe_weights,
    read_mean_cube,
)
from scnn.caffe_wire import MAX_LAYERS
from scnn.cli import EXIT_ERROR, main
from scnn.detect import BUNDLED_MODEL
from scnn.errors import ModelError, ScnnError
from scnn.formats import load_ground_truth
from scnn.formats.windows_csv import read_windows_csv
from scnn.model import C3D, ModelOptions
from scnn.modelfile import load_model
from scnn.postprocess import window_length_prior
from scnn.pretrained import load_pretrained, training_config
from scnn.video import read_frames
from scnn.windows import window_grid

IMPORT_FILES = ("--proposal", "--localization", "--mean")  # of `scnn import-caffe`
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
    convention = caffe_convention(torch.zeros(16, 128, 171, 3))
    assert convention.frame_size == (AUTHORS_DATA["new_width"], AUTHORS_DATA["new_height"])
    assert convention.clip_frames == AUTHORS_DATA["new_length"]
    assert convention.crop_size == AUTHORS_DATA["crop_size"] and convention.bgr
    assert convention.std == (1.0, 1.0, 1.0)  # no scaling


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
    with pytest.raises(ScnnError, match="pooling 'round' is not one of caffe, padded"):
        ModelOptions(pooling="round")


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


def test_a_file_of_endless_layers_is_refused_at_the_limit(tmp_path):
    """A C3D has a few dozen layers; a file of many thousands is not read to its end."""
    path = tmp_path / "many.caffemodel"
    dummies = (layer(f"dummy{k}", "RELU", {}) for k in range(MAX_LAYERS + 1))
    path.write_bytes(b"".join(message_field(2, dummy) for dummy in dummies))
    with pytest.raises(ModelError, match=f"more than {MAX_LAYERS} layers") as caught:
        load_caffe_weights(C3D(21, **SMALL), path)
    assert str(caught.value).startswith(f"{path}: ")


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


@pytest.mark.parametrize(
    "dims", [(1, 3, 1, 2**32, 2**32), (1, 3, 0, 2**69, 2), (1, 3, 2, 2, 2**66)]
)
def test_a_mean_file_whose_dimensions_overflow_is_one_line(tmp_path, dims):
    """Dimensions whose product wraps round (to the 0 values stored) or passes 64 bits."""
    path = tmp_path / "mean.binaryproto"
    fields = b"".join(varint_field(number, d) for number, d in enumerate(dims, start=1))
    path.write_bytes(fields + message_field(6, b""))
    with pytest.raises(ModelError, match="mean BlobProto: blob of shape") as caught:
        read_mean_cube(path)
    assert str(caught.value).startswith(f"{path}: ")


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
    assert list(prior) == [16, 32, 64, 128, 256, 512]
    for column, values in AUTHORS_PRIOR.items():
        np.testing.assert_allclose([row[column] for row in prior.values()], values, atol=1e-5)


def test_class_table_indices_must_be_fc8s(tmp_path):
    table = tmp_path / "classes.csv"
    table.write_text("index,name\n1,Jump\n3,Run\n")
    with pytest.raises(ModelError, match=r"class indices must be 1..2"):
        class_names(table)


# --- end to end: scnn detect on an imported pair against Caffe's definitions ---------------

CROP_TOP, CROP_LEFT = (128 - 112) // 2, (171 - 112) // 2  # video_data_layer's test crop
VIDEO_FRAMES = 24  # windows: 3 of 16 frames, starting at frames 1, 5 and 9


def _caffe_max_pool(x: torch.Tensor, depth: int, size: int, t_stride: int, stride: int):
    """pool3d_layer.cpp: output ceil((n − k) / s) + 1 per axis, each window cut at the end."""
    kernel, strides = (depth, size, size), (t_stride, stride, stride)
    outputs = [
        math.ceil((n - k) / s) + 1 for n, k, s in zip(x.shape[2:], kernel, strides, strict=True)
    ]
    needed = [(o - 1) * s + k for o, k, s in zip(outputs, kernel, strides, strict=True)]
    padding = []
    for n, m in zip(reversed(x.shape[2:]), reversed(needed), strict=True):
        padding += [0, m - n]
    x = F.pad(x, padding, value=-math.inf)
    best = None
    for dl in range(depth):
        for dh in range(size):
            for dw in range(size):
                part = x[
                    :,
                    :,
                    dl : dl + (outputs[0] - 1) * t_stride + 1 : t_stride,
                    dh : dh + (outputs[1] - 1) * stride + 1 : stride,
                    dw : dw + (outputs[2] - 1) * stride + 1 : stride,
                ]
                best = part if best is None else torch.maximum(best, part)
    return best


def _caffe_forward(data: torch.Tensor, arrays: dict) -> torch.Tensor:
    """Softmax of the authors' test network on Caffe's input blobs (N, 3, 16, 112, 112).
    (Stored channels-last only because a CPU convolves that layout faster.)"""
    x = data.contiguous(memory_format=torch.channels_last_3d)
    for name, kind, params in AUTHORS_LAYERS:
        if kind == "CONVOLUTION3D":
            weight, bias = (torch.from_numpy(a) for a in arrays[name])
            pad = (params["temporal_pad"], params["pad"], params["pad"])
            x = F.relu(F.conv3d(x, weight, bias.reshape(-1), padding=pad))
        elif kind == "POOLING3D":
            x = _caffe_max_pool(
                x,
                params["kernel_depth"],
                params["kernel_size"],
                params["temporal_stride"],
                params["stride"],
            )
        else:
            weight, bias = (torch.from_numpy(a) for a in arrays[name])
            x = x.reshape(len(x), -1) @ weight[0, 0, 0].T + bias.reshape(-1)
            if name != "fc8":
                x = F.relu(x)  # dropout is off at test
    return torch.softmax(x, dim=1)


def _caffe_input(frames_rgb: np.ndarray, start: int, length: int, mean_bgr: np.ndarray):
    """The data layer's blob of one window: its 16 frames s + k·L/16 (1-based) as
    (channel BGR, length, height, width), minus the mean cube, then the centre crop."""
    frames = frames_rgb[[start - 1 + k * length // 16 for k in range(16)]]
    volume = torch.from_numpy(frames[..., ::-1].transpose(3, 0, 1, 2).astype(np.float32))
    volume = volume - torch.from_numpy(mean_bgr)
    return volume[:, :, CROP_TOP : CROP_TOP + 112, CROP_LEFT : CROP_LEFT + 112]


def _test_frames() -> np.ndarray:
    """Noise over a colour that changes frame by frame, so the windows' clips differ enough
    for a random network's outputs to differ."""
    rng = np.random.default_rng(3)
    level = np.linspace(10, 245, VIDEO_FRAMES)[:, None, None, None] * np.array([1, 0.3, -0.5])
    noise = rng.integers(-40, 41, (VIDEO_FRAMES, 128, 171, 3))
    return np.clip(level % 256 + noise, 0, 255).astype(np.uint8)


# Where the authors' models.7z has the files, relative to the folder it is unpacked in.
AUTHORS_FILES = {
    "--proposal": Path("models/THUMOS14/proposal/snapshot/SCNN_uniform16_binary_iter_30000"),
    "--localization": Path(
        "models/THUMOS14/localization/snapshot/SCNN_uniform16_cls20_with_overlap_loss_iter_30000"
    ),
    "--mean": Path("models/train01_16_128_171_mean.binaryproto"),
}


@pytest.fixture(scope="module")
def authors_model(tmp_path_factory):
    """Full-size random-weight proposal and localization files and a mean file, where the
    authors' models.7z has them, imported as docs/caffe.md shows."""
    folder = tmp_path_factory.mktemp("authors")
    files = AUTHORS_FILES
    rng = np.random.default_rng(7)
    arrays = {"--proposal": c3d_arrays(rng, 2), "--localization": c3d_arrays(rng, 21)}
    for option, weights in arrays.items():
        (folder / files[option]).parent.mkdir(parents=True, exist_ok=True)
        write_caffemodel(folder / files[option], weights)
    mean_bgr = rng.uniform(60, 140, (3, 16, 128, 171)).astype(np.float32)
    write_mean(folder / files["--mean"], mean_bgr)
    command = ["import-caffe"]
    for option in IMPORT_FILES:
        command += [option, str(files[option])]
    with contextlib.chdir(folder):
        assert main([*command, "-o", "scnn-thumos14"]) == 0
    arrays = {"proposal": arrays["--proposal"], "localization": arrays["--localization"]}
    return folder / "scnn-thumos14", arrays, mean_bgr


def test_imported_model_directory(authors_model):
    out, arrays, mean_bgr = authors_model
    model = load_model(out)
    assert model.classes == class_names("thumos14")
    assert model.options == CAFFE_OPTIONS and model.convention.bgr and model.clip.bgr
    assert torch.equal(
        model.convention.mean_cube[3, 10, 20], torch.from_numpy(mean_bgr[::-1, 3, 10, 20].copy())
    )
    assert torch.equal(
        model.localization.fc8.bias, torch.from_numpy(arrays["localization"]["fc8"][1].reshape(-1))
    )


def test_an_import_killed_while_writing_leaves_the_model_it_replaces(authors_model, tmp_path):
    """SIGKILL once the new proposal weights are written, before the localization ones."""
    out, _, _ = authors_model
    existing = random_model(tmp_path / "model")  # another model: every file differs
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    pause = Pause(tmp_path / "pause", "scnn.modelfile:atomic_write_bytes", at_call=2)
    argv = [*pause.command, "--quiet", "--threads", "1", "import-caffe", "-o", str(existing)]
    for option, file in AUTHORS_FILES.items():
        argv += [option, str(file)]
    process = subprocess.Popen(argv, cwd=out.parent)  # where authors_model wrote the files
    pause.wait(process)
    process.kill()
    process.wait()
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before
    load_model(existing)


def test_detect_on_an_imported_pair_matches_caffes_definitions(authors_model, tmp_path):
    """Every window's localization class and probability (fp32), and the windows the proposal
    threshold keeps, as a forward written from Caffe's definitions gives them."""
    out, arrays, mean_bgr = authors_model
    frames = _test_frames()
    video = write_video(tmp_path / "video.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    assert np.array_equal(read_frames(video), frames)  # lossless, already 171×128
    grid = window_grid(VIDEO_FRAMES)
    data = torch.stack(
        [
            _caffe_input(frames, s, n, mean_bgr)
            for s, n in zip(grid.start_frame, grid.length_frames, strict=True)
        ]
    )
    with torch.no_grad():
        p_action = _caffe_forward(data, arrays["proposal"])[:, 1]
        localization = _caffe_forward(data, arrays["localization"])
    assert localization.max(dim=1).values.max() < 0.9  # not saturated: probabilities tell

    windows_csv = tmp_path / "windows.csv"
    command = ["detect", str(video), "--model", str(out), "-o", str(tmp_path / "det.json")]
    command += ["--precision", "fp32", "--save-windows", str(windows_csv)]
    assert main([*command, "--proposal-threshold", "0"]) == 0
    scored = read_windows_csv(windows_csv, class_names("thumos14"))
    assert scored.start_frame.tolist() == grid.start_frame.tolist()
    assert scored.window_frames.tolist() == grid.length_frames.tolist()
    score, label = localization.max(dim=1)
    assert scored.label_index.tolist() == label.tolist()
    np.testing.assert_allclose(scored.score, score.numpy(), atol=2e-5)

    lowest, second = p_action.sort().values[:2].tolist()
    assert second - lowest > 1e-3  # the threshold between them is not a matter of rounding
    threshold = (lowest + second) / 2  # drops one window
    assert main([*command, "--proposal-threshold", str(threshold)]) == 0
    kept = read_windows_csv(windows_csv, class_names("thumos14"))
    expected = grid.start_frame[(p_action >= threshold).numpy()]
    assert 0 < len(kept.start_frame) < len(grid.start_frame)
    assert sorted(kept.start_frame.tolist()) == sorted(expected.tolist())


# --- model directories and --init-from -------------------------------------------------------


def test_directories_from_before_the_pooling_option_keep_the_padded_rule(tmp_path):
    path = random_model(tmp_path / "model", options=replace(MODEL_OPTIONS, pooling="padded"))
    description = json.loads((path / "model.json").read_text())
    assert description["model"]["pooling"] == "padded"
    del description["model"]["pooling"]
    (path / "model.json").write_text(json.dumps(description))
    assert load_model(path).options.pooling == "padded"
    assert load_model(BUNDLED_MODEL).options.pooling == "padded"  # trained with that rule


def _init(model: C3D, init_from, *, binary: bool = True, **options) -> None:
    load_pretrained(
        model,
        init_from,
        binary=binary,
        options=ModelOptions(width=1 / 16, dropout=0.0, **options),
        clip=MODEL_CLIP,
        classes=(),  # no class of the model's: only fc8's background row carries over
    )


def test_init_from_tells_a_caffe_model_a_model_directory_and_a_pickle_apart(tmp_path):
    arrays = _small_arrays(487)
    caffe = write_caffemodel(tmp_path / "conv3d_deepnetA_sport1m_iter_1900000", arrays)  # no suffix
    model = C3D(21, **SMALL)
    _init(model, caffe)
    assert torch.equal(model.conv2.weight, torch.from_numpy(arrays["conv2a"][0]))

    directory = random_model(tmp_path / "model")
    source = load_model(directory)
    model = C3D(4, **SMALL, dropout=0.0)
    _init(model, directory, binary=False)
    assert torch.equal(model.fc7.weight, source.localization.fc7.weight)
    assert not torch.equal(model.fc8.weight, source.localization.fc8.weight)  # fc8 stays new
    _init(model, directory)
    assert torch.equal(model.conv1.weight, source.proposal.conv1.weight)
    with pytest.raises(ScnnError, match="pooling='padded'"):
        _init(model, directory, pooling="padded")

    pickle = tmp_path / "c3d.pickle"
    torch.save(source.proposal.state_dict(), pickle)
    model = C3D(21, **SMALL)
    _init(model, pickle)
    assert torch.equal(model.fc6.bias, source.proposal.fc6.bias)


def test_a_caffe_file_trains_on_bgr_frames_and_a_contradiction_is_one_error(tmp_path, capsys):
    """The Sports-1M C3D learnt on BGR frames with Caffe's pooling: as ``--init-from`` it sets
    both, and a config that says otherwise is refused, never trained on RGB by accident."""
    weights = tmp_path / "conv3d_deepnetA_sport1m_iter_1900000"
    weights.write_bytes(message_field(1, b"conv3d_deepnetA"))  # a NetParameter begins so
    config = training_config("thumos14", {"init_from": str(weights)})
    assert config.clip.bgr and config.model.pooling == "caffe"
    assert (config.clip.frame_size, config.clip.crop_size, config.clip.std_rgb) == (
        (171, 128),
        112,
        (1.0, 1.0, 1.0),
    )
    assert not training_config("thumos14").clip.bgr  # other weights: the config's own
    assert training_config("thumos14", {"init_from": str(weights), "clip.bgr": True}) == config
    command = ["train", "--config", "thumos14", "--annotations", "thumos14-val"]
    command += ["--videos", str(tmp_path), "--out", str(tmp_path / "run")]
    command += ["--init-from", str(weights), "--set", "clip.bgr=false"]
    assert main(command) == EXIT_ERROR
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "clip.bgr=false contradicts the weights" in error
    assert str(weights) in error and not (tmp_path / "run").exists()
    with pytest.raises(ScnnError, match=r"model.pooling=\"padded\" contradicts"):
        training_config("thumos14", {"init_from": str(weights), "model.pooling": "padded"})
    with pytest.raises(ScnnError, match=r"model.width=0.125, model.batch_norm=true, .*contradicts"):
        training_config("synthetic_cpu", {"init_from": str(weights)})
    rgb = replace(config, clip=replace(config.clip, bgr=False))  # the library call is checked too
    with pytest.raises(ScnnError, match="clip.bgr=false contradicts the weights"):
        training_job.train_model(rgb, "thumos14-val", tmp_path, tmp_path / "run", progress=False)
