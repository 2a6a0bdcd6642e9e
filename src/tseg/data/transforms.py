"""Image and mask geometry shared by training, evaluation and inference."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def to_tensor(image: np.ndarray) -> Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    if not image.flags.writeable:  # e.g. np.asarray(PIL image); torch wants writable memory
        image = image.copy()
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def eval_size(h: int, w: int, size: int, multiple: int) -> tuple[int, int]:
    """Model input size for an H x W image: shorter side ``size``, both sides multiples of ``multiple``."""
    scale = size / min(h, w)

    def snap(v: float) -> int:
        return max(multiple, int(round(v / multiple)) * multiple)

    return snap(h * scale), snap(w * scale)


def resize(x: Tensor, size: tuple[int, int], masks: bool = False) -> Tensor:
    """Resize [C, H, W]: bilinear (antialiased when shrinking) for images, nearest for masks."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if masks:
        return F.interpolate(x[None].float(), size=size, mode="nearest-exact")[0] > 0.5
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(
        x[None], size=size, mode="bilinear", align_corners=False, antialias=shrink
    )[0]


def random_view(
    image: Tensor,
    masks: Tensor | None,
    size: int,
    scale_range: tuple[float, float],
    hflip: bool,
    rng: np.random.Generator,
) -> tuple[Tensor, Tensor | None, bool]:
    """Random rescale, random crop (zero padding where the image is smaller) and flip.

    image [3, H, W] -> [3, size, size]; masks [K, H, W] -> [K, size, size] with the same geometry.
    Returns (image, masks, flipped); the caller swaps "left"/"right" in the text when flipped.
    """
    h, w = image.shape[-2:]
    scale = float(rng.uniform(*scale_range)) if scale_range[0] != scale_range[1] else scale_range[0]
    short = max(1, int(round(size * scale)))
    nh, nw = max(1, round(h * short / min(h, w))), max(1, round(w * short / min(h, w)))
    image = resize(image, (nh, nw))
    if masks is not None:
        masks = resize(masks, (nh, nw), masks=True)
    # Pad to at least size x size, then crop at a random offset.
    ph, pw = max(0, size - nh), max(0, size - nw)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
        if masks is not None:
            masks = F.pad(masks, (0, pw, 0, ph))
    top = int(rng.integers(0, image.shape[-2] - size + 1))
    left = int(rng.integers(0, image.shape[-1] - size + 1))
    image = image[:, top : top + size, left : left + size]
    if masks is not None:
        masks = masks[:, top : top + size, left : left + size]
    flipped = bool(hflip and rng.random() < 0.5)
    if flipped:
        image = image.flip(-1)
        if masks is not None:
            masks = masks.flip(-1)
    return image, masks, flipped
