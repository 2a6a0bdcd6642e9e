"""Pooling heads: patch-text similarities S [B, N, L] -> scores z [B, L] and patch masks M [B, N, L].

Section 3.2 of the paper. Each head is a plain function of the similarity tensor, so it can be
checked against its formula; mask inference for each head (section 3.3) lives here too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def gap(s: Tensor, **_: float) -> dict[str, Tensor]:
    """Global average pooling, eq. 2: z_j = mean_i s_ij. Masks are the raw similarities (CAM)."""
    return {"scores": s.mean(dim=1), "masks": s}


def gmp(s: Tensor, **_: float) -> dict[str, Tensor]:
    """Global max pooling, eq. 3: z_j = max_i s_ij. Masks are the raw similarities (CAM)."""
    return {"scores": s.amax(dim=1), "masks": s}


def size_penalty(m: Tensor, lam: float, p: float) -> Tensor:
    """Eq. 7: z_size_j = (1 - mbar_j)^p log(lambda + mbar_j), mbar_j = mean_i m_ij. [B, N, L] -> [B, L]."""
    mbar = m.mean(dim=1)  # [B, L]
    # Clamping keeps log finite when lambda = 0 and a mask underflows to exactly zero.
    return (1.0 - mbar).pow(p) * torch.log((lam + mbar).clamp_min(1e-12))


def weighted_pool(s: Tensor, m: Tensor, eps: float) -> Tensor:
    """Global weighted pooling, eq. 4: w_ij = m_ij / (sum_i m_ij + eps); z_j = sum_i w_ij s_ij."""
    w = m / (m.sum(dim=1, keepdim=True) + eps)  # [B, N, L]
    return (w * s).sum(dim=1)  # [B, L]


def spa_masks(s: Tensor) -> Tensor:
    """Eq. 5: softmax over a constant background column s_bg = 0 and the L expressions."""
    bg = s.new_zeros(s.shape[:-1] + (1,))  # [B, N, 1]
    return torch.softmax(torch.cat([bg, s], dim=-1), dim=-1)[..., 1:]  # [B, N, L]


def mpa_masks(s: Tensor) -> Tensor:
    """Eq. 6: e^s / (e^s_bg + e^s) with s_bg = 0, i.e. a per-expression sigmoid."""
    return torch.sigmoid(s)


def spa(s: Tensor, lam: float = 0.01, p: float = 5.0, eps: float = 1e-5) -> dict[str, Tensor]:
    """Single-label patch assignment: eq. 5 masks, eq. 4 pooling plus eq. 7 penalty (eq. 8)."""
    m = spa_masks(s)
    return {"scores": weighted_pool(s, m, eps) + size_penalty(m, lam, p), "masks": m}


def mpa(s: Tensor, lam: float = 0.01, p: float = 5.0, eps: float = 1e-5) -> dict[str, Tensor]:
    """Multi-label patch assignment (TSEG): eq. 6 masks, eq. 4 pooling plus eq. 7 penalty (eq. 8)."""
    m = mpa_masks(s)
    return {"scores": weighted_pool(s, m, eps) + size_penalty(m, lam, p), "masks": m}


HEADS: dict[str, Callable[..., dict[str, Tensor]]] = {
    "gap": gap,
    "gmp": gmp,
    "spa": spa,
    "mpa": mpa,
}


def pool(
    s: Tensor, head: str, lam: float = 0.01, p: float = 5.0, eps: float = 1e-5
) -> dict[str, Tensor]:
    """Apply the named head to S [B, N, L]; returns {"scores": [B, L], "masks": [B, N, L]}."""
    if head not in HEADS:
        raise ValueError(f"unknown pooling head {head!r}: choose one of {', '.join(HEADS)}")
    return HEADS[head](s, lam=lam, p=p, eps=eps)


def probability_maps(
    s: Tensor, head: str, size: tuple[int, int], cam_threshold: float = 0.5
) -> Tensor:
    """Per-expression foreground maps in [0, 1] at image resolution, from patch similarities.

    Section 3.3: the patch masks M, arranged as a grid [B, L, h, w], are bilinearly upsampled to
    ``size`` (H, W). The returned map [B, L, H, W] is compared with 0.5 to give the binary mask, for
    every head:
    - MPA: M = sigmoid(s); thresholding at 0.5 is thresholding at the background score s_bg = 0.
    - SPA: M = softmax over background + expressions; a pixel belongs to expression j when j wins
      the argmax. The map is rescaled so that exactly the winning pixels are above 0.5.
    - GAP / GMP: class-activation-map normalisation: ReLU, divide by the per-expression maximum;
      foreground where the normalised CAM exceeds ``cam_threshold``. The map is remapped piecewise
      linearly so that the threshold lands on 0.5.
    """

    def up(x: Tensor) -> Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    if head == "mpa":
        return up(torch.sigmoid(s)).clamp_(0.0, 1.0)  # in place: the maps can be 100s of MB
    if head == "spa":
        bg = s.new_zeros((s.shape[0], 1) + s.shape[2:])
        prob = up(torch.softmax(torch.cat([bg, s], dim=1), dim=1))  # [B, 1 + L, H, W]
        winner = prob.argmax(dim=1, keepdim=True)  # [B, 1, H, W]
        idx = torch.arange(1, prob.shape[1], device=s.device).view(1, -1, 1, 1)
        wins = winner == idx  # [B, L, H, W]
        p = prob[:, 1:].clamp(0.0, 1.0)
        # Winning pixels map to (0.5, 1], the others to [0, 0.5]; order within each set is kept.
        return torch.where(wins, 0.5 + 0.5 * p.clamp_min(1e-6), 0.5 * p)
    if head in ("gap", "gmp"):
        cam = torch.relu(up(s))
        peak = cam.flatten(2).amax(dim=2).view(cam.shape[0], cam.shape[1], 1, 1)
        cam = cam / peak.clamp_min(1e-6)  # [B, L, H, W] in [0, 1]
        t = min(max(cam_threshold, 1e-6), 1 - 1e-6)
        return torch.where(cam > t, 0.5 + 0.5 * (cam - t) / (1 - t), 0.5 * cam / t)
    raise ValueError(f"unknown pooling head {head!r}: choose one of {', '.join(HEADS)}")
