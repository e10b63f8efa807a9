"""Res3D-18: its geometry against the authors' prototxt, its cost, Caffe's batch norm in
training, and features, training from the Sports-1M Res3D and fine-tuning on it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from caffe_v11_writer import res3d_arrays, res3d_layers, write_res3d_caffemodel
from tiny import SYNTH, TINY, toml_text
from videos import numbered_frames, write_video

from scnn import cli, stages, train
from scnn.clips import ClipConfig, assemble_clips
from scnn.config import config_from_dict, load_config
from scnn.formats.windows_csv import read_windows_csv
from scnn.model import ModelOptions, build_network, clip_gflops, fold_batch_norm
from scnn.modelfile import LoadedModel, load_model, load_state, save_model
from scnn.precision import exact_fp32
from scnn.res3d import BLOCK_NAMES, RES3D_FEATURE_LAYERS, CaffeBatchNorm3d, Res3D
from scnn.stages import CLASSIFICATION
from scnn.synth import generate
from scnn.train import WEIGHTS
from scnn.video import read_frames
from scnn.windows import WindowConfig, window_grid

SMALL_CHANNELS = (4, 8, 16, 32)  # width 1/16


def _conv_of(model: Res3D, caffe_name: str) -> torch.nn.Conv3d:
    if caffe_name == "conv1":
        return model.conv1
    block, branch = caffe_name.split("_")
    return getattr(getattr(model, block), branch)


def test_the_networks_geometry_is_the_authors_prototxt():
    model = Res3D(21)
    convs = [layer for layer in res3d_layers(21) if layer[1] == "Convolution3D"]
    assert len(convs) == 1 + 8 * 2 + 4  # conv1, two per block, four projections
    for name, _, params, _ in convs:
        conv = _conv_of(model, name)
        assert conv.out_channels == params["num_output"], name
        assert conv.kernel_size == (params["kernel_depth"], *[params["kernel_size"]] * 2), name
        assert conv.padding == (params["temporal_pad"], *[params["pad"]] * 2), name
        assert conv.stride == (params["temporal_stride"], *[params["stride"]] * 2), name
        assert conv.bias is None, name
    assert model.res2b.branch1 is None and model.res2a.branch1 is not None  # res2a projects
    assert model.pool5_kernel == (1, 7, 7) and model.fc8.in_features == 512 * 2
    assert sum(p.numel() for p in model.parameters()) == 33_192_021


def test_clip_cost_counted_from_the_network():
    with torch.device("meta"):
        model = Res3D(21)
    # conv1: 64·3·3·49 weights × 16·56·56 positions; res2 (with res2a's 1×1 projection) at
    # 16·56·56, res3 at 8·28·28, res4 at 4·14·14, res5 at 2·7·7; fc8 1024·21.
    positions = (16 * 56 * 56, 8 * 28 * 28, 4 * 14 * 14, 2 * 7 * 7)
    convs = 64 * 3 * 3 * 49 * positions[0]
    for stage, (c_in, c_out) in enumerate(((64, 64), (64, 128), (128, 256), (256, 512))):
        convs += (c_out * c_in * 27 + 3 * c_out * c_out * 27 + c_out * c_in) * positions[stage]
    assert convs == 40_901_869_568  # 40.9 G multiply-adds, C3D's: 38.5 G
    assert clip_gflops(model) == pytest.approx(2 * (convs + 1024 * 21) / 1e9)


def test_activations_and_folded_batch_norm():
    torch.manual_seed(0)
    model = Res3D(3, width=1 / 16, crop_size=48).eval()
    for module in model.modules():
        if isinstance(module, CaffeBatchNorm3d):
            torch.nn.init.uniform_(module.running_mean, -0.5, 0.5)
            torch.nn.init.uniform_(module.running_var, 0.2, 2)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    clips = torch.randn(2, 3, 16, 48, 48)
    seen = {}
    model.res5b.register_forward_hook(lambda m, i, out: seen.update(res5b=out))
    with torch.no_grad():
        logits = model(clips)
        assert torch.equal(model.activations(clips, "res5b"), torch.flatten(seen["res5b"], 1))
        pooled = model.activations(clips, "pool5")
        assert torch.allclose(pooled, seen["res5b"].mean(dim=(3, 4)).flatten(1), atol=1e-6)
        assert torch.allclose(model.activations(clips, "fc8"), logits)
        folded = fold_batch_norm(copy.deepcopy(model))
        assert not any(isinstance(m, CaffeBatchNorm3d) for m in folded.modules())
        assert torch.allclose(folded(clips), logits, atol=1e-5)
    assert RES3D_FEATURE_LAYERS[-2:] == ("pool5", "fc8")
    with pytest.raises(ValueError, match="fc6"):
        model.activations(clips, "fc6")


def test_batch_norm_keeps_caffes_running_average():
    """batch_norm_layer.cpp in training: the batch's statistics normalise; the stored sums
    decay by 0.999 and add the batch's mean and unbiased variance, the scale factor by 0.999
    and adds 1; the statistics are the sums over the factor."""
    torch.manual_seed(1)
    norm = CaffeBatchNorm3d(3).train()
    batches = [torch.randn(4, 3, 2, 3, 3) * 2 + 1 for _ in range(3)]
    sums, variances, factor = np.zeros(3), np.zeros(3), 0.0
    for batch in batches:
        out = norm(batch)
        values = batch.double().transpose(0, 1).reshape(3, -1).numpy()
        sums = 0.999 * sums + values.mean(axis=1)
        variances = 0.999 * variances + values.var(axis=1, ddof=1)
        factor = 0.999 * factor + 1
        expected = (values - values.mean(axis=1, keepdims=True)) / np.sqrt(
            values.var(axis=1, keepdims=True) + 1e-5
        )
        got = out.detach().double().transpose(0, 1).reshape(3, -1).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert norm.scale_factor.item() == pytest.approx(factor)
    np.testing.assert_allclose(norm.running_mean.numpy(), sums / factor, rtol=1e-5)
    np.testing.assert_allclose(norm.running_var.numpy(), variances / factor, rtol=1e-5)


def test_exact_fp32_turns_tf32_off_on_cuda_and_restores_it():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with exact_fp32(torch.device("cuda"), torch.float32):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    with exact_fp32(torch.device("cuda"), torch.bfloat16):
        assert torch.backends.cudnn.allow_tf32 == before[0]


# --- a Res3D model directory: detect, features, fine-tuning ------------------------------------

CLIP = ClipConfig(frame_size=(40, 32), crop_size=32, mean_rgb=(128.0,) * 3, bgr=True)
OPTIONS = ModelOptions(width=1 / 16, dropout=0.0, backbone="res3d18")


@pytest.fixture(scope="module")
def res3d_dir(tmp_path_factory):
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("res3d") / "model"
    networks = [build_network(n, OPTIONS, CLIP).eval() for n in (2, 3)]
    windows = WindowConfig((16, 32))
    model = LoadedModel(
        proposal=networks[0],
        localization=networks[1],
        classes=("Jump", "Run"),
        prior={16: np.array([0.5, 0.5]), 32: np.array([0.5, 0.5])},
        windows=windows,
        convention=CLIP.convention(),
        clip=CLIP,
        options=OPTIONS,
    )
    save_model(path, model)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", numbered_frames(48))


def test_a_res3d_model_directory_loads_as_saved(res3d_dir):
    model = load_model(res3d_dir)
    assert isinstance(model.localization, Res3D) and model.options == OPTIONS
    assert model.localization.res3a.bn_branch1.scale_factor.shape == ()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_detect_runs_a_res3d_model(res3d_dir, video, tmp_path, precision):
    windows_csv = tmp_path / "windows.csv"
    argv = ["--quiet", "detect", str(video), "--model", str(res3d_dir), "-o"]
    argv += [str(tmp_path / "d.json"), "--save-windows", str(windows_csv)]
    argv += ["--proposal-threshold", "0", "--precision", precision]
    assert cli.main(argv) == cli.EXIT_OK
    scored = read_windows_csv(windows_csv, ("Jump", "Run"))
    grid = window_grid(48, WindowConfig((16, 32)))
    assert scored.window_frames.tolist() == grid.length_frames.tolist()
    assert np.all((scored.score > 0) & (scored.score <= 1))


def test_features_of_a_res3d_model_default_to_pool5(res3d_dir, video, tmp_path):
    out = tmp_path / "features"
    argv = ["--quiet", "features", str(video), "--model", str(res3d_dir), "-o", str(out)]
    assert cli.main([*argv, "--precision", "fp32"]) == cli.EXIT_OK
    rows = np.load(out / "clip.npy")
    model = load_model(res3d_dir)
    frames = read_frames(video, model.fps, model.clip.frame_size)
    starts = 1 + 8 * np.arange(len(rows))
    clips = assemble_clips(frames, starts, np.full(len(rows), 16), model.convention, train=False)
    with torch.no_grad():
        expected = model.localization.activations(clips, "pool5").numpy()
    assert rows.shape == (5, 32 * 2)  # (48 − 16) / 8 + 1 snippets; 32 channels × 2 times
    np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-5)
    assert cli.main([*argv, "--layer", "res5b"]) == cli.EXIT_OK
    assert np.load(out / "clip.npy").shape == (5, 32 * 2 * 2 * 2)


def test_a_c3d_layer_of_a_res3d_model_is_one_line(res3d_dir, video, tmp_path, capsys):
    argv = ["features", str(video), "--model", str(res3d_dir), "--layer", "fc6"]
    assert cli.main([*argv, "-o", str(tmp_path / "f")]) != cli.EXIT_OK
    err = capsys.readouterr().err.strip()
    assert "layer 'fc6' is not one of res3b, res4b, res5b, pool5, fc8" in err
    assert "\n" not in err


def test_the_authors_res3d_config():
    config = load_config("thumos14_res3d")
    assert config.model.backbone == "res3d18" and config.clip.mean_rgb == (128, 128, 128)
    assert config.clip.bgr and (config.lr, config.fc8_lr_mult, config.batch_size) == (1e-3, 10, 8)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SYNTH, quiet=True)
    return root


# A 1/16-width Res3D on the tiny problem's 40×32 frames, the authors' input otherwise; lr 0, so
# the weights stay where they started and only the batch norms' running averages move.
RES3D_TINY = {
    **TINY,
    "model": {"backbone": "res3d18", "width": 0.0625, "dropout": 0.0},
    "clip": {"frame_size": [40, 32], "crop_size": 32, "mean_rgb": [128.0] * 3, "bgr": True},
    "optimizer": "sgd",
    "lr": 0.0,
    "batch_size": 4,
    "steps": 1,
}


def test_a_stage_trains_from_the_sports1m_res3d(synth_root, tmp_path):
    """The Sports-1M Res3D .caffemodel as init_from (its 487-way fc8 left out): one training
    step on batch statistics continues each batch norm's Caffe average."""
    arrays = res3d_arrays(np.random.default_rng(3), 487, SMALL_CHANNELS)
    sports1m = write_res3d_caffemodel(
        tmp_path / "c3d_resnet18_sports1m_r2_iter_2800000.caffemodel",
        arrays,
        channels=SMALL_CHANNELS,
        rename={"fc8-pro": "fc8", "pool5": ""},  # its pool5 is for 112×112 crops
    )
    config = config_from_dict({**RES3D_TINY, "init_from": str(sports1m)})
    data = stages.prepare_data(
        config, synth_root / "annotations.json", synth_root / "videos", tmp_path / "cache",
        progress=False,
    )  # fmt: skip
    train.train(CLASSIFICATION, config, data, tmp_path / "run", progress=False)
    network = build_network(3, config.model, config.clip)
    load_state(network, tmp_path / "run" / "classification" / WEIGHTS)
    assert torch.equal(network.res4a.branch2b.weight, torch.from_numpy(arrays["res4a_branch2b"][0]))
    gamma = torch.from_numpy(arrays["scale3b_branch2a"][0])
    assert torch.equal(network.res3b.bn_branch2a.weight, gamma)
    for name in ("bn_conv1", "bn2b_branch2b", "bn5a_branch1"):
        stored = arrays[name][2][0]
        norm = network.bn_conv1 if name == "bn_conv1" else None
        if norm is None:
            block, branch = f"res{name[2:4]}", name.split("_")[1]
            norm = getattr(getattr(network, block), f"bn_{branch}")
        assert norm.scale_factor.item() == pytest.approx(stored * 0.999 + 1, rel=1e-6)


def test_scnn_train_takes_res3d_and_its_input_from_the_caffe_file(synth_root, tmp_path, capsys):
    """A C3D-v1.1 file dictates Res3D-18 at width 1 and BGR frames minus 128: a config that
    says otherwise is one line naming the settings."""
    sports1m = write_res3d_caffemodel(
        tmp_path / "sports1m.caffemodel", res3d_arrays(np.random.default_rng(4), 487)
    )
    config = tmp_path / "res3d.toml"
    config.write_text(toml_text(RES3D_TINY))
    argv = ["--quiet", "train", str(synth_root), "--config", str(config)]
    argv += ["--out", str(tmp_path / "run"), "--init-from", str(sports1m)]
    assert cli.main(argv) != cli.EXIT_OK
    err = capsys.readouterr().err.strip()
    assert "model.width=0.0625" in err and "model.width=1.0" in err and "\n" not in err
    assert "clip.frame_size=[40, 32]" in err and str(sports1m) in err


def test_fine_tuning_a_res3d_model_continues_its_batch_norms(synth_root, res3d_dir, tmp_path):
    """scnn train --init-from a Res3D model directory: the networks carry over, fc8's rows by
    class, and each batch norm's average continues for the localization stage's step."""
    values = {**RES3D_TINY, "clip": {**RES3D_TINY["clip"], "mirror": True}}
    config = tmp_path / "res3d.toml"
    config.write_text(toml_text(values))
    out = tmp_path / "tuned"
    argv = ["--quiet", "train", str(synth_root), "--config", str(config), "--out", str(out)]
    assert cli.main([*argv, "--init-from", str(res3d_dir)]) == cli.EXIT_OK
    source = load_model(res3d_dir)
    tuned = load_model(out / "model")
    assert torch.equal(tuned.localization.conv1.weight, source.localization.conv1.weight)
    assert torch.equal(tuned.proposal.fc8.weight, source.proposal.fc8.weight)  # copied whole
    for name in BLOCK_NAMES:
        before = getattr(source.localization, name).bn_branch2a.scale_factor.item()
        after = getattr(tuned.localization, name).bn_branch2a.scale_factor.item()
        assert after == pytest.approx(before * 0.999 + 1, rel=1e-6)
