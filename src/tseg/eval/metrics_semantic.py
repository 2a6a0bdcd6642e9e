"""Dataset-level segmentation metrics: VOC mIoU and the PhraseCut task metrics.

VOC: pixels are accumulated over the whole dataset in a confusion matrix; the IoU of a
class is TP / (TP + FP + FN) and the mIoU is the mean over all classes, skipping (NaN)
only classes that appear neither in the ground truth nor in the predictions.

PhraseCut (official ``utils/evaluator.py``): per task, IoU = I / U (0 when I = 0);
mean IoU over tasks, cumulative IoU = sum(I) / sum(U), and precision at a threshold t is
the fraction of tasks with IoU strictly greater than t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PHRASECUT_THRESHOLDS", "ConfusionMatrix", "mask_iou", "phrasecut_metrics"]

PHRASECUT_THRESHOLDS: tuple[float, ...] = (0.5, 0.7, 0.9)


class ConfusionMatrix:
    """Accumulates a [num_classes, num_classes] confusion matrix (rows: ground truth).

    Args:
        num_classes: Number of classes (21 for VOC, background included).
        ignore_index: Ground-truth value whose pixels are not counted (None: none).
    """

    def __init__(self, num_classes: int = 21, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise ValueError("num_classes must be positive")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        """Forget every update."""
        self.matrix[:] = 0

    def update(self, pred: Any, gt: Any) -> None:
        """Add one image (or a batch) of predictions and ground truth of the same shape.

        Raises:
            ValueError: Shapes differ, or a value is outside ``0..num_classes-1`` (ground
                truth may also hold ``ignore_index``, predictions may not).
        """
        p = np.asarray(pred)
        g = np.asarray(gt)
        if p.shape != g.shape:
            raise ValueError(f"prediction shape {p.shape} != ground-truth shape {g.shape}")
        for name, a in (("prediction", p), ("ground truth", g)):
            if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
                raise ValueError(f"{name} must hold integer class indices, got {a.dtype}")
        p = p.astype(np.int64).ravel()
        g = g.astype(np.int64).ravel()
        if self.ignore_index is not None:
            keep = g != self.ignore_index
            p, g = p[keep], g[keep]
        n = self.num_classes
        if g.size and (g.min() < 0 or g.max() >= n):
            raise ValueError(f"ground truth has values outside 0..{n - 1} (and the ignore index)")
        if p.size and (p.min() < 0 or p.max() >= n):
            raise ValueError(f"prediction has values outside 0..{n - 1}")
        self.matrix += np.bincount(g * n + p, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (e.g. from another worker)."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.matrix += other.matrix

    def per_class_iou(self) -> np.ndarray:
        """IoU per class [num_classes]; NaN for classes absent from both gt and pred."""
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over classes (NaN-safe); NaN before any update."""
        iou = self.per_class_iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / counted pixels; NaN before any update."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def mean_class_accuracy(self) -> float:
        """Mean over ground-truth classes of the per-class recall."""
        support = self.matrix.sum(1)
        if not support.any():
            return float("nan")
        recall = np.diag(self.matrix)[support > 0] / support[support > 0]
        return float(recall.mean())


def mask_iou(pred: Any, gt: Any) -> tuple[float, int, int]:
    """IoU, intersection and union of two binary masks (IoU = 0 when I = 0, as PhraseCut)."""
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {g.shape}")
    inter = int(np.count_nonzero(p & g))
    union = int(np.count_nonzero(p | g))
    return (inter / union if inter else 0.0), inter, union


def phrasecut_metrics(
    ious: Sequence[float],
    intersections: Sequence[float],
    unions: Sequence[float],
    thresholds: Sequence[float] = PHRASECUT_THRESHOLDS,
) -> dict[str, float]:
    """PhraseCut metrics over tasks.

    Args:
        ious: IoU of each task.
        intersections: Intersection (pixels) of each task.
        unions: Union (pixels) of each task.
        thresholds: Precision thresholds (strict ``>``, as the official evaluator).

    Returns:
        ``{"count", "mean_iou", "cum_iou", "prec@0.5", "prec@0.7", "prec@0.9"}``.

    Raises:
        ValueError: Empty or mismatched inputs, or negative areas.
    """
    iou = np.asarray(ious, dtype=np.float64)
    inter = np.asarray(intersections, dtype=np.float64)
    union = np.asarray(unions, dtype=np.float64)
    if iou.ndim != 1 or iou.shape != inter.shape or iou.shape != union.shape:
        raise ValueError("ious, intersections and unions must be 1-D and of equal length")
    if iou.size == 0:
        raise ValueError("no tasks to evaluate")
    if (inter < 0).any() or (union < 0).any() or (inter > union).any():
        raise ValueError("intersections and unions must satisfy 0 <= I <= U")
    total_union = union.sum()
    out: dict[str, float] = {
        "count": float(iou.size),
        "mean_iou": float(iou.mean()),
        "cum_iou": float(inter.sum() / total_union) if total_union else 0.0,
    }
    for t in thresholds:
        out[f"prec@{t:g}"] = float((iou > t).mean())
    return out
