"""Dense CRF refinement of per-expression foreground maps (Krahenbuhl & Koltun, 2011).

The paper refines its referring-expression masks with a dense CRF (section 4.5, "Using CRF [8]").
The pairwise settings follow the single-stage weakly-supervised segmentation work TSEG builds on
(Araslanov & Roth, 2020). Unlike semantic segmentation, TSEG's MPA masks may overlap, so each
expression is refined on its own as a 2-label foreground/background problem rather than all
expressions competing for every pixel in one multi-label CRF.

Needs the optional ``pydensecrf2`` package (imported as ``pydensecrf``); install it with
``pip install 'tseg[crf]'``. The parameters are ``inference.crf`` (``tseg.config.CRFConfig``).
"""

from __future__ import annotations

import numpy as np

from ..config import CRFConfig
from ..errors import CRFUnavailable


def _densecrf():
    """The pydensecrf.densecrf module, or a CRFUnavailable naming what to install."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as e:
        raise CRFUnavailable(
            "dense CRF refinement needs the optional package pydensecrf2: "
            "pip install 'tseg[crf]' (or pip install pydensecrf2; it builds from source "
            f"and needs a C++ compiler) [{e}]"
        ) from e
    return dcrf


def crf_available() -> bool:
    """Whether pydensecrf can be imported."""
    try:
        _densecrf()
    except CRFUnavailable:
        return False
    return True


def require() -> None:
    """Raise CRFUnavailable (saying what to install) unless pydensecrf can be imported: CRF
    inference checks this before any image is read."""
    if not crf_available():
        _densecrf()


def refine(image: np.ndarray, probs: np.ndarray, cfg: CRFConfig | None = None) -> np.ndarray:
    """Refine foreground probability maps with a dense CRF, one expression at a time.

    Args:
        image: uint8 RGB image [H, W, 3].
        probs: foreground probabilities [L, H, W] (or [H, W] for one expression) in [0, 1].
        cfg: CRF parameters; defaults to ``CRFConfig()``.

    Returns:
        float32 refined foreground probabilities with the shape of ``probs``.

    Raises:
        CRFUnavailable: pydensecrf is not installed.
        ValueError: the image or maps have the wrong type or shape.
    """
    cfg = cfg or CRFConfig()
    dcrf = _densecrf()
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    single = probs.ndim == 2
    p = np.asarray(probs, dtype=np.float32)[None] if single else np.asarray(probs, np.float32)
    if p.ndim != 3 or p.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"probability maps {probs.shape} do not match the image size {image.shape[:2]}"
        )
    h, w = image.shape[:2]
    # pydensecrf reads raw buffers: it needs C-contiguous uint8 RGB and float32 unaries.
    # pydensecrf wants writable memory; np.asarray(PIL image) is read-only.
    rgb = np.array(image, dtype=np.uint8, order="C", copy=True)
    out = np.empty_like(p)
    for i, fg in enumerate(p):
        fg = np.nan_to_num(fg, nan=0.5).clip(0.0, 1.0)
        two = np.stack([1.0 - fg, fg]).reshape(2, -1)  # label 0 background, 1 foreground
        unary = np.ascontiguousarray(-np.log(two.clip(cfg.clip, 1.0)), dtype=np.float32)
        crf = dcrf.DenseCRF2D(w, h, 2)
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=cfg.gaussian_sxy, compat=cfg.gaussian_compat)
        crf.addPairwiseBilateral(
            sxy=cfg.bilateral_sxy, srgb=cfg.bilateral_srgb, rgbim=rgb, compat=cfg.bilateral_compat
        )
        q = np.asarray(crf.inference(cfg.iterations), dtype=np.float32).reshape(2, h, w)
        out[i] = q[1]
    return out[0] if single else out
