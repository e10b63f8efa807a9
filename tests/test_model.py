"""C3D, the architecture: sizes, layer names, heads, Sports-1M import, FLOPs, folding."""

import os

import pytest
import torch

from scnn.errors import ModelError
from scnn.model import (
    C3D,
    CONV_NAMES,
    clip_gflops,
    fold_batch_norm,
    load_sports1m_weights,
)

SMALL = {"width": 1 / 8, "crop_size": 56}  # the CPU model: 16×56×56 input


@pytest.fixture(scope="module")
def faithful() -> C3D:
    with torch.device("meta"):  # shapes only: no 300 MB of weights
        return C3D(21)


def test_faithful_parameter_count(faithful):
    # conv: 5,248 + 221,312 + 884,992 + 1,769,728 + 3,539,456 + 3 × 7,078,400;
    # fc6 8192·4096 + 4096, fc7 4096·4096 + 4096, fc8 4096·21 + 21.
    assert sum(p.numel() for p in faithful.parameters()) == 78_081_813
    assert faithful.fc6.in_features == 512 * 1 * 4 * 4
    assert faithful.fc8.out_features == 21


def test_faithful_layer_names_match_the_sports1m_conversion(faithful):
    names = {key for key in faithful.state_dict()}
    expected = {
        f"{layer}.{kind}"
        for layer in (*CONV_NAMES, "fc6", "fc7", "fc8")
        for kind in ("weight", "bias")
    }
    assert names == expected
    assert faithful.conv1.weight.shape == (64, 3, 3, 3, 3)
    assert faithful.conv5b.weight.shape == (512, 512, 3, 3, 3)


def test_clip_gflops(faithful):
    # 38.497 G multiply-adds in the convs + 50.4 M in the fc layers, × 2.
    assert clip_gflops(faithful) == pytest.approx(77.0941, abs=1e-4)
    with torch.device("meta"):
        small = C3D(21, **SMALL)
        padded = C3D(21, **SMALL, pooling="padded")
    # conv1 alone: 8 filters · 81 weights · 16·56·56 positions = 32.5 M multiply-adds.
    assert clip_gflops(padded) == pytest.approx(0.3556, abs=1e-4)
    # Caffe's pool4 rounds 7 up to 4: conv5a/b see 2·4·4 positions, not 2·3·3 (+2·64·64·27·14).
    assert clip_gflops(small) == pytest.approx(0.3556 + 2 * 2 * 64 * 64 * 27 * 14 / 1e9, abs=1e-4)


def test_small_model_shapes_and_heads():
    proposal = C3D(2, **SMALL)
    localization = C3D(6, **SMALL)
    assert proposal.conv1.out_channels == 8 and proposal.fc6.out_features == 512
    assert proposal.fc6.in_features == 64 * 1 * 2 * 2  # pool5 of 2×4×4 (pool4 rounds 7 up)
    clips = torch.randn(3, 3, 16, 56, 56)
    assert proposal(clips).shape == (3, 2)
    assert localization(clips).shape == (3, 6)
    with pytest.raises(ValueError, match=r"expects input \(batch, 3, 16, 56, 56\)"):
        proposal(torch.randn(1, 3, 16, 112, 112))


def test_other_clip_lengths_and_batch_norm():
    model = C3D(4, width=1 / 16, clip_frames=32, crop_size=32, batch_norm=True)
    assert model.fc6.in_features == 32 * 2 * 1 * 1  # pool5 output 2×1×1
    assert isinstance(model.norm3a, torch.nn.BatchNorm3d)
    assert model(torch.randn(2, 3, 32, 32, 32)).shape == (2, 4)
    with pytest.raises(ValueError, match="8×112×112 is too small"):
        C3D(4, clip_frames=8, pooling="padded")  # pool4 leaves 1 frame, pool5 none


def test_eval_mode_is_deterministic_and_dropout_acts_in_training():
    torch.manual_seed(0)
    model = C3D(2, **SMALL)
    clips = torch.randn(2, 3, 16, 56, 56)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(clips), model(clips))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(clips), model(clips))


def test_channels_last_3d_gives_the_same_logits():
    torch.manual_seed(0)
    model = C3D(4, **SMALL).eval()
    clips = torch.randn(2, 3, 16, 56, 56)
    channels_last = clips.to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        expected = model(clips)
        input_only = model(channels_last)
        model = model.to(memory_format=torch.channels_last_3d)
        both = model(channels_last)
    torch.testing.assert_close(input_only, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both, expected, rtol=1e-4, atol=1e-5)


def test_load_sports1m_weights_copies_all_but_fc8(tmp_path):
    torch.manual_seed(1)
    source = C3D(487, **SMALL)  # Sports-1M has 487 classes
    path = tmp_path / "c3d_sports1m.pickle"
    torch.save({key: value.clone() for key, value in source.state_dict().items()}, path)

    target = C3D(21, **SMALL)
    fc8_before = target.fc8.weight.detach().clone()
    load_sports1m_weights(target, path)
    for layer in (*CONV_NAMES, "fc6", "fc7"):
        assert torch.equal(getattr(target, layer).weight, getattr(source, layer).weight)
        assert torch.equal(getattr(target, layer).bias, getattr(source, layer).bias)
    assert torch.equal(target.fc8.weight, fc8_before)
    assert target.fc8.out_features == 21


def test_a_pickle_that_would_run_code_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "c3d.pickle"
    torch.save({"conv1.weight": MakesAFolderWhenUnpickled(marker)}, path)
    with pytest.raises(ModelError, match="GLOBAL posix.mkdir") as caught:
        load_sports1m_weights(C3D(21, **SMALL), path)
    assert not marker.exists()
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)


class MakesAFolderWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_load_sports1m_weights_names_both_shapes_on_mismatch(tmp_path):
    path = tmp_path / "c3d.pickle"
    torch.save(dict(C3D(487, **SMALL).state_dict()), path)
    wider = C3D(21, width=1 / 4, crop_size=56)
    with pytest.raises(
        ModelError, match=r"conv1.weight has shape \(8, 3, 3, 3, 3\).*\(16, 3, 3, 3, 3\)"
    ):
        load_sports1m_weights(wider, path)


def test_load_sports1m_weights_reports_a_missing_layer(tmp_path):
    path = tmp_path / "c3d.pickle"
    state = dict(C3D(487, **SMALL).state_dict())
    del state["conv4b.bias"]
    torch.save(state, path)
    with pytest.raises(ModelError, match="conv4b.bias is missing"):
        load_sports1m_weights(C3D(21, **SMALL), path)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_load_sports1m_weights_refuses_a_pickle_that_runs_code(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pickle"
    torch.save({"conv1.weight": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(ModelError, match="evil.pickle: not a plain state dict of tensors"):
        load_sports1m_weights(C3D(21, **SMALL), path)
    assert not marker.exists()


def test_load_sports1m_weights_missing_or_garbage_file(tmp_path):
    model = C3D(21, **SMALL)
    with pytest.raises(ModelError, match="not found"):
        load_sports1m_weights(model, tmp_path / "nope.pickle")
    garbage = tmp_path / "garbage.pickle"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match="garbage.pickle"):
        load_sports1m_weights(model, garbage)
    listed = tmp_path / "list.pickle"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ModelError, match="expected a dict of tensors, found list"):
        load_sports1m_weights(model, listed)


def test_folding_batch_norm_keeps_the_function():
    torch.manual_seed(0)
    model = C3D(4, width=1 / 8, crop_size=32, batch_norm=True)
    for module in model.modules():  # statistics and affine parameters far from the identity
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    clips = torch.randn(3, 3, 16, 32, 32)
    with torch.no_grad():
        expected = model(clips)
        folded = fold_batch_norm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
        torch.testing.assert_close(folded(clips), expected, rtol=1e-4, atol=1e-5)
