"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020, section 3.3 of their paper).

Written here from the paper's description. Each pixel's mask value is replaced, a few times over,
by an average of its neighbours' values, weighted by how alike their colours are:

    kappa(i, j) = -|I_i - I_j| / sigma_i        per colour channel; sigma_i: the standard deviation
                                                of the colours in i's neighbourhood
    alpha(i, .) = softmax_j (mean over channels of kappa(i, j))
    m_i <- sum_j alpha(i, j) m_j                 ``iterations`` times

The neighbourhood is the 8 neighbours of a 3 x 3 window at each of several dilations (1, 2, 4,
8, 12, 24 pixels in the paper), so a mask edge moves to the nearest colour edge within about 24
pixels. Unlike the dense CRF (``tseg.inference.crf``) it is plain torch: batched over images and
expressions, on the CPU or a GPU, and differentiable. The affinities depend on the image only,
so they are computed once for all the image's expressions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import PAMRConfig


def _offsets(dilations: tuple[int, ...]) -> list[tuple[int, int]]:
    """(dy, dx) of the 8 neighbours of a 3 x 3 window at each dilation, in a fixed order."""
    return [(dy, dx) for d in dilations for dy in (-d, 0, d) for dx in (-d, 0, d) if dy or dx]


def _neighbours(x: Tensor, dilations: tuple[int, ...]) -> Tensor:
    """[B, C, H, W] -> [B, C, K, H, W]: the 8 neighbours of every pixel at each dilation
    (K = 8 x len(dilations)); the border is extended by replication."""
    h, w = x.shape[-2:]
    pad = max(dilations)
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    views = [
        xp[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w] for dy, dx in _offsets(dilations)
    ]
    return torch.stack(views, dim=2)


def affinities(image: Tensor, dilations: tuple[int, ...]) -> Tensor:
    """Colour affinities of each pixel to its neighbours: image [B, 3, H, W] -> alpha [B, K, H, W]
    (softmax over the K neighbours, so each pixel's weights sum to 1)."""
    nb = _neighbours(image, dilations)  # [B, 3, K, H, W]
    # sigma_i over the neighbourhood and the pixel itself; eps keeps a flat region finite
    # (there every neighbour is equally alike and the softmax is uniform).
    local = torch.cat([nb, image[:, :, None]], dim=2)  # [B, 3, K + 1, H, W]
    sigma = local.std(dim=2, keepdim=True) + 1e-4  # [B, 3, 1, H, W]
    kappa = -(nb - image[:, :, None]).abs() / sigma  # [B, 3, K, H, W]
    return torch.softmax(kappa.mean(dim=1), dim=1)  # [B, K, H, W]


def pamr(image: Tensor, masks: Tensor, cfg: PAMRConfig | None = None) -> Tensor:
    """Refine masks on their images.

    Args:
        image: [B, 3, H, W] float (any scale: the affinities are invariant to it).
        masks: [B, L, H, W] values in [0, 1] (one map per expression).
        cfg: iterations and dilations (default ``PAMRConfig()``).

    Returns:
        [B, L, H, W] refined masks; each value stays a convex combination of its inputs.
    """
    cfg = cfg or PAMRConfig()
    dilations = tuple(int(d) for d in cfg.dilations)
    alpha = affinities(image.float(), dilations)  # [B, K, H, W]
    h, w = masks.shape[-2:]
    pad = max(dilations)
    m = masks.float()
    for _ in range(cfg.iterations):
        # One shifted view at a time, accumulated in place: stacking the K neighbours of
        # every expression ([B, L, K, H, W]) was 8x slower on the CPU (19 maps at 96 px).
        mp = F.pad(m, (pad, pad, pad, pad), mode="replicate")
        acc = torch.zeros_like(m)
        for k, (dy, dx) in enumerate(_offsets(dilations)):
            acc.addcmul_(
                mp[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w], alpha[:, k : k + 1]
            )
        m = acc
    return m


def refine(
    image: np.ndarray,
    probs: np.ndarray,
    cfg: PAMRConfig | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """``pamr`` for one decoded image: uint8 RGB [H, W, 3] and maps float [L, H, W] (or [H, W])
    -> refined float32 maps of the same shape (the interface of ``tseg.inference.crf.refine``).

    Images whose shorter side is above ``cfg.max_side`` are refined at that size and the result
    is upsampled back: the dilations are in pixels of the refined size, and memory grows with
    the pixel count x neighbours x expressions.
    """
    cfg = cfg or PAMRConfig()
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    single = probs.ndim == 2
    p = np.asarray(probs, dtype=np.float32)
    p = p[None] if single else p
    if p.ndim != 3 or p.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"probability maps {probs.shape} do not match the image size {image.shape[:2]}"
        )
    h, w = image.shape[:2]
    img = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float()
    m = torch.from_numpy(np.nan_to_num(p, nan=0.5).clip(0.0, 1.0)).to(device)[None]
    scale = min(1.0, cfg.max_side / min(h, w)) if cfg.max_side else 1.0
    if scale < 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        img = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    out = pamr(img, m, cfg)  # [1, L, h', w']
    if scale < 1.0:
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
    out = out[0].clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
    return out[0] if single else out
