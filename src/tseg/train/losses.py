"""Training objectives: multi-label soft-margin (weak), Dice (full), patch-in-box (box pretraining)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_margin_loss(scores: Tensor, targets: Tensor) -> Tensor:
    """Multi-label soft-margin loss of section 3.3, averaged over expressions and images.

    scores [B, L], targets [B, L] in [0, 1] (soft targets allowed, for tf-idf ground truth).
    """
    return F.multilabel_soft_margin_loss(scores, targets)


def dice_loss(
    logits: Tensor, target: Tensor, eps: float = 1.0, valid: Tensor | None = None
) -> Tensor:
    """Eq. 9 on sigmoid(logits): 1 - 2|M n M*| / (|M| + |M*|), averaged over pairs.

    logits, target [P, H, W]. ``eps`` smooths the ratio so that an empty target is defined.
    ``valid`` [P, H, W]: only these pixels count (pseudo masks' ignore pixels are left out).
    """
    m = torch.sigmoid(logits).flatten(1)  # [P, HW]
    t = target.flatten(1).to(m.dtype)
    if valid is not None:
        v = valid.flatten(1).to(m.dtype)
        m, t = m * v, t * v
    inter = (m * t).sum(1)
    return (1.0 - (2.0 * inter + eps) / (m.sum(1) + t.sum(1) + eps)).mean()


def box_loss(s: Tensor, box_targets: Tensor) -> Tensor:
    """Box pretraining (Table 2e): each patch predicts whether it lies inside the expression's box.

    s [P, N] patch similarities of positive pairs, box_targets [P, N] in {0, 1}.
    """
    return F.binary_cross_entropy_with_logits(s, box_targets.to(s.dtype))


def bce_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-pixel binary cross-entropy, averaged over the ``valid`` pixels. [P, H, W] each."""
    t = target.to(logits.dtype)
    if valid is None:
        return F.binary_cross_entropy_with_logits(logits, t)
    v = valid.to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    return (per_pixel * v).sum() / v.sum().clamp_min(1.0)
