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


class FixedMaps:
    """A segmenter whose maps are given: ``inside`` on the ground truth, ``outside`` elsewhere."""

    threshold = 0.5

    def __init__(self, ds, inside: float, outside: float) -> None:
        self.ds, self.inside, self.outside = ds, inside, outside

    def maps(self, images, expressions, maps_for=None):
        from tseg.results import Maps

        out = []
        for img in images:
            i = next(k for k in range(len(self.ds)) if self.ds.image(k) is img)
            gt = self.ds.masks(i)
            probs = np.where(gt, self.inside, self.outside).astype(np.float32)
            out.append(Maps(probs, np.ones(len(gt), np.float32)))
        return out


class Masks:
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.images = [np.zeros((8, 8, 3), np.uint8) for _ in range(3)]
        self.gts = [rng.random((2, 8, 8)) > 0.5 for _ in range(3)]

    def __len__(self) -> int:
        return 3

    def image(self, i):
        return self.images[i]

    def expressions(self, i):
        return ["a", "b"]

    def masks(self, i):
        return self.gts[i]


@pytest.mark.parametrize(
    ("inside", "outside", "expected"),
    [(0.7, 0.4, 0.5), (0.9, 0.6, 0.6), (0.3, 0.1, 0.25), (0.97, 0.9, 0.9)],
)
def test_mask_threshold_is_the_best_on_val_nearest_half(inside, outside, expected):
    """Every candidate in [outside, inside) separates the maps perfectly (mIoU 1); of those,
    the one nearest 0.5 is chosen."""
    from tseg.eval.pairs import choose_mask_threshold

    ds = Masks()
    got = choose_mask_threshold(FixedMaps(ds, inside, outside), ds)
    assert got["threshold"] == expected and got["miou"] == 1.0
    assert len(got["miou_at"]) == 18 and min(got["miou_at"].values()) < 1.0
