"""The image -> maps path on hand-made embeddings: where a patch lands in the image, and what the
confidence is.

The model's encoders are replaced by fixed unit vectors, so the patch-text similarities are known
exactly: every patch points away from the expression except one, which points at it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import MICRO

from tseg.config import build_config
from tseg.data import build_dataset
from tseg.inference import Segmenter
from tseg.models.pooling import HEADS, pool
from tseg.train import build_model

D = 32  # the micro model's embedding size


@pytest.fixture(scope="module")
def micro_model():
    cfg = build_config(None, MICRO)
    torch.manual_seed(0)
    return build_model(cfg, build_dataset(cfg.data, "train")).eval()


def one_hot_patch_model(model, monkeypatch, grid, lit, head="mpa"):
    """Encoders replaced: patch ``lit`` (row, column) of the ``grid`` is +e0, all others -e0; the
    expression is e0. So S = +tau at that patch and -tau everywhere else."""
    h, w = grid
    monkeypatch.setattr(model.cfg, "head", head)

    def encode_image(images):
        assert tuple(images.shape[-2:]) == (h * 8, w * 8)  # the model input, patch size 8
        x = torch.zeros(images.shape[0], h * w, D)
        x[:, :, 0] = -1.0
        x[:, lit[0] * w + lit[1], 0] = 1.0  # row-major patch order, as the encoders emit
        return {"x": x, "grid": (h, w)}

    def encode_text(texts):
        y = torch.zeros(len(texts), D)
        y[:, 0] = 1.0
        return y

    monkeypatch.setattr(model, "encode_image", encode_image)
    monkeypatch.setattr(model, "encode_text", encode_text)
    return model


@pytest.mark.parametrize("scale", [1, 2])
def test_a_high_patch_lights_its_region_of_the_image(micro_model, monkeypatch, scale):
    # A 4 x 6 grid (not square, so rows and columns cannot be swapped unnoticed); the model input
    # is 32 x 48 and the image `scale` times that, so each patch covers 8 * scale pixels a side.
    model = one_hot_patch_model(micro_model, monkeypatch, (4, 6), lit=(1, 4))
    image = np.zeros((32 * scale, 48 * scale, 3), np.uint8)
    pred = Segmenter(model).predict(image, ["it"])[0]
    assert pred.probability.shape == (32 * scale, 48 * scale)
    cell = 8 * scale
    rows, cols = np.nonzero(pred.mask)
    # The mask is the patch's cell, give or take the half cell that bilinear upsampling blends.
    assert pred.mask[int(1.5 * cell), int(4.5 * cell)]
    assert rows.min() >= cell - cell // 2 and rows.max() < 2 * cell + cell // 2
    assert cols.min() >= 4 * cell - cell // 2 and cols.max() < 5 * cell + cell // 2
    # Everything else is background, the transposed patch (row 4 does not exist) included.
    far = np.ones_like(pred.mask)
    far[cell // 2 : 2 * cell + cell // 2, 4 * cell - cell // 2 : 5 * cell + cell // 2] = False
    assert not pred.mask[far].any()
    assert pred.probability[far].max() < 0.5


@pytest.mark.parametrize("head", sorted(HEADS))
def test_confidence_is_the_sigmoid_of_the_pooled_score(micro_model, monkeypatch, head):
    model = one_hot_patch_model(micro_model, monkeypatch, (4, 6), lit=(2, 3), head=head)
    pred = Segmenter(model).predict(np.zeros((32, 48, 3), np.uint8), ["it"])[0]
    tau = model.tau.item()
    s = torch.full((1, 24, 1), -tau)
    s[0, 2 * 6 + 3, 0] = tau  # S by hand: +tau at the lit patch, -tau elsewhere
    c = model.cfg
    score = pool(s, head, lam=c.size_lambda, p=c.size_p, eps=c.gwp_eps)["scores"][0, 0].item()
    assert pred.confidence == pytest.approx(1.0 / (1.0 + math.exp(-score)), abs=1e-6)


def test_an_image_without_expressions_gets_empty_maps(micro_cfg):
    """Evaluation data may hold an image with no expression (shapes with disjoint expressions
    has a few): its maps and confidences are empty, the other images' are as alone."""
    from tseg.data import build_dataset
    from tseg.inference import Segmenter
    from tseg.train import build_model

    ds = build_dataset(micro_cfg.data, "val")
    seg = Segmenter(build_model(micro_cfg, build_dataset(micro_cfg.data, "train")))
    images = [ds.image(0), ds.image(1)]
    got = seg.maps(images, [[], ds.expressions(1)])
    alone = seg.maps(images[1:], [ds.expressions(1)])[0]
    assert got[0].probabilities.shape == (0, *images[0].shape[:2]) and got[0].confidences.size == 0
    assert np.allclose(got[1].probabilities, alone.probabilities, atol=1e-6)
