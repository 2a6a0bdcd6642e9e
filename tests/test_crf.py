"""Dense CRF refinement: pulls soft maps to colour edges, one 2-label problem per expression."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tseg.config import CRFConfig
from tseg.inference.crf import CRFUnavailable, crf_available, refine

needs_crf = pytest.mark.skipif(
    not crf_available(),
    reason="pydensecrf is not installed: pip install 'tseg[crf]' (package pydensecrf2)",
)

H, W = 64, 72
SQUARE = (slice(16, 44), slice(20, 52))


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red square on a grey-green background, its mask, and a noisy blurred blob over it."""
    img = np.full((H, W, 3), (90, 110, 100), np.uint8)
    img[SQUARE] = (220, 40, 40)
    square = np.zeros((H, W), bool)
    square[SQUARE] = True
    yy, xx = np.mgrid[:H, :W]
    d = np.hypot((yy - 30) / 18, (xx - 36) / 20)  # an ellipse: rounded where the square has corners
    blob = 1 / (1 + np.exp((d - 0.9) * 6))
    noise = np.random.default_rng(0).normal(0, 0.15, (H, W))
    return img, square, (blob + noise).clip(0, 1).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@needs_crf
def test_refinement_snaps_to_the_square():
    img, square, p = scene()
    before = iou(p > 0.5, square)
    q = refine(img, p[None])[0]
    after = iou(q > 0.5, square)
    assert before < 0.85
    assert after > 0.95 and after > before + 0.1


@needs_crf
def test_shape_dtype_range():
    img, _, p = scene()
    probs = np.stack([p, 1 - p, np.full_like(p, 0.5)]).astype(np.float64)
    q = refine(img, probs)
    assert q.shape == (3, H, W) and q.dtype == np.float32
    assert np.isfinite(q).all() and q.min() >= 0 and q.max() <= 1
    # A single [H, W] map gives a single map back.
    q1 = refine(img, p)
    assert q1.shape == (H, W)
    np.testing.assert_allclose(q1, q[0], atol=1e-6)


@needs_crf
def test_expressions_are_refined_independently():
    """Overlapping masks survive: the same map twice is not split as in a multi-label CRF."""
    img, square, p = scene()
    q = refine(img, np.stack([p, p, np.zeros_like(p)]))
    np.testing.assert_allclose(q[0], q[1], atol=1e-6)
    assert (q[0][square] > 0.5).mean() > 0.95 and (q[1][square] > 0.5).mean() > 0.95
    np.testing.assert_allclose(q[0], refine(img, p), atol=1e-6)
    assert q[2].max() < 0.5  # an empty map stays empty


@needs_crf
def test_config_is_honoured():
    img, _, p = scene()
    # No iterations: the softmax of the unaries, i.e. the input up to the 1e-5 clipping.
    q0 = refine(img, p, CRFConfig(iterations=0))
    np.testing.assert_allclose(q0, p, atol=2e-5)
    # With both pairwise weights at zero, mean-field iterations have nothing to change.
    qz = refine(img, p, CRFConfig(gaussian_compat=0, bilateral_compat=0))
    np.testing.assert_allclose(qz, p, atol=2e-5)
    # Defaults change the map; a different bilateral colour scale changes it differently.
    q = refine(img, p)
    assert np.abs(q - p).max() > 0.3
    assert np.abs(refine(img, p, CRFConfig(bilateral_srgb=200)) - q).max() > 1e-3
    assert np.abs(refine(img, p, CRFConfig(iterations=1)) - q).max() > 1e-3


def test_defaults_match_single_stage_wsss():
    c = CRFConfig()
    assert (c.iterations, c.gaussian_sxy, c.gaussian_compat) == (10, 3, 3)
    assert (c.bilateral_sxy, c.bilateral_srgb, c.bilateral_compat) == (80, 13, 10)
    with pytest.raises(ValueError, match="iterations"):
        CRFConfig(iterations=-1)


@needs_crf
def test_bad_inputs():
    img, _, p = scene()
    with pytest.raises(ValueError, match="do not match"):
        refine(img, p[None, :-1])
    with pytest.raises(ValueError, match="uint8 RGB"):
        refine(img.astype(np.float32), p)


def test_missing_pydensecrf_names_the_extra(monkeypatch):
    # None in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    img, _, p = scene()
    with pytest.raises(CRFUnavailable, match=r"tseg\[crf\]") as info:
        refine(img, p)
    assert isinstance(info.value, ImportError)
    assert not crf_available()


def test_segmenter_refines_the_plain_maps_and_keeps_the_confidences(micro_cfg, monkeypatch):
    """The CRF option is ``refine`` applied to the one-pass maps (here a stand-in that inverts
    them), only to the maps asked for; confidences are those of the plain pass."""
    import torch

    import tseg.inference.crf
    from tseg.data import build_dataset
    from tseg.inference import Segmenter
    from tseg.train import build_model

    torch.manual_seed(0)
    model = build_model(micro_cfg, build_dataset(micro_cfg.data, "train"))
    image = (np.random.default_rng(1).random((30, 41, 3)) * 255).astype(np.uint8)
    texts = ["red circle", "squares", "blue shapes"]
    m = Segmenter(model).maps([image], texts)[0]
    plain, conf = m.probabilities, m.confidences
    seen: list[tuple[int, ...]] = []

    def inverted(img, probs, cfg=None):  # noqa: ANN001, ANN202
        assert img is image or np.array_equal(img, image)
        seen.append(probs.shape)
        return 1.0 - probs

    monkeypatch.setattr(tseg.inference.crf, "crf_available", lambda: True)
    monkeypatch.setattr(tseg.inference.crf, "refine", inverted)
    seg = Segmenter(model, crf=CRFConfig(iterations=3))
    m = seg.maps([image], texts)[0]
    probs, conf_crf = m.probabilities, m.confidences
    np.testing.assert_allclose(probs, 1.0 - plain, atol=1e-6)
    np.testing.assert_array_equal(conf_crf, conf)
    m = seg.maps([image], texts, maps_for=[1])[0]  # the other two: confidences only
    np.testing.assert_allclose(m.probabilities, 1.0 - plain[:1], atol=1e-6)
    np.testing.assert_array_equal(m.confidences, conf)
    assert seen == [(3, 30, 41), (1, 30, 41)]
    preds = seg.predict(image, texts)
    np.testing.assert_allclose([p.probability for p in preds], 1.0 - plain, atol=1e-6)
    assert all(np.array_equal(p.mask, p.probability > 0.5) for p in preds)
