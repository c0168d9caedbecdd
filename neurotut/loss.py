"""The affinity loss: class-rebalanced, masked binary cross-entropy (Superhuman)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_balance_weights(target: Tensor, mask: Tensor, absent_class_weight: float = 1.0) -> Tensor:
    """Per-voxel loss weights ``(N, C, Z, Y, X)``: per patch and channel, with ``N+`` positive and
    ``N-`` negative valid edges, positives get ``N- / (N+ + N-)`` and negatives ``N+ / (N+ +
    N-)`` (each class carries half the weight); both get ``absent_class_weight`` when a class is
    absent; invalid edges get 0."""
    m = mask.to(torch.float32)
    pos = (target > 0.5).to(torch.float32) * m
    dims = tuple(range(2, target.dim()))
    n_valid = m.sum(dim=dims, keepdim=True)
    n_pos = pos.sum(dim=dims, keepdim=True)
    n_neg = n_valid - n_pos
    total = n_valid.clamp(min=1)
    absent = (n_pos == 0) | (n_neg == 0)
    w_pos = torch.where(absent, torch.full_like(n_pos, absent_class_weight), n_neg / total)
    w_neg = torch.where(absent, torch.full_like(n_pos, absent_class_weight), n_pos / total)
    return (pos * w_pos + (m - pos) * w_neg)


def affinity_loss(
    logits: Tensor, target: Tensor, mask: Tensor, absent_class_weight: float = 1.0
) -> Tensor:
    """Class-rebalanced binary cross-entropy with logits over the valid edges, divided by the
    number of valid edges. All ``(N, C, Z, Y, X)``; ``mask`` bool or 0/1."""
    if logits.shape != target.shape or target.shape != mask.shape:
        raise ValueError(f"shapes differ: {logits.shape}, {target.shape}, {mask.shape}")
    with torch.no_grad():
        w = class_balance_weights(target, mask, absent_class_weight)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (w * bce).sum() / mask.to(torch.float32).sum().clamp(min=1)
