"""Pair evaluation: the absent expressions of presence scoring, and which maps the CRF refines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tseg.inference.crf
from tseg.data import normalize_expression
from tseg.eval import absent_expressions, evaluate_pairs
from tseg.inference import Segmenter
from tseg.train import build_model


class Texts:
    """A dataset of expressions only (the presence draw never reads an image or a mask)."""

    def __init__(self, per_image: list[list[str]]) -> None:
        self.per_image = per_image

    def __len__(self) -> int:
        return len(self.per_image)

    def expressions(self, i: int) -> list[str]:
        return self.per_image[i]


def test_absent_expressions_never_include_the_images_own():
    # The same expression written differently in other images ("Red  circle") is still its own.
    ds = Texts(
        [
            ["red circle", "squares"],
            ["Red  circle", "blue star", "green ring"],
            ["blue star", "SQUARES"],
            ["green ring"],
            ["red circle", "blue star", "green ring", "squares"],  # every text there is
        ]
    )
    for seed in range(5):
        absent = absent_expressions(ds, len(ds), seed)
        for i, drawn in enumerate(absent):
            own = {normalize_expression(e) for e in ds.expressions(i)}
            # Candidates are distinct strings ("squares" and "SQUARES" are two) of other images.
            others = {t for t in sum(ds.per_image, []) if normalize_expression(t) not in own}
            assert not own & {normalize_expression(t) for t in drawn}
            assert len(drawn) == min(len(ds.expressions(i)), len(others))
            assert len(set(drawn)) == len(drawn)
        assert absent[4] == []  # nothing is absent from the image that has it all
    # Drawn over the first n images only, reproducibly.
    assert absent_expressions(ds, 3, 0) == absent_expressions(ds, 3, 0)
    assert all(
        normalize_expression(t) in {"red circle", "squares", "blue star", "green ring"}
        for drawn in absent_expressions(ds, 3, 0)
        for t in drawn
    )


def test_crf_refines_only_the_annotated_maps(micro_cfg, monkeypatch):
    from tseg.config import CRFConfig
    from tseg.data import build_dataset

    torch.manual_seed(0)
    model = build_model(micro_cfg, build_dataset(micro_cfg.data, "train"))
    ds = build_dataset(micro_cfg.data, "val")
    sizes: list[int] = []

    def counting(image, probs, cfg=None):  # noqa: ANN001, ANN202
        sizes.append(len(probs))
        return probs

    monkeypatch.setattr(tseg.inference.crf, "crf_available", lambda: True)
    monkeypatch.setattr(tseg.inference.crf, "refine", counting)
    out = evaluate_pairs(Segmenter(model, crf=CRFConfig()), ds, 4, presence=True)
    # One call per image with its own expressions; the absent ones only get a confidence.
    assert sizes == [len(ds.expressions(i)) for i in range(len(ds))]
    # An identity "CRF" leaves the figures of the one-pass evaluation.
    plain = evaluate_pairs(Segmenter(model), ds, 4, presence=True)
    assert out == pytest.approx(plain, abs=1e-6)
    assert np.isfinite(out["presence_auc"])
