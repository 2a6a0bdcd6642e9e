"""Test-time augmentation: multi-scale and horizontal-flip inference, averaged at image resolution.

The paper uses "multi-scale processing" at inference (Table 1). Each pass runs the image encoder
once for all expressions; a flipped pass also swaps "left" and "right" in the expressions, so a
spatial expression keeps pointing at the same object. Probability maps are averaged at image
resolution and confidences (sigmoid of the pooled scores) are averaged over passes. The passes
are ``Segmenter.maps``'s (``Segmenter._tta``), the same road as a single pass; the settings are
``inference.tta`` (``tseg.config.TTAConfig``).

Averaging is meaningful for every pooling head because ``probability_maps`` puts all of them on
one scale where > 0.5 means foreground: MPA maps are per-expression sigmoids, and SPA/GAP/GMP maps
are remapped monotonically so that their decision boundary lands at 0.5. The average is therefore
a soft vote over passes, thresholded at 0.5 like a single map. (For SPA/GAP/GMP it is not a
calibrated probability, only an ordering with the boundary at 0.5.)
"""

from __future__ import annotations

import numpy as np

from ..config import TTAConfig
from ..models.tseg import TSEG
from .segmenter import Segmenter

__all__ = ["TTAConfig", "tta_probabilities"]


def tta_probabilities(
    model: TSEG,
    image: np.ndarray,
    expressions: list[str],
    cfg: TTAConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground maps and confidences of one image averaged over scales and flips: what
    ``Segmenter(model, tta=cfg).maps([image], expressions)`` gives, for one call.

    Args:
        model: a TSEG model; run in eval mode (its training flag is restored afterwards).
        image: uint8 RGB image [H, W, 3].
        expressions: L referring expressions.
        cfg: the passes to run; defaults to ``TTAConfig()``.

    Returns:
        (probs float32 [L, H, W] in [0, 1], confidences float32 [L]).
    """
    if not expressions:
        raise ValueError("no expressions given: pass at least one referring expression")
    was_training = model.training
    try:
        seg = Segmenter(model, model.log_tau.device, tta=cfg or TTAConfig())
        m = seg.maps([image], expressions)[0]
    finally:
        model.train(was_training)
    return m.probabilities, m.confidences
