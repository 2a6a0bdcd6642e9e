"""Test-time augmentation: single-pass equivalence, left/right swapping, flip symmetry, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import MICRO

from tseg.config import TTAConfig, build_config
from tseg.data import build_dataset, swap_left_right
from tseg.data.transforms import eval_size
from tseg.inference import Segmenter
from tseg.inference.tta import tta_probabilities
from tseg.train import build_model

EXPRESSIONS = ["the circle left of the square", "red star", "Right shapes"]
PLAIN = TTAConfig(scales=(1.0,), flip=False)
FLIP = TTAConfig(scales=(1.0,), flip=True)


@pytest.fixture(scope="module")
def models():
    """One tiny random model per head, built once: the tokenizer training is the slow part."""
    torch.manual_seed(0)
    out = {}
    for head in ("mpa", "spa"):
        cfg = build_config(None, [*MICRO, f"model.head={head}"])
        out[head] = build_model(cfg, build_dataset(cfg.data, "train")).eval()
    return out


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)


@pytest.mark.parametrize("head", ["mpa", "spa"])
def test_single_plain_pass_equals_segmenter(models, image, head):
    model = models[head]
    probs, conf = tta_probabilities(model, image, EXPRESSIONS, PLAIN)
    preds = Segmenter(model).predict(image, EXPRESSIONS)
    np.testing.assert_array_equal(probs, np.stack([p.probability for p in preds]))
    np.testing.assert_array_equal(conf, np.array([p.confidence for p in preds], np.float32))


def test_flipped_pass_gets_swapped_texts(models, image, monkeypatch):
    model = models["mpa"]
    seen: list[str] = []
    encode = model.encode_text

    def recording(texts):
        seen.extend(texts)
        return encode(texts)

    monkeypatch.setattr(model, "encode_text", recording)
    tta_probabilities(model, image, EXPRESSIONS, FLIP)
    assert "the circle right of the square" in seen and "Left shapes" in seen
    # Texts without left/right are encoded once, not once per orientation.
    assert seen.count("red star") == 1
    seen.clear()
    tta_probabilities(model, image, EXPRESSIONS, PLAIN)
    assert seen == EXPRESSIONS


def test_flip_pass_is_the_flipped_image_with_swapped_texts(models, image):
    """Plain + flipped-back (flipped image, swapped texts), averaged: fails if either is missed."""
    model = models["mpa"]
    swapped = [swap_left_right(e) for e in EXPRESSIONS]
    flipped = np.ascontiguousarray(image[:, ::-1])
    p_plain, c_plain = tta_probabilities(model, image, EXPRESSIONS, PLAIN)
    p_flip, c_flip = tta_probabilities(model, flipped, swapped, PLAIN)
    probs, conf = tta_probabilities(model, image, EXPRESSIONS, FLIP)
    np.testing.assert_allclose(probs, (p_plain + p_flip[..., ::-1]) / 2, atol=1e-5)
    np.testing.assert_allclose(conf, (c_plain + c_flip) / 2, atol=1e-5)


@pytest.mark.parametrize("head", ["mpa", "spa"])
def test_flip_tta_is_mirror_symmetric(models, image, head):
    """TTA with flips of a mirrored image and mirrored texts is the mirrored TTA result."""
    model = models[head]
    cfg = TTAConfig(scales=(1.0, 0.5), flip=True)
    probs, conf = tta_probabilities(model, image, EXPRESSIONS, cfg)
    flipped = np.ascontiguousarray(image[:, ::-1])
    swapped = [swap_left_right(e) for e in EXPRESSIONS]
    probs_m, conf_m = tta_probabilities(model, flipped, swapped, cfg)
    np.testing.assert_allclose(probs, probs_m[..., ::-1], atol=1e-5)
    np.testing.assert_allclose(conf, conf_m, atol=1e-5)


def test_scales_resize_the_input_and_average(models, image, monkeypatch):
    model = models["mpa"]
    sizes: list[tuple[int, int]] = []
    encode = model.encode_image

    def recording(x):
        sizes.append(tuple(x.shape[-2:]))
        return encode(x)

    monkeypatch.setattr(model, "encode_image", recording)
    cfg = TTAConfig(flip=False)  # default scales (1.0, 0.5, 1.5, 2.0)
    probs, conf = tta_probabilities(model, image, EXPRESSIONS, cfg)
    # Shorter side 32 * scale, both sides snapped to the patch size 8.
    assert sizes == [(32, 48), (16, 24), (48, 72), (64, 88)]
    assert sizes == [eval_size(37, 53, round(32 * s), 8) for s in cfg.scales]
    singles = [
        tta_probabilities(model, image, EXPRESSIONS, TTAConfig((s,), False)) for s in cfg.scales
    ]
    np.testing.assert_allclose(probs, np.mean([p for p, _ in singles], axis=0), atol=1e-6)
    np.testing.assert_allclose(conf, np.mean([c for _, c in singles], axis=0), atol=1e-6)


def test_shapes_ranges_and_cached_text(models, image):
    model = models["mpa"]
    seg = Segmenter(model, tta=TTAConfig())
    m = seg.maps([image], EXPRESSIONS)[0]
    probs, conf = m.probabilities, m.confidences
    assert probs.shape == (3, 37, 53) and probs.dtype == np.float32
    assert conf.shape == (3,) and conf.dtype == np.float32
    assert probs.min() >= 0 and probs.max() <= 1 and ((conf > 0) & (conf < 1)).all()
    assert set(seg._text_cache) == {*EXPRESSIONS, "the circle right of the square", "Left shapes"}
    probs2, conf2 = tta_probabilities(model, image, EXPRESSIONS)
    np.testing.assert_allclose(probs, probs2, atol=1e-6)
    np.testing.assert_allclose(conf, conf2, atol=1e-6)


def test_training_flag_restored_and_bad_config(models, image):
    model = models["mpa"].train()
    try:
        a, _ = tta_probabilities(model, image, EXPRESSIONS, PLAIN)
        assert model.training
    finally:
        model.eval()
    np.testing.assert_array_equal(a, tta_probabilities(model, image, EXPRESSIONS, PLAIN)[0])
    with pytest.raises(ValueError, match="scales"):
        TTAConfig(scales=())
    with pytest.raises(ValueError, match="expressions"):
        tta_probabilities(model, image, [], PLAIN)


def test_passes_average_to_the_hand_computed_maps(models, monkeypatch):
    """Hand-made encoders: a patch's embedding is [r, 1 - r] (its red value), "red" is k [1, -1]
    and "left shape" / "right shape" are k [1, -1] / k [-1, 1], so S = +-k and each map is
    sigmoid(+-k) on either half of a half-red, half-black image. Pooled scores are N / 1000 (N,
    the patch count, tells the scales apart), so the confidence is the mean of their sigmoids."""
    model = models["mpa"]
    k, dim = 3.0, model.text_proj.out_features
    monkeypatch.setattr(model, "log_tau", torch.nn.Parameter(torch.zeros(())))  # tau = 1

    def encode_image(batch):  # one patch per input pixel
        r = batch[:, 0].flatten(1)  # [B, h * w]
        x = torch.zeros(batch.shape[0], r.shape[1], dim)
        x[..., 0], x[..., 1] = r, 1 - r
        return {"x": x, "grid": tuple(batch.shape[-2:])}

    def encode_text(texts):
        direction = {"red": 1.0, "left shape": 1.0, "right shape": -1.0}
        y = torch.zeros(len(texts), dim)
        for i, t in enumerate(texts):
            y[i, 0], y[i, 1] = k * direction[t], -k * direction[t]
        return y

    def pool(s):
        return {"scores": torch.full(s.shape[::2], s.shape[1] / 1000.0)}

    monkeypatch.setattr(model, "encode_image", encode_image)
    monkeypatch.setattr(model, "encode_text", encode_text)
    monkeypatch.setattr(model, "pool", pool)
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :24, 0] = 255  # red on the left half
    hi, lo = 1 / (1 + np.exp(-k)), 1 / (1 + np.exp(k))
    left, right = (slice(None), slice(0, 16)), (slice(None), slice(32, 48))  # away from the edge
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    cfg = TTAConfig(scales=(1.0, 0.5), flip=True)
    probs, conf = tta_probabilities(model, image, ["red", "left shape"], cfg)
    # Inputs 32 x 48 and 16 x 24: N = 1536 and 384, each seen plain and flipped.
    np.testing.assert_allclose(conf, [(sig(1.536) + sig(0.384)) / 2] * 2, atol=1e-6)
    # "red" follows the colour in every pass: flipped maps come back to the original side.
    np.testing.assert_allclose(probs[0][left], hi, atol=1e-5)
    np.testing.assert_allclose(probs[0][right], lo, atol=1e-5)
    # "left shape" is read as "right shape" on the flipped image, which lights its black half,
    # the original's right: the two orientations disagree and average to one half.
    np.testing.assert_allclose(probs[1][left], (hi + lo) / 2, atol=1e-5)
    np.testing.assert_allclose(probs[1][right], (hi + lo) / 2, atol=1e-5)
    plain, _ = tta_probabilities(model, image, ["left shape"], PLAIN)
    np.testing.assert_allclose(plain[0][left], hi, atol=1e-5)
