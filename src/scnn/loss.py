"""The localization network's loss: softmax cross-entropy plus S-CNN's overlap term.

The overlap term (method.md §3) pushes a positive window's probability of its true class
towards v^(α/2), where v is the window's IoU with its ground-truth instance: a window that
covers an action well ends up more confident than one that only clips it, so NMS later keeps
the better-aligned window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_IOU = 1e-6  # floor for v: positives have v > 0.5 by construction; this only avoids v = 0 → inf


def overlap_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ious: torch.Tensor,
    lam: float = 1.0,
    alpha: float = 0.25,
) -> torch.Tensor:
    """``(1/N) Σ −log P_n + λ (1/N) Σ [k_n > 0] ½ (P_n² / v_n^α − 1)``, a scalar.

    ``logits`` ``(N, K+1)``; ``labels`` ``(N,)`` in 0..K, 0 being background; ``ious``
    ``(N,)`` the IoU v of each sample with its ground-truth instance (ignored for
    background). P_n is the softmax probability of the true class. N is the whole batch,
    background included, so background samples dilute the overlap term without adding to it.
    ``lam = 0`` gives plain softmax cross-entropy (the proposal and classification stages).
    For a positive sample the loss is minimal at P = v^(α/2) (v^(1/8) by default).
    """
    log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    cross_entropy = -log_p.mean()
    if lam == 0:
        return cross_entropy
    positive = labels > 0
    v = torch.where(positive, ious.to(log_p.dtype), torch.ones_like(log_p)).clamp_min(MIN_IOU)
    overlap = 0.5 * (torch.exp(2 * log_p) / v**alpha - 1)
    overlap = torch.where(positive, overlap, torch.zeros_like(overlap))
    return cross_entropy + lam * overlap.sum() / len(labels)
