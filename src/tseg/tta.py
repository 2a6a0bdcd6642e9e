"""Test-time augmentation: multi-scale and horizontal-flip inference, averaged at image resolution.

The paper uses "multi-scale processing" at inference (Table 1). Each pass runs the image encoder
once for all expressions; a flipped pass also swaps "left" and "right" in the expressions, so a
spatial expression keeps pointing at the same object. Probability maps are averaged at image
resolution and confidences (sigmoid of the pooled scores) are averaged over passes.

Averaging is meaningful for every pooling head because ``probability_maps`` puts all of them on
one scale where > 0.5 means foreground: MPA maps are per-expression sigmoids, and SPA/GAP/GMP maps
are remapped monotonically so that their decision boundary lands at 0.5. The average is therefore
a soft vote over passes, thresholded at 0.5 like a single map. (For SPA/GAP/GMP it is not a
calibrated probability, only an ordering with the boundary at 0.5.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .data.base import swap_left_right
from .data.transforms import eval_size, resize, to_tensor
from .models.tseg import TSEG


@dataclass
class TTAConfig:
    """Which passes to run.

    Attributes:
        scales: multiples of the model's input size (shorter side) to run the image at.
        flip: also run every scale on the horizontally flipped image (with left/right swapped).
    """

    scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
    flip: bool = True

    def __post_init__(self) -> None:
        self.scales = tuple(float(s) for s in self.scales)
        if not self.scales or any(not s > 0 for s in self.scales):
            raise ValueError(
                f"TTA scales must be a non-empty list of positive numbers: {self.scales}"
            )


@torch.no_grad()
def tta_probabilities(
    model: TSEG,
    image: np.ndarray,
    expressions: list[str],
    cfg: TTAConfig | None = None,
    text_embed_fn: Callable[[list[str]], Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground maps and confidences averaged over scales and flips.

    Args:
        model: a TSEG model; run in eval mode (its training flag is restored afterwards).
        image: uint8 RGB image [H, W, 3].
        expressions: L referring expressions.
        cfg: the passes to run; defaults to ``TTAConfig()``.
        text_embed_fn: maps L strings to [L, D] unit text embeddings; defaults to
            ``model.encode_text``. Pass ``Segmenter.text_embeddings`` to reuse its cache.

    Returns:
        (probs float32 [L, H, W] in [0, 1], confidences float32 [L]).
    """
    cfg = cfg or TTAConfig()
    if not expressions:
        raise ValueError("no expressions given: pass at least one referring expression")
    embed = text_embed_fn or model.encode_text
    device = model.log_tau.device
    h, w = image.shape[:2]
    num = len(expressions)
    patch = getattr(model.image_encoder, "patch_size", 16)

    # A flipped view needs "left"/"right" swapped so the text still names the same object.
    texts = list(expressions)
    if cfg.flip:
        texts += [swap_left_right(e) for e in expressions]

    was_training = model.training
    model.eval()  # dropout or similar would make the passes random
    try:
        # One text-encoder call for both orientations; texts without "left"/"right" are
        # unchanged by the swap and are encoded only once.
        row = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        y_unique = embed(list(row)).to(device)
        y = y_unique[[row[t] for t in texts]]  # [L or 2L, D]
        ys = [y[:num], y[num:]] if cfg.flip else [y]
        base = to_tensor(image)
        prob_sum = torch.zeros(num, h, w, device=device)
        conf_sum = torch.zeros(num, device=device)
        passes = 0
        for scale in cfg.scales:
            size = eval_size(h, w, max(1, round(model.input_size * scale)), patch)
            x = resize(base, size).to(device)
            # Both orientations go through the image encoder as one batch.
            batch = torch.stack([x, x.flip(-1)]) if cfg.flip else x[None]
            enc = model.encode_image(batch)
            for i, yi in enumerate(ys):
                s = model.similarity(enc["x"][i : i + 1], yi)  # [1, N, L]
                conf_sum += torch.sigmoid(model.pool(s)["scores"][0])
                p = model.masks_at(s, enc["grid"], (h, w))[0].float()  # [L, H, W]
                prob_sum += p.flip(-1) if i == 1 else p  # back to the original orientation
                passes += 1
    finally:
        model.train(was_training)
    probs = (prob_sum / passes).clamp(0.0, 1.0).cpu().numpy()
    return probs, (conf_sum / passes).cpu().numpy()
