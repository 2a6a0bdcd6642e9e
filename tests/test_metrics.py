"""Metrics against hand-computed values."""

import numpy as np
import pytest

from tseg.eval.metrics import SegmentationMeter, iou_counts, pair_iou, roc_auc


def _mask(h, w, box):
    m = np.zeros((h, w), bool)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = True
    return m


def test_iou_of_two_overlapping_boxes():
    a = _mask(10, 10, (0, 0, 4, 4))  # 16 px
    b = _mask(10, 10, (2, 2, 6, 6))  # 16 px, overlap 4
    i, u = iou_counts(a, b)
    assert (i, u) == (4, 28)
    assert pair_iou(i, u) == pytest.approx(4 / 28)


def test_empty_rules():
    z = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    assert pair_iou(*iou_counts(z, z)) == 1.0  # nothing to find, nothing found
    assert pair_iou(*iou_counts(z, full)) == 0.0  # missed everything
    assert pair_iou(*iou_counts(full, z)) == 0.0  # found something that is not there


def test_meter_miou_oiou_precision():
    m = SegmentationMeter()
    gt1, gt2 = _mask(10, 10, (0, 0, 10, 10)), _mask(10, 10, (0, 0, 2, 2))
    m.update(_mask(10, 10, (0, 0, 10, 5)), gt1)  # IoU 50/100 = 0.5
    m.update(_mask(10, 10, (0, 0, 2, 2)), gt2)  # IoU 1.0
    m.update(np.zeros((10, 10), bool), gt2)  # IoU 0
    r = m.compute()
    assert r["miou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert r["oiou"] == pytest.approx((50 + 4 + 0) / (100 + 4 + 4))
    assert r["prec@0.5"] == pytest.approx(2 / 3)  # IoU >= 0.5 counts
    assert r["prec@0.9"] == pytest.approx(1 / 3)
    assert r["pairs"] == 3


def test_meter_rejects_shape_mismatch_and_empty():
    with pytest.raises(ValueError, match="shape"):
        SegmentationMeter().update(np.zeros((2, 2), bool), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="no .* pairs"):
        SegmentationMeter().compute()


def test_roc_auc_against_pairwise_definition():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, size=40).astype(float)  # many ties
    y = rng.random(40) < 0.4
    pos, neg = s[y], s[~y]
    expect = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(s, y) == pytest.approx(expect)
    assert roc_auc(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == 1.0
    with pytest.raises(ValueError):
        roc_auc(np.array([0.1]), np.array([1]))
