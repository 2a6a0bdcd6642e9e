"""Referring-expression segmentation metrics (section 4.1).

IoU is computed per (image, expression) pair at the image's resolution. Conventions:
- an empty prediction against a non-empty ground truth has IoU 0;
- an empty prediction against an empty ground truth has IoU 1 (nothing to find, nothing found);
- a non-empty prediction against an empty ground truth has IoU 0.
mIoU is the mean over pairs (small and large objects weigh the same); overall IoU is the sum of
intersections over the sum of unions (large objects dominate); precision@k is the fraction of
pairs with IoU >= k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def iou_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Intersection and union pixel counts of two boolean masks of the same shape."""
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}"
        )
    pred, gt = pred.astype(bool), gt.astype(bool)
    return int(np.logical_and(pred, gt).sum()), int(np.logical_or(pred, gt).sum())


def pair_iou(inter: int, union: int) -> float:
    """IoU of one pair; an empty union (both masks empty) counts as a perfect 1.0."""
    return 1.0 if union == 0 else inter / union


@dataclass
class SegmentationMeter:
    """Accumulates per-pair intersections and unions; reports mIoU, overall IoU, precision@k."""

    inters: list[int] = field(default_factory=list)
    unions: list[int] = field(default_factory=list)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """Add one (image, expression) pair; returns its IoU."""
        i, u = iou_counts(pred, gt)
        self.inters.append(i)
        self.unions.append(u)
        return pair_iou(i, u)

    def merge(self, other: SegmentationMeter) -> None:
        self.inters += other.inters
        self.unions += other.unions

    @property
    def ious(self) -> np.ndarray:
        return np.array(
            [pair_iou(i, u) for i, u in zip(self.inters, self.unions)], dtype=np.float64
        )

    def compute(self) -> dict[str, float]:
        """{"miou", "oiou", "prec@0.5", ..., "prec@0.9", "pairs"}; IoUs are fractions in [0, 1]."""
        n = len(self.inters)
        if n == 0:
            raise ValueError("no (image, expression) pairs were evaluated")
        ious = self.ious
        total_u = sum(self.unions)
        out = {
            "miou": float(ious.mean()),
            "oiou": 1.0 if total_u == 0 else sum(self.inters) / total_u,
            "pairs": n,
        }
        for t in THRESHOLDS:
            out[f"prec@{t}"] = float((ious >= t).mean())
        return out


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count half."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative")
    # Rank-sum (Mann-Whitney U) form, with average ranks for ties.
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    u = r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))
