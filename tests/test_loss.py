import math

import pytest
import torch
import torch.nn.functional as F

from scnn.loss import overlap_loss


def test_hand_computed_values():
    # Two classes, equal logits: P = 0.5 for every sample, −log P = log 2.
    logits = torch.zeros(2, 2)
    labels = torch.tensor([1, 0])
    # v = 1: overlap term ½(0.25 − 1) = −0.375, divided by N = 2 (background counts in N).
    loss = overlap_loss(logits, labels, torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(math.log(2) - 0.375 / 2)
    # v = 1/16: v^0.25 = 0.5, term ½(0.25 / 0.5 − 1) = −0.25.
    loss = overlap_loss(logits, labels, torch.tensor([1 / 16, 0.3]))
    assert loss.item() == pytest.approx(math.log(2) - 0.25 / 2)
    # λ and α are options: λ = 2, α = 1, v = 0.5: term ½(0.25 / 0.5 − 1) = −0.25, × 2 / 2.
    loss = overlap_loss(logits, labels, torch.tensor([0.5, 0.0]), lam=2.0, alpha=1.0)
    assert loss.item() == pytest.approx(math.log(2) - 0.25)


def test_background_only_batch_is_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    labels = torch.zeros(5, dtype=torch.long)
    ious = torch.rand(5)  # whatever v holds for background, it is unused
    torch.testing.assert_close(overlap_loss(logits, labels, ious), F.cross_entropy(logits, labels))


def test_lambda_zero_is_cross_entropy():
    torch.manual_seed(1)
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 2, 0, 1])
    ious = torch.full((6,), 0.8)
    loss = overlap_loss(logits, labels, ious, lam=0.0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    assert overlap_loss(logits, labels, ious) != loss


def test_gradient_matches_finite_differences():
    torch.manual_seed(2)
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 3, 2, 0, 3])
    ious = torch.tensor([0.0, 0.55, 0.7, 0.95, 0.2, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: overlap_loss(z, labels, ious), (logits,))
    assert torch.autograd.gradcheck(
        lambda z: overlap_loss(z, labels, ious, lam=0.5, alpha=0.5), (logits,)
    )


def test_overlap_gradient_is_the_closed_form():
    # d/dz_j of ½ P_k² / v^α is P_k² (δ_jk − p_j) / v^α (method.md §3), then / N.
    torch.manual_seed(3)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 2, 0, 1])
    ious = torch.tensor([0.6, 0.9, 0.0, 0.75], dtype=torch.float64)
    overlap = overlap_loss(logits, labels, ious) - overlap_loss(logits, labels, ious, lam=0.0)
    (grad,) = torch.autograd.grad(overlap, logits)
    p = torch.softmax(logits.detach(), dim=1)
    p_true = p.gather(1, labels[:, None])
    one_hot = F.one_hot(labels, 3).double()
    expected = p_true**2 * (one_hot - p) / ious[:, None] ** 0.25 / 4
    expected[labels == 0] = 0
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("v", [0.55, 0.7, 0.9])
def test_minimum_over_p_is_at_v_to_the_alpha_over_2(v):
    # One positive sample, two classes: logits (0, z) give P = sigmoid(z) for class 1.
    p_grid = torch.linspace(0.5, 0.9995, 2000, dtype=torch.float64)
    z = torch.log(p_grid / (1 - p_grid))
    losses = torch.stack(
        [
            overlap_loss(
                torch.stack([torch.zeros((), dtype=torch.float64), zi])[None],
                torch.tensor([1]),
                torch.tensor([v], dtype=torch.float64),
            )
            for zi in z
        ]
    )
    best = p_grid[losses.argmin()].item()
    assert best == pytest.approx(v ** (0.25 / 2), abs=(p_grid[1] - p_grid[0]).item())
    assert 0.5 < best < 0.999  # an interior minimum, not the edge of the grid
