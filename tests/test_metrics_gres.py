"""GRES metrics, PointM and their summary against figures computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tseg.eval.metrics import SegmentationMeter
from tseg.eval.metrics_gres import (
    FIGURES,
    PairRecord,
    gres_metrics,
    image_records,
    pair_record,
    peak_inside,
    pointm,
    summarize_pairs,
)


def _box(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# Five pairs on 10 x 10 images (worked out in the comments):
#   1 target,    gt 10 px, prediction 8 px sharing 6: I 6,  U 12, IoU 0.5, confidence 0.9
#   2 target,    gt 4 px,  prediction empty:          I 0,  U 4,  IoU 0,   confidence 0.3
#   3 no-target,           prediction empty:          I 0,  U 0,  IoU 1,   confidence 0.2
#   4 no-target,           prediction 5 px:           I 0,  U 5,  IoU 0,   confidence 0.6
#   5 no-target,           prediction 3 px:           I 0,  U 3,  IoU 0,   confidence 0.1
# Peaks: both target maps peak inside their target.
RECORDS = [
    PairRecord(6, 12, 10, False, True, 0.9),
    PairRecord(0, 4, 4, True, True, 0.3),
    PairRecord(0, 0, 0, True, False, 0.2),
    PairRecord(0, 5, 0, False, False, 0.6),
    PairRecord(0, 3, 0, False, False, 0.1),
]


def test_gres_metrics_by_hand() -> None:
    r = gres_metrics(
        [x.intersection for x in RECORDS],
        [x.union for x in RECORDS],
        [x.pred_empty for x in RECORDS],
        [x.gt_empty for x in RECORDS],
    )
    assert r["giou"] == pytest.approx((0.5 + 0 + 1 + 0 + 0) / 5)
    assert r["ciou"] == pytest.approx(6 / (12 + 4 + 0 + 5 + 3))
    assert r["n_acc"] == pytest.approx(1 / 3)  # only pair 3 of the three no-target pairs
    assert r["t_acc"] == pytest.approx(1 / 2)  # pair 1 of the two target pairs
    assert (r["pairs"], r["target_pairs"], r["no_target_pairs"]) == (5, 2, 3)


def test_giou_is_tsegs_miou_convention() -> None:
    """gIoU over pairs is the mean of tseg's pair IoU (empty-of-empty counts 1)."""
    meter = SegmentationMeter(
        inters=[r.intersection for r in RECORDS], unions=[r.union for r in RECORDS]
    )
    ours = gres_metrics(
        meter.inters, meter.unions, [r.pred_empty for r in RECORDS], [r.gt_empty for r in RECORDS]
    )
    assert ours["giou"] == pytest.approx(meter.compute()["miou"])
    assert ours["ciou"] == pytest.approx(meter.compute()["oiou"])


def test_summary_gated_and_ungated_by_hand() -> None:
    s = summarize_pairs(RECORDS, presence_threshold=0.5)
    assert s["giou"] == pytest.approx(0.3)
    assert s["ciou"] == pytest.approx(0.25)
    assert s["n_acc"] == pytest.approx(1 / 3)
    assert s["t_acc"] == pytest.approx(0.5)
    assert s["pointm"] == pytest.approx(1.0)
    # Gate at 0.5 empties pairs 2, 3 and 5: pair 5 becomes a correct "nothing here" (IoU 1,
    # U 0); pair 2 was already empty but now points nowhere (PointM miss).
    assert s["giou_gated"] == pytest.approx((0.5 + 0 + 1 + 0 + 1) / 5)
    assert s["ciou_gated"] == pytest.approx(6 / (12 + 4 + 0 + 5 + 0))
    assert s["n_acc_gated"] == pytest.approx(2 / 3)
    assert s["t_acc_gated"] == pytest.approx(1 / 2)
    assert s["pointm_gated"] == pytest.approx(1 / 2)
    assert s["gated_pairs"] == 3
    assert s["presence_threshold"] == 0.5
    assert (s["pairs"], s["target_pairs"], s["no_target_pairs"]) == (5, 2, 3)
    for k in FIGURES:
        assert k in s and f"{k}_gated" in s


def test_gate_off_at_zero_and_gated_union_is_the_target() -> None:
    s = summarize_pairs(RECORDS, presence_threshold=0.0)
    for k in FIGURES:
        assert s[f"{k}_gated"] == s[k]
    assert s["gated_pairs"] == 0
    # Gating a target pair with a partial prediction: its union becomes the target's area.
    one = [PairRecord(6, 12, 10, False, True, 0.4)]
    g = summarize_pairs(one, presence_threshold=0.5)
    assert g["ciou"] == pytest.approx(0.5) and g["ciou_gated"] == 0.0
    assert g["t_acc_gated"] == 0.0 and g["n_acc_gated"] is None


def test_undefined_figures_are_none() -> None:
    only_targets = summarize_pairs([PairRecord(3, 4, 4, False, True, 0.9)], 0.5)
    assert only_targets["n_acc"] is None and only_targets["t_acc"] == 1.0
    only_empty = summarize_pairs([PairRecord(0, 0, 0, True, False, 0.1)], 0.5)
    assert only_empty["t_acc"] is None and only_empty["pointm"] is None
    assert only_empty["giou"] == 1.0 and only_empty["ciou"] == 1.0  # nothing to find, found


def test_peak_ties_take_the_first_pixel_in_row_major_order() -> None:
    gt = _box(4, 4, 1, 1, 3, 3)
    flat = np.full((4, 4), 0.7)
    assert not peak_inside(flat, gt)  # the first maximum is (0, 0), outside
    prob = np.zeros((4, 4))
    prob[2, 2] = prob[0, 3] = 0.9  # (0, 3) comes first
    assert not peak_inside(prob, gt)
    prob[0, 3] = 0.5
    assert peak_inside(prob, gt)
    with pytest.raises(ValueError, match="shape"):
        peak_inside(np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="NaN"):
        peak_inside(np.full((2, 2), math.nan), np.zeros((2, 2), bool))


def test_pair_record_from_maps() -> None:
    gt = _box(10, 10, 0, 0, 2, 5)  # 10 px
    prob = np.zeros((10, 10))
    prob[1:3, 1:5] = 0.8  # 8 px: row 1's 4 inside the target, row 2's 4 outside
    prob[1, 2] = 0.95  # the peak, inside
    r = pair_record(prob, gt, threshold=0.5, confidence=0.7)
    assert (r.intersection, r.union, r.gt_area) == (4, 14, 10)
    assert not r.pred_empty and r.peak_inside and r.confidence == 0.7
    low = pair_record(prob * 0.5, gt, threshold=0.5)  # nothing above the threshold
    assert low.pred_empty and (low.intersection, low.union) == (0, 10)
    assert low.peak_inside  # PointM looks at the map, not at the mask


def test_pointm_by_hand() -> None:
    assert pointm([True, False, False, True], [False, False, True, False]) == pytest.approx(2 / 3)
    assert pointm([False], [True]) is None
    with pytest.raises(ValueError, match="no-target"):
        pointm([True], [True])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (([], [], [], []), "no .* pairs"),
        (([1], [1, 2], [False], [False]), "length"),
        (([3], [2], [False], [False]), "I <= U"),
        (([1], [2], [True], [False]), "cannot have an intersection"),
        (([0], [0], [False], [True]), "both masks empty"),
        (([[1]], [[1]], [[False]], [[False]]), "1-D"),
    ],
)
def test_gres_metrics_rejects_impossible_counts(args: tuple, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        gres_metrics(*args)


def test_summary_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        summarize_pairs(RECORDS, math.nan)
    with pytest.raises(ValueError, match="confidence"):
        summarize_pairs([PairRecord(0, 0, 0, True, False, math.inf)], 0.5)
    with pytest.raises(ValueError, match="gt_area"):
        summarize_pairs([PairRecord(0, 3, 4, True, False, 0.5)], 0.5)
    with pytest.raises(ValueError, match="no .* pairs"):
        summarize_pairs([], 0.5)


def test_records_from_a_model_on_shapes_with_absent_expressions(micro_cfg) -> None:
    """The path an evaluation takes: model maps + dataset masks -> records -> summary."""

    from tseg.data.synthetic.shapes import ShapesDataset
    from tseg.eval.presence import choose_presence_threshold
    from tseg.inference import Segmenter
    from tseg.train import build_model

    ds = ShapesDataset("val", size=3, image_size=32, absent=2)
    model = build_model(micro_cfg, ShapesDataset("train", size=4, image_size=32)).eval()
    seg, records = Segmenter(model), []
    for i in range(len(ds)):
        m = seg.maps([ds.image(i)], ds.expressions(i))[0]
        records += image_records(m.probabilities, m.confidences, ds.masks(i))
    flags = [f for i in range(len(ds)) for f in ds.no_target(i)]
    assert [r.gt_empty for r in records] == flags and sum(flags) == 6
    choice = choose_presence_threshold([r.confidence for r in records], [not f for f in flags])
    s = summarize_pairs(records, choice.threshold)
    assert s["no_target_pairs"] == 6 and s["pairs"] == len(records)
    # The gate empties at least the masks the rule counted (a map may be empty by itself).
    assert s["n_acc_gated"] >= choice.n_acc - 1e-12
    assert all(0.0 <= s[k] <= 1.0 for k in FIGURES)
    with pytest.raises(ValueError, match=r"\[K, H, W\]"):
        image_records(np.zeros((2, 4, 4)), [0.5], np.zeros((2, 4, 4), bool))
