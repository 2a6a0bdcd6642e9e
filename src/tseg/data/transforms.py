"""Image and mask geometry shared by training, evaluation and inference."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class View:
    """Geometry of one random view: resize to (nh, nw), pad, crop ``size`` at (top, left), flip."""

    height: int  # original image size
    width: int
    nh: int  # size after the rescale
    nw: int
    top: int  # crop offset in the rescaled (and padded) image
    left: int
    size: int  # side of the square crop
    flipped: bool


def sample_view(
    h: int,
    w: int,
    size: int,
    scale_range: tuple[float, float],
    hflip: bool,
    rng: np.random.Generator,
) -> View:
    """Draw a random rescale, crop offset and flip for an H x W image (the draws of ``random_view``)."""
    scale = float(rng.uniform(*scale_range)) if scale_range[0] != scale_range[1] else scale_range[0]
    short = max(1, int(round(size * scale)))
    nh, nw = max(1, round(h * short / min(h, w))), max(1, round(w * short / min(h, w)))
    top = int(rng.integers(0, max(nh, size) - size + 1))
    left = int(rng.integers(0, max(nw, size) - size + 1))
    flipped = bool(hflip and rng.random() < 0.5)
    return View(h, w, nh, nw, top, left, size, flipped)


def apply_view(x: Tensor, view: View, masks: bool = False) -> Tensor:
    """Apply a view to an image [3, H, W] (or masks [K, H, W] with ``masks``) -> [C, size, size]."""
    x = resize(x, (view.nh, view.nw), masks=masks)
    # Pad to at least size x size (zeros: black image, background mask), then crop.
    ph, pw = max(0, view.size - view.nh), max(0, view.size - view.nw)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    x = x[:, view.top : view.top + view.size, view.left : view.left + view.size]
    return x.flip(-1) if view.flipped else x


def transform_boxes(boxes: np.ndarray, view: View) -> np.ndarray:
    """Boxes [K, 4] (x, y, w, h in original pixels) -> the same boxes in the view's pixels.

    Scaled by (nw / W, nh / H), shifted by the crop offset, clipped to the crop (a box outside it
    gets zero width or height) and mirrored (x -> size - x - w) when the view is flipped.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = view.nw / view.width, view.nh / view.height
    x0 = np.clip(b[:, 0] * sx - view.left, 0, view.size)
    y0 = np.clip(b[:, 1] * sy - view.top, 0, view.size)
    x1 = np.clip((b[:, 0] + b[:, 2]) * sx - view.left, 0, view.size)
    y1 = np.clip((b[:, 1] + b[:, 3]) * sy - view.top, 0, view.size)
    if view.flipped:
        x0, x1 = view.size - x1, view.size - x0
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


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
    ``sample_view`` + ``apply_view`` give the same result and keep the geometry (for boxes).
    """
    view = sample_view(image.shape[-2], image.shape[-1], size, scale_range, hflip, rng)
    image = apply_view(image, view)
    if masks is not None:
        masks = apply_view(masks, view, masks=True)
    return image, masks, view.flipped
