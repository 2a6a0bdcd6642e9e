"""Referring-expression segmentation given each image's annotated expressions (section 4.1):
mIoU, overall IoU, precision@k and PointM over (image, expression) pairs, presence ROC AUC, and
the no-target evaluation of GRES with a presence gate chosen on another split."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..data import RefDataset, normalize_expression
from ..distributed import Shard
from ..inference.segmenter import Segmenter
from .metrics import SegmentationMeter, iou_counts, roc_auc
from .metrics_gres import PairRecord, pair_record, peak_inside, summarize_pairs
from .presence import PresenceChoice, choose_presence_threshold


def predicted_mask(seg: Segmenter, prob: np.ndarray, confidence: float) -> np.ndarray:
    """[H, W] bool: ``prob`` above ``seg.threshold``, emptied when ``confidence`` is below
    ``seg.presence_threshold`` (the gate ``predict`` applies; 0 = off)."""
    if float(confidence) < seg.presence_threshold:
        return np.zeros(prob.shape, bool)
    return prob > seg.threshold


def evaluate_pairs(
    seg: Segmenter,
    ds: RefDataset,
    batch_size: int = 32,
    max_images: int = 0,
    presence: bool = False,
    seed: int = 0,
    shard: Shard | None = None,
) -> dict[str, float]:
    """Every (image, expression) pair of ``ds`` through ``seg.maps``, thresholded at
    ``seg.threshold``, with TTA and CRF as ``seg`` is configured.

    With ``presence``, each image is also scored with as many absent expressions (drawn from other
    images) as it has present ones, and the ROC AUC of the confidence is reported; the absent
    expressions get a confidence only, never a map (nor a CRF). Batches of ``batch_size`` images
    go to ``seg.maps`` together (images of one size share an image-encoder pass). With ``shard``,
    each rank evaluates its share of the batches and every rank returns the metrics of all
    images, equal to one process's: batches are formed as in one process and results merged in
    image order.
    """
    shard = shard or Shard()
    n = len(ds) if not max_images else min(max_images, len(ds))
    absent = absent_expressions(ds, n, seed) if presence else [[] for _ in range(n)]
    # Per image: (index, (intersections, unions, confidences, presence labels, peak hits)).
    records: list[tuple[int, tuple[list[int], list[int], list[float], list[int], list[bool]]]] = []
    for start in shard.take(range(0, n, batch_size)):  # whole batches, as one process forms them
        idxs = list(range(start, min(n, start + batch_size)))
        own = [ds.expressions(i) for i in idxs]
        results = seg.maps(
            [ds.image(i) for i in idxs],
            [ex + absent[i] for i, ex in zip(idxs, own)],
            maps_for=[len(ex) for ex in own],  # the image's own expressions come first
        )
        for i, ex, m in zip(idxs, own, results):
            gt = ds.masks(i)
            counts = [
                iou_counts(predicted_mask(seg, m.probabilities[j], m.confidences[j]), gt[j])
                for j in range(len(ex))
            ]
            conf = [float(c) for c in m.confidences] if presence else []
            labels = [1] * len(ex) + [0] * len(absent[i])
            hits = [peak_inside(m.probabilities[j], gt[j]) for j in range(len(ex)) if gt[j].any()]
            records.append(
                (i, ([c[0] for c in counts], [c[1] for c in counts], conf, labels, hits))
            )
    meter = SegmentationMeter()
    conf_all: list[float] = []
    labels_all: list[int] = []
    hits_all: list[bool] = []
    for inters, unions, conf, labels, hits in shard.gather_keyed(records):  # image order
        meter.inters += inters
        meter.unions += unions
        conf_all += conf
        labels_all += labels
        hits_all += hits
    out = meter.compute()
    out["pointm"] = float(np.mean(hits_all)) if hits_all else None
    if presence:
        out["presence_auc"] = roc_auc(np.array(conf_all), np.array(labels_all))
    return {
        k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in out.items()
    }


def absent_expressions(ds: RefDataset, n: int, seed: int) -> list[list[str]]:
    """Per image, as many expressions of other images as it has (for presence AUC), never one of
    its own (compared by ``normalize_expression``: "Red  circle" is "red circle").

    Drawn for all ``n`` images up front in image order, so a sharded evaluation draws exactly
    what one process draws.
    """
    rng = np.random.default_rng(seed)
    pool_texts = sorted({t for i in range(n) for t in ds.expressions(i)})
    out = []
    for i in range(n):
        ex = ds.expressions(i)
        own = {normalize_expression(e) for e in ex}
        cands = [t for t in pool_texts if normalize_expression(t) not in own]
        k = min(len(ex), len(cands))
        out.append([cands[j] for j in rng.choice(len(cands), size=k, replace=False)] if k else [])
    return out


def pair_records(
    seg: Segmenter, ds: RefDataset, batch_size: int = 32, max_images: int = 0
) -> list[PairRecord]:
    """One ``PairRecord`` per (image, expression) pair of ``ds``, in image order: what the GRES
    metrics and the presence gate need. Expressions with an empty mask are no-target pairs."""
    n = len(ds) if not max_images else min(max_images, len(ds))
    out: list[PairRecord] = []
    for start in range(0, n, batch_size):
        idxs = list(range(start, min(n, start + batch_size)))
        results = seg.maps([ds.image(i) for i in idxs], [ds.expressions(i) for i in idxs])
        for i, m in zip(idxs, results):
            for prob, gt, conf in zip(m.probabilities, ds.masks(i), m.confidences):
                out.append(pair_record(prob, gt, seg.threshold, float(conf)))
    return out


def evaluate_no_target(
    seg: Segmenter, val: RefDataset, test: RefDataset, batch_size: int = 32
) -> dict[str, float | int | None]:
    """GRES figures on ``test`` (gIoU, cIoU, N-acc, T-acc, PointM), without and with the
    presence gate whose threshold is chosen on ``val`` by ``choose_presence_threshold``.

    Both splits must hold target and no-target pairs (e.g. ``shapes`` with
    ``data.shapes_absent``). Returns ``summarize_pairs``' keys plus ``val_n_acc`` and
    ``val_t_acc`` (what the chosen threshold scores on ``val``).
    """
    val_records = pair_records(seg, val, batch_size)
    choice = choose_presence_threshold(
        [r.confidence for r in val_records], [not r.gt_empty for r in val_records]
    )
    out = summarize_pairs(pair_records(seg, test, batch_size), choice.threshold)
    out["val_n_acc"], out["val_t_acc"] = choice.n_acc, choice.t_acc
    return out


def choose_presence(
    seg: Segmenter, ds: RefDataset, batch_size: int = 32, max_images: int = 0, seed: int = 0
) -> PresenceChoice:
    """``inference.presence_threshold`` chosen on ``ds`` (a validation split) by the rule of
    ``tseg.eval.presence``.

    Present pairs: each image's own expressions whose mask is not empty. Absent pairs: its
    expressions with an empty mask (no-target ones, e.g. gRefCOCO's or ``data.shapes_absent``)
    and as many expressions of other images as it has (``absent_expressions``). Only
    confidences are computed (no maps).
    """
    n = len(ds) if not max_images else min(max_images, len(ds))
    absent = absent_expressions(ds, n, seed)
    conf: list[float] = []
    present: list[bool] = []
    for start in range(0, n, batch_size):
        idxs = list(range(start, min(n, start + batch_size)))
        own = [ds.expressions(i) for i in idxs]
        results = seg.maps(
            [ds.image(i) for i in idxs],
            [ex + absent[i] for i, ex in zip(idxs, own)],
            maps_for=[0] * len(idxs),
        )
        for i, m in zip(idxs, results):
            has_target = [bool(g.any()) for g in ds.masks(i)]
            conf += [float(c) for c in m.confidences]
            present += has_target + [False] * len(absent[i])
    return choose_presence_threshold(conf, present)


#: Mask thresholds ``choose_mask_threshold`` tries on the probability maps.
MASK_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(2, 20))


def choose_mask_threshold(
    seg: Segmenter,
    ds: RefDataset,
    batch_size: int = 32,
    max_images: int = 0,
    candidates: tuple[float, ...] = MASK_THRESHOLDS,
) -> dict[str, Any]:
    """``inference.threshold`` chosen on ``ds`` (a validation split): the candidate with the best
    mIoU over its (image, expression) pairs; ties go to the one nearest 0.5.

    The maps are the pooling head's (section 3.3), computed once; only the threshold that turns
    them into masks is chosen (0.5 is MPA's background score s_bg = 0, and where the GAP/GMP
    CAM threshold and SPA's argmax land on the maps).

    Returns:
        {"threshold": the chosen one, "miou": its mIoU, "miou_at": {candidate: mIoU}}.
    """
    n = len(ds) if not max_images else min(max_images, len(ds))
    meters = {t: SegmentationMeter() for t in candidates}
    for start in range(0, n, batch_size):
        idxs = list(range(start, min(n, start + batch_size)))
        results = seg.maps([ds.image(i) for i in idxs], [ds.expressions(i) for i in idxs])
        for i, m in zip(idxs, results):
            for prob, gt in zip(m.probabilities, ds.masks(i)):
                for t, meter in meters.items():
                    meter.update(prob > t, gt)
    miou = {t: m.compute()["miou"] for t, m in meters.items()}
    best = max(candidates, key=lambda t: (round(miou[t], 9), -abs(t - 0.5)))
    return {
        "threshold": best,
        "miou": round(miou[best], 6),
        "miou_at": {str(t): round(v, 6) for t, v in miou.items()},
    }
