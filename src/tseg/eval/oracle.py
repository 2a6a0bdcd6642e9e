"""The patch grid's own ceiling: ground-truth masks pushed through a model's patch grid.

TSEG's masks are patch masks upsampled (section 3.3), so no model can draw an outline finer than
its grid. ``grid_oracle`` measures how much that alone costs on a dataset: each ground-truth mask
becomes the fraction of every grid cell it covers (at the model's input size), those fractions are
bilinearly upsampled to the image exactly as the model's maps are, and thresholded; the best of a
fixed list of global thresholds is reported, so the figure is an upper bound for any model with
that grid and input size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import eval_size
from .metrics import SegmentationMeter

# Global thresholds tried on the upsampled area fractions; the best one is reported.
ORACLE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


def grid_fractions(mask: np.ndarray, input_size: tuple[int, int], patch: int) -> torch.Tensor:
    """Bool [H, W] mask -> the area fraction it covers in each cell of the patch grid [h, w].

    The mask is first brought to the model's input size (area-weighted), then each cell of
    ``patch`` x ``patch`` input pixels is averaged; h = ceil(H_in / patch) as the encoders do.
    """
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]  # [1, 1, H, W]
    if tuple(m.shape[-2:]) != tuple(input_size):
        m = F.interpolate(m, size=input_size, mode="area")  # [1, 1, H_in, W_in]
    grid = (math.ceil(input_size[0] / patch), math.ceil(input_size[1] / patch))
    return F.adaptive_avg_pool2d(m, grid)[0, 0]  # [h, w]


def grid_oracle(
    masks: Sequence[np.ndarray],
    input_size: int,
    patch: int,
    thresholds: Sequence[float] = ORACLE_THRESHOLDS,
) -> dict[str, float]:
    """Referring-segmentation metrics of ground truth through the grid, at the best threshold.

    Args:
        masks: per image, bool [K, H, W] ground-truth masks of its K expressions.
        input_size: the model's input size (shorter side), as in evaluation.
        patch: pixels per grid cell at the input size (the encoder's output stride).
        thresholds: global thresholds tried; the one with the best mIoU is kept.

    Returns:
        The ``SegmentationMeter`` figures at the best threshold, plus "threshold" and "grid" (the
        grid of the first image, e.g. 24 x 24).
    """
    meters = {t: SegmentationMeter() for t in thresholds}
    first_grid: tuple[int, ...] = ()
    for image_masks in masks:
        if len(image_masks) == 0:
            continue
        h, w = image_masks.shape[-2:]
        size = eval_size(h, w, input_size, patch)
        for gt in image_masks:
            frac = grid_fractions(gt, size, patch)  # [h_g, w_g]
            first_grid = first_grid or tuple(frac.shape)
            up = F.interpolate(frac[None, None], size=(h, w), mode="bilinear", align_corners=False)
            up = up[0, 0].numpy()  # [H, W], the same upsampling as the model's maps
            for t, meter in meters.items():
                meter.update(up > t, gt)
    if not first_grid:
        raise ValueError("grid_oracle: no ground-truth masks were given")
    scored = {t: m.compute() for t, m in meters.items()}
    best = max(scored, key=lambda t: scored[t]["miou"])
    return {**scored[best], "threshold": best, "grid": "x".join(map(str, first_grid))}
