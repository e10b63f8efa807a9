"""The CPU-kernel workarounds: the values (and gradients) of the plain layers, bit for bit
where the docstrings promise it."""

import pytest
import torch
import torch.nn.functional as F

from scnn import kernels
from scnn.model import _POOLS, C3D, CONV_NAMES


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_cpu_bf16_autocast_gradients_match_fp32(memory_format):
    # PyTorch's CPU bf16 conv3d weight gradient is garbage for 2-frame-deep input (conv5a/b
    # on 16-frame clips); kernels.convolve keeps those layers in fp32 when training.
    torch.manual_seed(0)
    model = C3D(4, width=1 / 8, crop_size=32, dropout=0.0).to(memory_format=memory_format)
    clips = torch.randn(8, 3, 16, 32, 32).to(memory_format=memory_format)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])

    def gradients(bf16: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(clips)
        F.cross_entropy(logits.float(), labels).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    reference, mixed = gradients(False), gradients(True)
    for name, grad in mixed.items():
        assert torch.isfinite(grad).all(), name
        if name.endswith("weight"):
            # bf16 rounding through ten layers leaves cosine ≥ 0.96 (conv1); garbage gives ~0
            cosine = F.cosine_similarity(grad.flatten(), reference[name].flatten(), 0)
            assert cosine > 0.9, (name, float(cosine))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_pool1_and_relu_order_give_pytorchs_exact_values(dtype):
    """Without autograd on a CPU, pool1 is 4 strided maxima and ReLU follows each pool: the
    logits must equal a forward under autograd (PyTorch's max-pool) bit for bit, and the
    textbook conv -> ReLU -> pool order."""
    torch.manual_seed(0)
    model = C3D(4, width=1 / 8, crop_size=56, batch_norm=True).eval().to(dtype)
    model = model.to(memory_format=torch.channels_last_3d)
    clips = torch.randn(3, 3, 16, 56, 56, dtype=dtype).contiguous(
        memory_format=torch.channels_last_3d
    )
    with torch.inference_mode():
        fast = model(clips)
    reference = model(clips).detach()
    assert torch.equal(fast, reference)
    x = clips
    for name in CONV_NAMES:  # the order of the C3D paper's figure
        x = F.relu(getattr(model, name.replace("conv", "norm"))(getattr(model, name)(x)))
        if name in _POOLS:
            x = getattr(model, _POOLS[name][0])(x)
    x = F.relu(model.fc7(F.relu(model.fc6(torch.flatten(x, 1)))))
    assert torch.equal(fast, model.fc8(x).detach())


def test_strided_pool_handles_odd_sizes():
    pool = torch.nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2))
    x = torch.randn(2, 8, 4, 9, 7).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        assert torch.equal(kernels.max_pool(pool, x), F.max_pool3d(x, (1, 2, 2)))
        ceil = torch.nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2), ceil_mode=True)
        assert kernels.max_pool(ceil, x).shape == (2, 8, 4, 5, 4)  # Caffe keeps the odd row/column
        assert torch.equal(kernels.max_pool(ceil, x), F.max_pool3d(x, (1, 2, 2), ceil_mode=True))


def test_pooling_under_cpu_autocast_keeps_bf16_and_the_same_maxima():
    """Autocast would max-pool in fp32 (a cast of the whole activation and its gradient)."""
    pool = torch.nn.MaxPool3d((2, 2, 2), stride=(2, 2, 2))
    x = torch.randn(2, 8, 4, 6, 6).to(torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16):
        pooled = kernels.max_pool(pool, x)
    assert pooled.dtype == torch.bfloat16
    assert torch.equal(pooled.float(), F.max_pool3d(x.detach().float(), 2))
    pooled.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and x.grad.sum().item() == pooled.numel()


@pytest.mark.parametrize("channels, runs_contiguous", [(8, True), (16, False)])
def test_training_batch_norm_of_few_channels_runs_contiguous(channels, runs_contiguous):
    """PyTorch's channels-last CPU batch statistics crawl with < 16 channels; _normalize hands
    the norm a contiguous copy and returns channels-last output and input gradient, with the
    values, parameter gradients and running statistics of the plain norm."""
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm3d(channels)
    norm.weight.data.uniform_(0.5, 1.5)
    norm.bias.data.uniform_(-1, 1)
    reference = torch.nn.BatchNorm3d(channels)
    reference.load_state_dict(norm.state_dict())
    seen = []
    norm.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous()))
    x = (torch.randn(2, channels, 4, 6, 6) * 3 + 1).contiguous(memory_format=torch.channels_last_3d)
    upstream = torch.randn_like(x)
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = kernels.normalize(norm, ours)
    out.backward(upstream)
    expected = reference(theirs)
    expected.backward(upstream)

    assert seen == [runs_contiguous]
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert ours.grad.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(ours.grad, theirs.grad)
    torch.testing.assert_close(norm.weight.grad, reference.weight.grad)
    torch.testing.assert_close(norm.bias.grad, reference.bias.grad)
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)
    norm.eval()
    assert kernels.normalize(norm, x).is_contiguous(memory_format=torch.channels_last_3d)
    assert seen[-1] is False  # evaluation mode is fast in either layout
