"""Overlays: each expression in its own colour, with a legend of its text and confidence."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, colour-blind-friendlier colours (Okabe-Ito, then Tableau), cycled past 14 expressions.
PALETTE = [
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
    (204, 121, 167), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194),
]  # fmt: skip


def colour(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def overlay(
    image: np.ndarray,
    masks: np.ndarray,
    labels: list[str],
    confidences: list[float] | None = None,
    alpha: float = 0.5,
    scale: int = 1,
) -> Image.Image:
    """Blend masks [K, H, W] over image [H, W, 3] and add a legend strip on the right.

    ``scale`` enlarges small images (nearest neighbour) so the legend text stays readable.
    """
    base = image.astype(np.float32)
    out = base.copy()
    for k, m in enumerate(masks.astype(bool)):
        c = np.array(colour(k), dtype=np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * c
        # Outline: mask pixels whose right or lower neighbour is outside the mask.
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        out[edge] = c
    pic = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    if scale > 1:
        pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
    font = ImageFont.load_default()
    line = 14
    texts = [
        f"{t}" + (f"  {confidences[k]:.2f}" if confidences is not None else "")
        for k, t in enumerate(labels)
    ]
    width = max([ImageDraw.Draw(pic).textlength(t, font=font) for t in texts] + [0])
    legend_w = int(width) + 28
    height = max(pic.height, line * len(texts) + 8)
    canvas = Image.new("RGB", (pic.width + legend_w, height), (255, 255, 255))
    canvas.paste(pic, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, t in enumerate(texts):
        y = 4 + k * line
        x = pic.width + 6
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=colour(k))
        draw.text((x + 16, y), t, fill=(0, 0, 0), font=font)
    return canvas
