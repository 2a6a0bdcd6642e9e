"""Metrics for expressions that may refer to nothing (GRES) and pointing accuracy (PointM).

A *pair* is one (image, expression). A *no-target* pair has an empty ground-truth mask (the
expression matches nothing in the image); a *target* pair has a non-empty one. A prediction
is *empty* when its binary mask has no pixel. Pair IoU follows ``tseg.eval.metrics.pair_iou``:
intersection over union, and 1 when both masks are empty.

Generalised referring expression segmentation (Liu, Ding and Jiang, "GRES: Generalized
Referring Expression Segmentation", CVPR 2023, arXiv:2306.00968, section on evaluation
metrics; evaluator ``gres_model/evaluation/refer_evaluation.py`` of henghuiding/ReLA):

- ``giou``: mean pair IoU over all pairs. A no-target pair scores 1 when predicted empty
  and 0 otherwise; a target pair scores I / U.
- ``ciou``: cumulative IoU, the sum of intersections over the sum of unions, over all pairs
  (a no-target pair adds I = 0 and U = its predicted area). 1 when every union is empty.
- ``n_acc``: no-target pairs predicted empty / no-target pairs (the paper's TP / (TP + FN),
  no-target being the positive class).
- ``t_acc``: target pairs predicted non-empty / target pairs (the paper's TN / (TN + FP)).

ReLA predicts "no target" with a separate head; here the mask itself says it (empty mask =
"no target"), so the two notions coincide. The ReLA script reports ``T_acc`` as
TP / (TP + FP + 1) and ``N_acc`` as TP / (TP + FN + 1); the +1 and that ``T_acc`` are not the
paper's definitions, which are what this module computes (without the +1).

PointM (weakly supervised referring segmentation: Liu et al., "Referring Image Segmentation
Using Text Supervision" (TRIS), ICCV 2023, the ``hitm`` count of ``isCorrectHit`` in
fawnliu/TRIS ``validate.py``; reported again by PCNet, Yang et al., NeurIPS 2024): over target
pairs, the fraction whose response-map maximum lies inside the ground-truth mask. The map is
the expression's probability map at the image's resolution (what ``tseg segment`` thresholds);
its maximum is taken as NumPy's ``argmax`` does, so among tied maxima the first pixel in
row-major order (top row first, then leftmost) is the peak, as in TRIS. No-target pairs have
no PointM. Gated (see ``tseg.presence``), a pair whose mask the gate empties points nowhere
and counts as a miss.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import iou_counts
from .presence import gated

__all__ = [
    "FIGURES",
    "PairRecord",
    "gres_metrics",
    "image_records",
    "pair_record",
    "peak_inside",
    "pointm",
    "summarize_pairs",
]

#: The figures ``summarize_pairs`` reports, each also with a ``_gated`` twin.
FIGURES: tuple[str, ...] = ("giou", "ciou", "n_acc", "t_acc", "pointm")


@dataclass(frozen=True)
class PairRecord:
    """What the metrics need from one (image, expression) pair.

    Attributes:
        intersection: Pixels in both the predicted and the ground-truth mask.
        union: Pixels in either.
        gt_area: Pixels of the ground-truth mask (0: a no-target pair). Needed because a
            gated pair's union becomes the ground-truth area.
        pred_empty: The predicted binary mask has no pixel.
        peak_inside: The response map's maximum lies inside the ground-truth mask.
        confidence: The expression's presence confidence (sigmoid of the pooled score).
    """

    intersection: int
    union: int
    gt_area: int
    pred_empty: bool
    peak_inside: bool
    confidence: float

    @property
    def gt_empty(self) -> bool:
        """A no-target pair."""
        return self.gt_area == 0


def peak_inside(prob: np.ndarray, gt: np.ndarray) -> bool:
    """Whether the first maximum (row-major) of ``prob`` [H, W] is a pixel of ``gt`` [H, W]."""
    prob = np.asarray(prob)
    gt = np.asarray(gt)
    if prob.shape != gt.shape or prob.ndim != 2:
        raise ValueError(f"map shape {prob.shape} and mask shape {gt.shape} must be equal, 2-D")
    if prob.size == 0:
        raise ValueError("empty map")
    if np.isnan(prob).any():
        raise ValueError("the response map holds NaN")
    y, x = np.unravel_index(int(np.argmax(prob)), prob.shape)
    return bool(gt[y, x])


def pair_record(
    prob: np.ndarray, gt: np.ndarray, threshold: float = 0.5, confidence: float = 1.0
) -> PairRecord:
    """The record of one pair from its probability map [H, W] and ground-truth mask [H, W].

    The predicted mask is ``prob > threshold`` (as ``evaluate_pairs`` and ``tseg segment``).
    """
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(prob) > threshold
    inter, union = iou_counts(pred, gt)
    return PairRecord(
        intersection=inter,
        union=union,
        gt_area=int(gt.sum()),
        pred_empty=not pred.any(),
        peak_inside=peak_inside(prob, gt),
        confidence=float(confidence),
    )


def image_records(
    probs: np.ndarray,
    confidences: Sequence[float] | np.ndarray,
    gt_masks: np.ndarray,
    threshold: float = 0.5,
) -> list[PairRecord]:
    """The records of one image's K expressions: probs [K, H, W], confidences [K], masks [K, H, W].

    ``probs`` and ``confidences`` are what ``inference.single_pass`` (or
    ``Segmenter.probabilities``) returns for the expressions whose masks are ``gt_masks``.
    """
    probs = np.asarray(probs)
    conf = np.asarray(confidences, dtype=np.float64)
    gt_masks = np.asarray(gt_masks)
    if probs.shape != gt_masks.shape or probs.ndim != 3 or conf.shape != probs.shape[:1]:
        raise ValueError(
            f"maps {probs.shape}, confidences {conf.shape} and masks {gt_masks.shape} must be "
            "[K, H, W], [K] and [K, H, W]"
        )
    return [pair_record(p, g, threshold, c) for p, g, c in zip(probs, gt_masks, conf)]


def _as_1d(name: str, values: Any, dtype: Any) -> np.ndarray:
    a = np.asarray(values, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _fraction(hits: np.ndarray, among: np.ndarray) -> float | None:
    """hits.sum() / among.sum() over the pairs in ``among``; None when there is none."""
    n = int(among.sum())
    return float((hits & among).sum() / n) if n else None


def gres_metrics(
    intersections: Sequence[int] | np.ndarray,
    unions: Sequence[int] | np.ndarray,
    pred_empty: Sequence[bool] | np.ndarray,
    gt_empty: Sequence[bool] | np.ndarray,
) -> dict[str, float | int | None]:
    """gIoU, cIoU, N-acc and T-acc over pairs (definitions in the module docstring).

    Returns:
        ``{"giou", "ciou", "n_acc", "t_acc", "pairs", "target_pairs", "no_target_pairs"}``;
        ``n_acc`` (``t_acc``) is None when there is no no-target (target) pair.

    Raises:
        ValueError: Empty or mismatched inputs, or counts that no pair of masks can have
            (negative, I > U, I > 0 for an empty prediction or ground truth, an empty union
            with a non-empty prediction).
    """
    inter = _as_1d("intersections", intersections, np.int64)
    union = _as_1d("unions", unions, np.int64)
    p_empty = _as_1d("pred_empty", pred_empty, bool)
    g_empty = _as_1d("gt_empty", gt_empty, bool)
    n = inter.size
    if not (union.size == p_empty.size == g_empty.size == n):
        raise ValueError("intersections, unions, pred_empty and gt_empty differ in length")
    if n == 0:
        raise ValueError("no (image, expression) pairs were evaluated")
    if (inter < 0).any() or (inter > union).any():
        raise ValueError("intersections and unions must satisfy 0 <= I <= U")
    if (inter[p_empty | g_empty] > 0).any():
        raise ValueError("an empty prediction or ground truth cannot have an intersection")
    if ((union == 0) & ~(p_empty & g_empty)).any():
        raise ValueError("a union of 0 pixels needs both masks empty")
    ious = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    total_u = int(union.sum())
    return {
        "giou": float(ious.mean()),
        "ciou": 1.0 if total_u == 0 else float(inter.sum() / total_u),
        "n_acc": _fraction(p_empty, g_empty),
        "t_acc": _fraction(~p_empty, ~g_empty),
        "pairs": int(n),
        "target_pairs": int((~g_empty).sum()),
        "no_target_pairs": int(g_empty.sum()),
    }


def pointm(
    peak_in: Sequence[bool] | np.ndarray, gt_empty: Sequence[bool] | np.ndarray
) -> float | None:
    """PointM: target pairs whose map peak is inside the target / target pairs (None: none)."""
    hits = _as_1d("peak_inside", peak_in, bool)
    g_empty = _as_1d("gt_empty", gt_empty, bool)
    if hits.size != g_empty.size:
        raise ValueError("peak_inside and gt_empty differ in length")
    if (hits & g_empty).any():
        raise ValueError("a no-target pair cannot have its peak inside an empty mask")
    return _fraction(hits, ~g_empty)


def _gate(records: Sequence[PairRecord], threshold: float) -> list[PairRecord]:
    """Each record as it is once the gate has emptied the masks it gates."""
    off = gated([r.confidence for r in records], threshold)
    # An emptied prediction shares nothing with the ground truth, whose area is the union.
    return [
        PairRecord(0, r.gt_area, r.gt_area, True, False, r.confidence) if g else r
        for r, g in zip(records, off)
    ]


def _figures(records: Sequence[PairRecord]) -> dict[str, float | int | None]:
    g_empty = [r.gt_empty for r in records]
    out = gres_metrics(
        [r.intersection for r in records],
        [r.union for r in records],
        [r.pred_empty for r in records],
        g_empty,
    )
    out["pointm"] = pointm([r.peak_inside for r in records], g_empty)
    return out


def summarize_pairs(
    records: Iterable[PairRecord], presence_threshold: float
) -> dict[str, float | int | None]:
    """Every figure of this module, ungated and gated at ``presence_threshold``.

    Args:
        records: One ``PairRecord`` per (image, expression) pair.
        presence_threshold: Confidence below which the gate empties a mask (0: off, and
            the gated figures equal the ungated ones). Choose it on a validation split
            (``tseg.presence.choose_presence_threshold``), not on the pairs scored here.

    Returns:
        ``{"giou", "ciou", "n_acc", "t_acc", "pointm"}``, the same keys suffixed
        ``_gated``, ``"presence_threshold"``, ``"gated_pairs"`` (pairs whose mask the gate
        emptied), ``"pairs"``, ``"target_pairs"``, ``"no_target_pairs"``. Fractions are in
        [0, 1]; ``n_acc`` is None without no-target pairs, ``t_acc`` and ``pointm`` without
        target pairs.

    Raises:
        ValueError: No records, an impossible record, or a threshold that is not finite.
    """
    records = list(records)
    if not np.isfinite(presence_threshold):
        raise ValueError(f"presence_threshold must be finite, got {presence_threshold}")
    if any(not np.isfinite(r.confidence) for r in records):
        raise ValueError("a confidence is not finite")
    if any(r.gt_area < 0 or r.gt_area > r.union for r in records):
        raise ValueError("gt_area must satisfy 0 <= gt_area <= union")
    ungated = _figures(records)
    after = _figures(_gate(records, presence_threshold))
    out: dict[str, float | int | None] = {k: ungated[k] for k in FIGURES}
    out.update({f"{k}_gated": after[k] for k in FIGURES})
    out["presence_threshold"] = float(presence_threshold)
    out["gated_pairs"] = int(gated([r.confidence for r in records], presence_threshold).sum())
    for k in ("pairs", "target_pairs", "no_target_pairs"):
        out[k] = ungated[k]
    return out
