"""Confusion-matrix mIoU and PhraseCut metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tseg.eval.metrics_semantic import ConfusionMatrix, mask_iou, phrasecut_metrics


def test_confusion_matrix_by_hand() -> None:
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = ConfusionMatrix(num_classes=3)
    cm.update(pred, gt)
    # Counted pixels (255 ignored): gt 0 -> pred 0, 1; gt 1 -> 1, 1; gt 2 -> 2, 0.
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    # IoU0 = 1 / (1 + 1 + 1) ; IoU1 = 2 / (2 + 1) ; IoU2 = 1 / (1 + 1)
    np.testing.assert_allclose(cm.per_class_iou(), [1 / 3, 2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)
    assert cm.mean_class_accuracy() == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)


def test_accumulates_over_images_not_per_image_mean() -> None:
    cm = ConfusionMatrix(num_classes=2)
    cm.update(np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1]))  # IoU1 = 1 on its own
    cm.update(np.array([0, 0]), np.array([1, 1]))  # IoU1 = 0 on its own
    # Dataset level: class 1 has TP 4, FN 2 -> 4/6; class 0 has TP 0, FP 2 -> 0.
    np.testing.assert_allclose(cm.per_class_iou(), [0.0, 4 / 6])


def test_absent_classes_are_nan_and_skipped() -> None:
    cm = ConfusionMatrix(num_classes=21)
    cm.update(np.array([[0, 15]]), np.array([[0, 15]]))
    iou = cm.per_class_iou()
    assert iou[0] == 1 and iou[15] == 1 and np.isnan(iou[1])
    assert cm.miou() == 1.0


def test_empty_matrix() -> None:
    cm = ConfusionMatrix()
    assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())
    cm.update(np.full((2, 2), 3), np.full((2, 2), 255))  # all ignored
    assert cm.matrix.sum() == 0


def test_merge_and_reset() -> None:
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(np.array([0, 1]), np.array([0, 1]))
    b.update(np.array([2]), np.array([1]))
    a.merge(b)
    assert a.matrix.sum() == 3 and a.matrix[1, 2] == 1
    a.reset()
    assert a.matrix.sum() == 0


@pytest.mark.parametrize(
    "pred, gt, message",
    [
        (np.array([0, 3]), np.array([0, 1]), "prediction has values"),
        (np.array([0, 1]), np.array([0, 7]), "ground truth has values"),
        (np.array([0, 255]), np.array([0, 1]), "prediction has values"),
        (np.array([0, 1]), np.array([[0, 1]]), "shape"),
        (np.array([0.5, 1.0]), np.array([0, 1]), "integer"),
    ],
)
def test_invalid_updates(pred: np.ndarray, gt: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConfusionMatrix(3).update(pred, gt)


def test_mask_iou() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert mask_iou(a, b) == (pytest.approx(4 / 12), 4, 12)
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == (0.0, 0, 0)


def test_phrasecut_metrics_by_hand() -> None:
    ious = [0.5, 0.7, 0.95, 0.2]
    inter = [5, 7, 19, 2]
    union = [10, 10, 20, 10]
    out = phrasecut_metrics(ious, inter, union)
    assert out["count"] == 4
    assert out["mean_iou"] == pytest.approx((0.5 + 0.7 + 0.95 + 0.2) / 4)
    assert out["cum_iou"] == pytest.approx(33 / 50)
    # Strictly greater: an IoU of exactly 0.5 (or 0.7) does not count.
    assert out["prec@0.5"] == pytest.approx(2 / 4)
    assert out["prec@0.7"] == pytest.approx(1 / 4)
    assert out["prec@0.9"] == pytest.approx(1 / 4)


def test_phrasecut_metrics_custom_thresholds_and_errors() -> None:
    assert phrasecut_metrics([0.3], [3], [10], thresholds=(0.3, 0.25))["prec@0.25"] == 1.0
    with pytest.raises(ValueError, match="no tasks"):
        phrasecut_metrics([], [], [])
    with pytest.raises(ValueError, match="equal length"):
        phrasecut_metrics([0.1], [1, 2], [3])
    with pytest.raises(ValueError, match="I <= U"):
        phrasecut_metrics([0.1], [5], [3])
