"""`scnn features`: a row is the network's activations on its snippet's clip, fc8's softmax is
detection's localization score for the same window, and T and the sampling are right on a
video whose frame numbers are drawn into its pictures; the .npy files are complete or absent,
and a re-run skips the videos done with the same settings."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from caffe_writer import c3d_arrays, write_caffemodel, write_mean
from launch import torchrun
from tiny import MODEL_OPTIONS, random_model, small_model
from videos import numbered_frames, read_numbers, write_video

from scnn import cli, features
from scnn.caffe import CAFFE_OPTIONS, SPORTS1M_FC8, caffe_convention, load_caffe_weights
from scnn.clips import C3D_MEAN_RGB, ClipConfig, assemble_clips
from scnn.errors import ModelError, ScnnError
from scnn.features import Extractor, FeatureConfig, model_source, npy_header
from scnn.formats.windows_csv import read_windows_csv
from scnn.model import C3D, FEATURE_LAYERS, build_network, load_sports1m_weights
from scnn.modelfile import load_model
from scnn.video import read_frames

# Frames the whole crop: the bar code that numbers each picture survives into the clips.
SQUARE_CLIP = ClipConfig(frame_size=(48, 48), crop_size=48, std_rgb=(58.0, 57.0, 57.0))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """80 frames at 25 fps, 64×48 like the test model's frames."""
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", numbered_frames(80))


def extract(args, tmp_path, name="out"):
    """``scnn features ARGS -o tmp_path/name``: the exit code and the output folder."""
    out = tmp_path / name
    return cli.main(["--quiet", "features", *map(str, args), "-o", str(out)]), out


def direct_activations(network, clips, layer):
    """``layer``'s output read by forward hooks during the full forward pass, after the ReLU
    that follows it (fc8: the logits), flattened: C3D.activations computed another way."""
    seen = {}
    module = {"conv5b": "norm5b"}.get(layer, layer)
    hook = getattr(network, module).register_forward_hook(lambda m, i, out: seen.update(out=out))
    with torch.no_grad():
        logits = network(clips)
    hook.remove()
    if layer == "fc8":
        return logits
    return torch.flatten(torch.relu(seen["out"]), 1)


@pytest.mark.parametrize("layer", FEATURE_LAYERS)
def test_activations_are_the_forward_pass_up_to_the_layer(layer):
    torch.manual_seed(0)
    network = build_network(3, MODEL_OPTIONS, SQUARE_CLIP).eval()
    clips = torch.randn(2, 3, 16, 48, 48)
    with torch.no_grad():
        got = network.activations(clips, layer)
        assert torch.equal(network.activations(clips, "fc8"), network(clips))
    assert torch.allclose(got, direct_activations(network, clips, layer), atol=1e-6)


def test_activations_refuse_an_unknown_layer():
    network = build_network(3, MODEL_OPTIONS, SQUARE_CLIP)
    with pytest.raises(ValueError, match="fc9"):
        network.activations(torch.zeros(1, 3, 16, 48, 48), "fc9")


@pytest.mark.parametrize("layer", ["pool5", "fc7"])
def test_a_row_is_the_networks_activations_on_its_clip(model_dir, video, tmp_path, layer):
    code, out = extract(
        [video, "--model", model_dir, "--layer", layer, "--precision", "fp32"], tmp_path
    )
    assert code == cli.EXIT_OK
    rows = np.load(out / "clip.npy")
    model = load_model(model_dir)
    frames = read_frames(video, model.fps, model.clip.frame_size)
    starts = 1 + 8 * np.arange(len(rows))  # stride 8 frames by default
    clips = assemble_clips(frames, starts, np.full(len(rows), 16), model.convention, train=False)
    expected = direct_activations(model.localization, clips, layer).numpy()
    assert rows.shape == expected.shape == (9, expected.shape[1])  # (80 - 16) / 8 + 1
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-5)


def test_fc8_softmax_is_detections_localization_score(model_dir, video, tmp_path):
    windows_csv = tmp_path / "windows.csv"
    argv = [
        "--quiet", "detect", str(video), "--model", str(model_dir), "-o", str(tmp_path / "d.json"),
        "--save-windows", str(windows_csv), "--proposal-threshold", "0", "--precision", "fp32",
    ]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_OK
    common = ["--model", model_dir, "--precision", "fp32", "--network", "localization"]
    code, out = extract(
        [video, *common, "--layer", "fc8", "--snippet", "16", "--stride", "4"], tmp_path
    )
    assert code == cli.EXIT_OK
    probabilities = torch.softmax(torch.from_numpy(np.load(out / "clip.npy")), dim=1).numpy()
    scored = read_windows_csv(windows_csv, load_model(model_dir).classes)
    short = scored.window_frames == 16
    assert short.sum() == len(probabilities) == (80 - 16) // 4 + 1
    rows = (scored.start_frame[short] - 1) // 4
    assert np.array_equal(probabilities[rows].argmax(axis=1), scored.label_index[short])
    np.testing.assert_allclose(probabilities[rows].max(axis=1), scored.score[short], atol=1e-6)


def test_rows_and_sampling_on_a_numbered_video(tmp_path, monkeypatch):
    """A 50 fps video decoded at 25 fps: frame i (0-based) shows picture 2i. Snippets of 32
    frames every 8: row k's clip shows frames 8k, 8k + 2, …, 8k + 30."""
    model = random_model(tmp_path / "model", clip=SQUARE_CLIP)
    video = write_video(tmp_path / "numbered.mp4", numbered_frames(200, 48, 48), rate=50)
    clips_seen = []

    original = features.normalize_clips

    def normalize(clips, *args, **kwargs):
        clips_seen.extend(clips.numpy())
        return original(clips, *args, **kwargs)

    monkeypatch.setattr(features, "normalize_clips", normalize)
    code, out = extract([video, "--model", model, "--snippet", "32", "--stride", "8"], tmp_path)
    assert code == cli.EXIT_OK
    rows = np.load(out / "numbered.npy")
    assert len(rows) == len(clips_seen) == (100 - 32) // 8 + 1
    shown = np.array([read_numbers(clip) for clip in clips_seen])
    expected = 2 * (8 * np.arange(len(rows))[:, None] + 2 * np.arange(16)[None, :])
    assert np.array_equal(shown, expected)
    index = json.loads((out / "features.json").read_text())
    assert index["videos"]["numbered"] == {
        "file": "numbered.npy",
        "features": 9,
        "frames": 100,
        "duration_s": 4.0,
    }
    assert (index["fps"], index["snippet_frames"], index["stride_frames"]) == (25.0, 32, 8)
    assert (index["frame_size"], index["crop_size"]) == ([48, 48], 48)
    assert (index["layer"], index["feature_dim"], index["network"]) == ("fc6", 256, "localization")


def test_bad_videos_fail_alone_and_a_rerun_skips_the_videos_done(model_dir, video, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(video.read_bytes())
    write_video(folder / "short.mp4", numbered_frames(10))
    cut = video.read_bytes()
    (folder / "cut.mp4").write_bytes(cut[: len(cut) // 2])
    code, out = extract([folder, "--model", model_dir, "--dtype", "float16"], tmp_path)
    assert code == cli.EXIT_SOME_FAILED
    assert sorted(p.name for p in out.iterdir()) == ["features.json", "features.parts", "good.npy"]
    index = json.loads((out / "features.json").read_text())
    assert list(index["videos"]) == ["good"]
    assert sorted(index["failed"]) == [str(folder / "cut.mp4"), str(folder / "short.mp4")]
    assert "shorter than one snippet (16 frames)" in index["failed"][str(folder / "short.mp4")]
    assert np.load(out / "good.npy").dtype == np.float16

    written = (out / "good.npy").stat().st_mtime_ns
    assert extract([folder, "--model", model_dir, "--dtype", "float16"], tmp_path)[0] == 3
    assert (out / "good.npy").stat().st_mtime_ns == written  # skipped
    assert extract([folder, "--model", model_dir, "--layer", "fc7"], tmp_path)[0] == 3
    assert np.load(out / "good.npy").dtype == np.float32  # other settings: extracted again


def test_a_failed_video_leaves_no_npy_behind(model_dir, video, tmp_path):
    extractor = Extractor(model_source(model_dir), FeatureConfig(batch_size=2))
    cut = video.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(cut[: len(cut) // 2])
    with pytest.raises(ScnnError):
        extractor(tmp_path / "cut.mp4", tmp_path / "out" / "cut.npy")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_npy_header_is_what_numpy_reads(tmp_path, dtype):
    rows = np.arange(9 * 512, dtype=dtype).reshape(9, 512)
    (tmp_path / "a.npy").write_bytes(npy_header(rows.shape, np.dtype(dtype)) + rows.tobytes())
    assert np.array_equal(np.load(tmp_path / "a.npy"), rows)
    assert len(npy_header((2**40, 50176), np.dtype(dtype))) == features.NPY_HEADER_BYTES


def test_settings_are_checked_before_any_work(model_dir, video, tmp_path):
    with pytest.raises(ScnnError, match="stride 0"):
        FeatureConfig(stride_frames=0)
    with pytest.raises(ModelError, match="--model"):
        features.sports1m_source(model_dir)
    code, _ = extract([video, "--init-from", model_dir, "--network", "proposal"], tmp_path)
    assert code == cli.EXIT_ERROR


def test_sports1m_weights_load_with_fc8_when_asked(tmp_path):
    source = build_network(5, MODEL_OPTIONS, SQUARE_CLIP)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    target = build_network(5, MODEL_OPTIONS, SQUARE_CLIP)
    load_sports1m_weights(target, tmp_path / "weights.pt")
    assert not torch.equal(target.fc8.weight, source.fc8.weight)
    load_sports1m_weights(target, tmp_path / "weights.pt", fc8=True)
    assert torch.equal(target.fc8.weight, source.fc8.weight)


def test_two_videos_of_one_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small = small_model(tmp_path / "model")
    for folder in ("a", "b"):
        write_video(tmp_path / folder / "same.mp4", numbered_frames(20))
    code, out = extract([tmp_path / "a", tmp_path / "b", "--model", small], tmp_path)
    assert code == cli.EXIT_ERROR
    assert not out.exists()


def test_the_sports1m_caffe_model_loads_with_its_fc8(tmp_path):
    channels, fc_units = (4, 8, 16, 16, 32, 32, 32, 32), 256  # a 1/16-width C3D
    arrays = c3d_arrays(np.random.default_rng(0), 487, channels, fc_units, pool5_positions=1)
    path = write_caffemodel(tmp_path / "sports1m", arrays, rename={"fc8": SPORTS1M_FC8})
    model = C3D(487, width=1 / 16, crop_size=32)
    load_caffe_weights(model, path, fc8_layer=SPORTS1M_FC8)
    assert torch.equal(model.fc8.bias, torch.from_numpy(arrays["fc8"][1].reshape(-1)))


def test_two_processes_under_torchrun_write_what_one_does(model_dir, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name, count in {"a": 90, "b": 40, "c": 60}.items():
        write_video(folder / f"{name}.mp4", numbered_frames(count))
    (folder / "broken.mp4").write_text("not a video")
    assert extract([folder, "--model", model_dir], tmp_path, "one")[0] == cli.EXIT_SOME_FAILED
    two = tmp_path / "two"
    done = torchrun("features", str(folder), "--model", str(model_dir), "-o", str(two))
    # Rank 0 exits with EXIT_SOME_FAILED (3): torchrun reports it and exits with 1.
    assert done.returncode == 1 and re.search(r"exitcode\s*:\s*3\b", done.stderr), done.stderr
    for name in "abc":
        assert (two / f"{name}.npy").read_bytes() == (tmp_path / "one" / f"{name}.npy").read_bytes()
    assert (two / "features.json").read_text() == (tmp_path / "one" / "features.json").read_text()


def test_the_sports1m_mean_file_shifts_the_input_by_its_cube(video, tmp_path, monkeypatch):
    """``--mean``: each clip's input is the per-channel one shifted by (per-channel mean − the
    cube's centre crop), BGR; features.json names the file, and a re-run into the same folder
    extracts again rather than skipping. A 1/16-width network keeps the test small."""
    small = replace(CAFFE_OPTIONS, width=1 / 16)
    monkeypatch.setattr(
        features,
        "network_for_weights",
        lambda outputs, _, clip: build_network(outputs, small, clip),
    )
    torch.save(build_network(487, small, caffe_convention()).state_dict(), tmp_path / "c3d.pt")
    cube_bgr = np.random.default_rng(0).uniform(0, 255, (3, 16, 128, 171)).astype(np.float32)
    mean = write_mean(tmp_path / "mean.binaryproto", cube_bgr)
    inputs = []
    original = features.normalize_clips

    def normalize(*args, **kwargs):
        normalised = original(*args, **kwargs)
        inputs.append(normalised.clone())  # the next batch is written into the same array
        return normalised

    monkeypatch.setattr(features, "normalize_clips", normalize)
    common = [video, "--init-from", tmp_path / "c3d.pt", "--precision", "fp32"]
    assert extract(common, tmp_path)[0] == cli.EXIT_OK
    plain = torch.cat(inputs)
    inputs.clear()
    code, out = extract([*common, "--mean", mean], tmp_path)
    assert code == cli.EXIT_OK
    shifted = torch.cat(inputs)
    cube = torch.from_numpy(cube_bgr[::-1].copy()).permute(1, 2, 3, 0)
    centre = caffe_convention(cube).centre_mean.view(16, 112, 112, 3)
    shift = (torch.tensor(C3D_MEAN_RGB) - centre).flip(3)
    assert shifted.shape == plain.shape == (9, 3, 16, 112, 112)
    expected = shift.permute(3, 0, 1, 2).expand_as(plain)  # up to float32 rounding
    torch.testing.assert_close(shifted - plain, expected, rtol=0, atol=1e-4)
    assert json.loads((out / "features.json").read_text())["mean"] == str(mean)
    code, _ = extract([video, "--model", tmp_path / "model", "--mean", mean], tmp_path)
    assert code == cli.EXIT_ERROR


def test_a_video_of_the_same_name_from_another_folder_is_extracted_anew(model_dir, tmp_path):
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
    first = write_video(tmp_path / "d1" / "clip.mp4", numbered_frames(80))
    second = write_video(tmp_path / "d2" / "clip.mp4", numbered_frames(120))
    assert extract([first, "--model", model_dir], tmp_path)[0] == cli.EXIT_OK
    code, out = extract([second, "--model", model_dir], tmp_path)
    assert code == cli.EXIT_OK
    index = json.loads((out / "features.json").read_text())
    assert index["videos"]["clip"]["frames"] == 120
    assert len(np.load(out / "clip.npy")) == (120 - 16) // 8 + 1


def test_features_of_other_settings_left_in_the_folder_are_refused(model_dir, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("one", "two"):
        write_video(tmp_path / "in" / f"{name}.mp4", numbered_frames(40))
    assert extract([tmp_path / "in", "--model", model_dir], tmp_path)[0] == cli.EXIT_OK
    fc6 = (tmp_path / "out" / "two.npy").read_bytes()
    capsys.readouterr()
    code, out = extract([tmp_path / "in" / "one.mp4", "--model", model_dir, "--layer", "fc7"],
                        tmp_path)  # fmt: skip
    assert code == cli.EXIT_ERROR
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "two.npy" in error and "other settings" in error
    assert (out / "two.npy").read_bytes() == fc6


def test_failed_videos_are_told_once_on_stderr_and_nothing_is_left(model_dir, tmp_path, capsys):
    (tmp_path / "broken.mp4").write_text("not a video")
    code, out = extract([tmp_path / "broken.mp4", "--model", model_dir], tmp_path)
    assert code == cli.EXIT_ERROR
    shown = capsys.readouterr()
    assert shown.out == ""
    assert shown.err.count("broken.mp4: not a readable video") == 1
    assert "nothing written" in shown.err
    assert not out.exists() or list(out.iterdir()) == []
