"""The authors' C3D-v1.1 (Res3D-18) files: reader, checks, import, and an end-to-end check
against a reference forward written from Caffe's layer definitions (tests/caffe_v11_writer.py
writes the files, independently of the reader)."""

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from caffe_v11_writer import res3d_arrays, res3d_layers, write_res3d_caffemodel
from caffe_writer import c3d_arrays, write_caffemodel
from readme import readme_command
from videos import write_video

from scnn.caffe import class_names, load_caffe_weights
from scnn.caffe_res3d import RES3D_OPTIONS, load_res3d_weights
from scnn.cli import main
from scnn.errors import ModelError
from scnn.formats.windows_csv import read_windows_csv
from scnn.model import C3D
from scnn.modelfile import load_model
from scnn.res3d import Res3D
from scnn.video import read_frames
from scnn.windows import window_grid

SMALL_CHANNELS = (4, 8, 16, 32)  # Res3D at width 1/16: quick to fill, full-size input


def _small(num_outputs: int, seed: int = 0) -> dict:
    return res3d_arrays(np.random.default_rng(seed), num_outputs, SMALL_CHANNELS)


def _write_small(path, arrays, **changes):
    return write_res3d_caffemodel(path, arrays, channels=SMALL_CHANNELS, **changes)


# --- reading weights --------------------------------------------------------------------------


def test_every_tensor_lands_where_caffe_uses_it(tmp_path):
    arrays = _small(21)
    model = Res3D(21, width=1 / 16)
    load_res3d_weights(model, _write_small(tmp_path / "loc.caffemodel", arrays))
    assert torch.equal(model.conv1.weight, torch.from_numpy(arrays["conv1"][0]))
    block = model.res3a
    assert torch.equal(block.branch1.weight, torch.from_numpy(arrays["res3a_branch1"][0]))
    assert torch.equal(block.branch2b.weight, torch.from_numpy(arrays["res3a_branch2b"][0]))
    mean, variance, factor = arrays["bn3a_branch2a"]
    scale = np.float32(1) / factor[0]  # batch_norm_layer.cpp: blobs 0 and 1 times 1 / blob 2
    assert torch.equal(block.bn_branch2a.running_mean, torch.from_numpy(mean * scale))
    assert torch.equal(block.bn_branch2a.running_var, torch.from_numpy(variance * scale))
    assert block.bn_branch2a.scale_factor.item() == factor[0]
    gamma, beta = arrays["scale3a_branch2a"]
    assert torch.equal(block.bn_branch2a.weight, torch.from_numpy(gamma))
    assert torch.equal(block.bn_branch2a.bias, torch.from_numpy(beta))
    assert torch.equal(
        model.res5b.bn_branch2b.bias, torch.from_numpy(arrays["scale5b_branch2b"][1])
    )
    assert torch.equal(model.fc8.weight, torch.from_numpy(arrays["fc8-pro"][0]))
    assert torch.equal(model.fc8.bias, torch.from_numpy(arrays["fc8-pro"][1]))


def test_a_zero_scale_factor_gives_zero_statistics(tmp_path):
    arrays = _small(2)
    mean, variance, _ = arrays["bn_conv1"]
    arrays["bn_conv1"] = (mean, variance, np.zeros(1, np.float32))
    model = Res3D(2, width=1 / 16)
    load_res3d_weights(model, _write_small(tmp_path / "p.caffemodel", arrays))
    assert not model.bn_conv1.running_mean.any() and not model.bn_conv1.running_var.any()


def test_sports1m_model_loads_without_fc8(tmp_path):
    arrays = _small(487)
    path = _write_small(tmp_path / "sports1m.caffemodel", arrays, rename={"fc8-pro": "fc8"})
    model = Res3D(21, width=1 / 16)
    fc8 = model.fc8.weight.clone()
    load_res3d_weights(model, path, fc8=False)
    assert torch.equal(model.fc8.weight, fc8)
    assert torch.equal(model.res4b.branch2a.weight, torch.from_numpy(arrays["res4b_branch2a"][0]))
    with pytest.raises(ModelError, match="layer fc8-pro is missing"):
        load_res3d_weights(model, path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: _write_small(p, _small(21), rename={"bn4a_branch1": ""}),
            "bn4a_branch1 is missing",
        ),
        (
            lambda p: _write_small(p, _small(21), changes={"bn3b_branch2a": {"eps": 1e-3}}),
            "layer bn3b_branch2a has eps 0.0010",
        ),
        (
            lambda p: _write_small(p, _small(21), changes={"res2a_branch2b": {"temporal_pad": 0}}),
            "layer res2a_branch2b has temporal_pad 0, the network 1",
        ),
        (
            lambda p: _write_small(p, _small(21), changes={"pool5": {"pool": 0}}),
            "layer pool5 has pool 0, the network 1",
        ),
        (
            lambda p: _write_small(p, _small(21), changes={"res4b": {"operation": 0}}),
            "layer res4b has operation 0",
        ),
        (lambda p: _write_small(p, _small(2)), "layer fc8-pro has num_output 2, the network 21"),
        (
            lambda p: _write_small(
                p, _small(21), rename={"scale_conv1": "bn_conv1x", "bn_conv1x": ""}
            ),
            "layer scale_conv1 is missing",
        ),
        (
            lambda p: p.write_bytes(_write_small(p, _small(21)).read_bytes()[:-3000]),
            "layer fc8-pro: the file ends 3000 bytes before the layer does",
        ),
        (
            lambda p: write_caffemodel(p, c3d_arrays(np.random.default_rng(0), 21, (4,) * 8, 8, 1)),
            "C3D-v1.0's format",
        ),
        (lambda p: p.write_bytes(b"PK\x03\x04 a zip, e.g. a torch.save file"), "not a C3D-v1.1"),
    ],
    ids=[
        "missing-layer",
        "eps",
        "geometry",
        "max-pool",
        "product",
        "outputs",
        "renamed",
        "truncated",
        "c3d-v1.0",
        "foreign",
    ],
)
def test_a_file_that_is_not_such_a_model_is_one_line_naming_it(tmp_path, make, message):
    path = tmp_path / "bad.caffemodel"
    make(path)
    with pytest.raises(ModelError, match=message) as caught:
        load_res3d_weights(Res3D(21, width=1 / 16), path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_a_res3d_file_for_a_c3d_network_says_which_backbone(tmp_path):
    path = _write_small(tmp_path / "res3d.caffemodel", _small(21))
    with pytest.raises(ModelError, match="C3D-v1.1's format .* model.backbone res3d18"):
        load_caffe_weights(C3D(21, width=1 / 16, crop_size=32), path)


# --- a reference forward from Caffe's layer definitions ----------------------------------------

CROP_TOP, CROP_LEFT = (128 - 112) // 2, (171 - 112) // 2  # video_data_layer's test crop
VIDEO_FRAMES = 24  # windows: 3 of 16 frames, starting at frames 1, 5 and 9
EPS = 1e-5  # BatchNormParameter.eps's default; the prototxts do not set it


def _ave_pool(x: torch.Tensor, depth: int, size: int, t_stride: int, stride: int):
    """pool3d_layer.cpp, AVE with pad 0: output ceil((n − k) / s) + 1 per axis, each window
    cut at the input's end and divided by its own (cut) size."""
    length, height, width = x.shape[2:]
    sizes, kernels, strides = (
        (length, height, width),
        (depth, size, size),
        (t_stride, stride, stride),
    )
    outputs = [math.ceil((n - k) / s) + 1 for n, k, s in zip(sizes, kernels, strides, strict=True)]
    out = x.new_zeros(*x.shape[:2], *outputs)
    for pl in range(outputs[0]):
        for ph in range(outputs[1]):
            for pw in range(outputs[2]):
                ls, hs, ws = pl * t_stride, ph * stride, pw * stride
                window = x[:, :, ls : min(ls + depth, length), hs : min(hs + size, height),
                           ws : min(ws + size, width)]  # fmt: skip
                out[:, :, pl, ph, pw] = window.sum(dim=(2, 3, 4)) / window[0, 0].numel()
    return out


def caffe_forward(data, arrays, *, eps=EPS, use_scale_factor=True) -> torch.Tensor:
    """Softmax of the authors' network on Caffe's input blobs (N, 3, 16, 112, 112), layer by
    layer as the prototxt lists them, with named blobs and in-place layers as Caffe runs it."""
    num_outputs = arrays["fc8-pro"][0].shape[0]
    blobs = {"data": data.double()}
    for name, kind, params, bottoms in res3d_layers(num_outputs):
        x = blobs[bottoms[0]]
        if kind == "Convolution3D":
            weight = torch.from_numpy(arrays[name][0]).double()
            stride = (params["temporal_stride"], params["stride"], params["stride"])
            pad = (params["temporal_pad"], params["pad"], params["pad"])
            blobs[name] = F.conv3d(x, weight, stride=stride, padding=pad)
        elif kind == "BatchNorm":  # in place; global statistics (use_global_stats at test)
            mean, variance, factor = (torch.from_numpy(a).double() for a in arrays[name])
            scale = (0 if factor[0] == 0 else 1 / factor[0]) if use_scale_factor else 1
            shape = (1, -1, 1, 1, 1)
            x = (x - (mean * scale).view(shape)) / (variance * scale + eps).sqrt().view(shape)
            blobs[bottoms[0]] = x
        elif kind == "Scale":  # in place, bias_term
            gamma, beta = (torch.from_numpy(a).double().view(1, -1, 1, 1, 1) for a in arrays[name])
            blobs[bottoms[0]] = x * gamma + beta
        elif kind == "ReLU":  # in place
            blobs[bottoms[0]] = F.relu(x)
        elif kind == "Eltwise":  # SUM, coefficients 1
            blobs[name] = x + blobs[bottoms[1]]
        elif kind == "Pooling3D":
            blobs[name] = _ave_pool(
                x,
                params["kernel_depth"],
                params["kernel_size"],
                params["temporal_stride"],
                params["stride"],
            )
        elif kind == "InnerProduct":  # axis 1: all of (channel, length, height, width)
            weight, bias = (torch.from_numpy(a).double() for a in arrays[name])
            blobs[name] = x.reshape(len(x), -1) @ weight.T + bias
    return torch.softmax(blobs["fc8-pro"], dim=1)


def caffe_input(frames_rgb, start, length, *, mean=128.0, bgr=True) -> torch.Tensor:
    """The data layer's blob of one window: its 16 frames s + k·L/16 (1-based) as (channel,
    length, height, width), BGR as OpenCV reads them, minus mean_value on every channel,
    then the centre crop."""
    frames = frames_rgb[[start - 1 + k * length // 16 for k in range(16)]]
    if bgr:
        frames = frames[..., ::-1]
    volume = torch.from_numpy(frames.transpose(3, 0, 1, 2).astype(np.float32)) - mean
    return volume[:, :, CROP_TOP : CROP_TOP + 112, CROP_LEFT : CROP_LEFT + 112]


def _test_frames() -> np.ndarray:
    """Noise over colours that differ per channel and change frame by frame, so channel
    order matters and the windows' clips differ enough for their outputs to differ."""
    rng = np.random.default_rng(5)
    level = np.linspace(20, 235, VIDEO_FRAMES)[:, None, None, None] * np.array([1, 0.4, -0.6])
    noise = rng.integers(-50, 51, (VIDEO_FRAMES, 128, 171, 3))
    return np.clip(level % 256 + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def authors_res3d(tmp_path_factory):
    """Full-size random-weight proposal and localization files, where the README's path (a)
    has them, imported by the README's own command (no mean)."""
    folder = tmp_path_factory.mktemp("authors_res3d")
    command = readme_command("scnn", "import-caffe")
    rng = np.random.default_rng(11)
    arrays = {"proposal": res3d_arrays(rng, 2), "localization": res3d_arrays(rng, 21)}
    files = {}
    for stage, weights in arrays.items():
        path = folder / command[command.index(f"--{stage}") + 1]
        path.parent.mkdir(parents=True, exist_ok=True)
        files[stage] = write_res3d_caffemodel(path, weights)
    with contextlib.chdir(folder):
        assert main(command[1:]) == 0
    return folder / command[command.index("-o") + 1], arrays, files


def test_the_readmes_detect_command_runs_on_the_imported_model(authors_res3d):
    out, _, _ = authors_res3d
    command = readme_command("scnn", "detect", "my_video.mp4")
    write_video(out.parent / command[2], _test_frames(), codec="ffv1", pix_fmt="bgr0")
    with contextlib.chdir(out.parent):
        assert main(command[1:]) == 0
        results = json.loads(Path(command[command.index("-o") + 1]).read_text())["results"]
    labels = {d["label"] for found in results.values() for d in found}
    assert set(results) <= {"my_video"} and labels <= set(class_names("thumos14"))


def test_imported_res3d_model_directory(authors_res3d, tmp_path, capsys):
    out, arrays, files = authors_res3d
    model = load_model(out)
    assert model.options == RES3D_OPTIONS
    assert model.convention.describe() == {  # the prototxts' data layer
        "frame_size": [171, 128],
        "crop_size": 112,
        "clip_frames": 16,
        "channels": "BGR",
        "mean": 128.0,
        "std": [1.0, 1.0, 1.0],
    }
    assert isinstance(model.localization, Res3D)
    assert model.classes == class_names("thumos14")
    assert model.config["imported_from"]["release"] == "C3D-v1.1"
    gamma = torch.from_numpy(arrays["localization"]["scale5b_branch2a"][0])
    assert torch.equal(model.localization.res5b.bn_branch2a.weight, gamma)
    command = ["import-caffe", "--proposal", str(files["proposal"]), "--localization"]
    command += [str(files["localization"]), "-o", str(tmp_path / "m")]
    assert main([*command, "--mean", str(files["proposal"])]) != 0
    assert "subtract the value 128: leave out --mean" in capsys.readouterr().err


@pytest.fixture(scope="module")
def detected(authors_res3d, tmp_path_factory):
    """scnn detect --save-windows (fp32, every window) on a losslessly encoded video, and
    the Caffe input blobs of its windows."""
    out, _, _ = authors_res3d
    folder = tmp_path_factory.mktemp("detect_res3d")
    frames = _test_frames()
    video = write_video(folder / "video.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    assert np.array_equal(read_frames(video), frames)  # lossless, already 171×128
    windows_csv = folder / "windows.csv"
    command = ["detect", str(video), "--model", str(out), "-o", str(folder / "det.json")]
    command += ["--precision", "fp32", "--save-windows", str(windows_csv)]
    assert main([*command, "--proposal-threshold", "0"]) == 0
    scored = read_windows_csv(windows_csv, class_names("thumos14"))
    grid = window_grid(VIDEO_FRAMES)
    assert scored.start_frame.tolist() == grid.start_frame.tolist()
    return frames, grid, scored


def _reference(frames, grid, arrays, **variant) -> torch.Tensor:
    input_options = {k: variant.pop(k) for k in ("mean", "bgr") if k in variant}
    data = torch.stack(
        [
            caffe_input(frames, s, n, **input_options)
            for s, n in zip(grid.start_frame, grid.length_frames, strict=True)
        ]
    )
    with torch.no_grad():
        return caffe_forward(data, arrays, **variant)


def test_detect_on_an_imported_res3d_pair_matches_caffes_definitions(authors_res3d, detected):
    """Every window's localization class and probability (fp32) as the reference gives them."""
    _, arrays, _ = authors_res3d
    frames, grid, scored = detected
    localization = _reference(frames, grid, arrays["localization"])
    score, label = localization.max(dim=1)
    assert score.max() < 0.9  # not saturated: the probabilities tell
    assert score.max() - score.min() > 1e-3  # the windows' clips give different outputs
    assert scored.label_index.tolist() == label.tolist()
    np.testing.assert_allclose(scored.score, score.numpy(), atol=2e-5)
    p_action = _reference(frames, grid, arrays["proposal"])[:, 1]
    assert p_action.min() > 0.05 and p_action.max() < 0.95


@pytest.mark.parametrize(
    "variant",
    [{"eps": 1e-3}, {"use_scale_factor": False}, {"bgr": False}, {"mean": 0.0}],
    ids=["bn-eps", "scale-factor-ignored", "rgb-for-bgr", "mean-missing"],
)
def test_the_reference_tells_each_mistake_apart(authors_res3d, detected, variant):
    """Had scnn made one of these mistakes, the comparison above would fail: the reference
    with the mistake is far from scnn's windows (50 × the tolerance)."""
    _, arrays, _ = authors_res3d
    frames, grid, scored = detected
    wrong = _reference(frames, grid, arrays["localization"], **variant)
    rows = torch.arange(len(wrong))
    labels = torch.from_numpy(scored.label_index.astype(np.int64))
    assert np.abs(wrong[rows, labels].numpy() - scored.score).max() > 1e-3
