"""Dataset-level evaluation protocols: PhraseCut per task, VOC semantic segmentation, zero-shot VOC.

- ``evaluate_phrasecut``: the official PhraseCut protocol (section 4.1): one prediction per task
  (phrase-region pair, ambiguous phrases included) at the original image size, reported as mean
  IoU over tasks, cumulative IoU and precision at IoU strictly above 0.5 / 0.7 / 0.9.
- Every protocol also reports PointM (``tseg.eval.metrics_gres``): per target (a pair, a task, or
  an image's class), whether its map's maximum lies inside it.
- ``evaluate_voc``: weakly supervised semantic segmentation on Pascal VOC (Table 1): the model gets
  the names of all 20 classes for every image; each pixel takes the class of highest probability,
  or background when no class map exceeds 0.5; mIoU over a dataset-level confusion matrix.
- ``evaluate_voc(zero_shot=True)``: section 4.6: classes whose confidence (sigmoid of the pooled
  score) is below a threshold (0.5) are dropped before the argmax.
- ``evaluate_semantic``: the same two protocols on any dataset with a ``label_map`` and its own
  classes (COCO instances, ``tseg.data.own.coco``); ``evaluate_voc`` is it with VOC's 20 classes.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..data.paper.phrasecut import PhraseCutDataset
from ..data.paper.voc import IGNORE_INDEX, VOC_CLASSES, VocDataset
from ..data.zeroshot import flatten_class_names, load_class_names, merge_synonyms, zero_shot_labels
from ..distributed import Shard
from ..inference.segmenter import Segmenter
from .metrics_gres import peak_inside
from .metrics_semantic import ConfusionMatrix, mask_iou, phrasecut_metrics
from .pairs import predicted_mask

__all__ = ["evaluate_phrasecut", "evaluate_semantic", "evaluate_voc"]


def _limit(n: int, max_images: int) -> int:
    return n if not max_images else min(n, max_images)


def evaluate_phrasecut(
    seg: Segmenter,
    ds: PhraseCutDataset,
    max_images: int = 0,
    shard: Shard | None = None,
) -> dict[str, float]:
    """Official PhraseCut metrics over every task of ``ds`` (``max_images``: the first N images).

    Each image goes through ``seg.maps`` once with its distinct task phrases (with TTA and CRF
    as ``seg`` is configured); a task's prediction is its phrase's map above ``seg.threshold``,
    compared with ``ds.task_mask``. With ``shard`` each rank predicts its share of the images
    and every rank returns the metrics of all of them.
    """
    shard = shard or Shard()
    n = _limit(len(ds), max_images)
    by_image: dict[int, list[Any]] = {}
    for task in ds.iter_tasks():
        if task.image_index < n:
            by_image.setdefault(task.image_index, []).append(task)
    mine: list[tuple[int, list[tuple[float, int, int, bool | None]]]] = []
    for i in shard.take(sorted(by_image)):
        tasks = by_image[i]
        phrases = list(dict.fromkeys(t.phrase for t in tasks))
        maps = seg.maps([ds.image(i)], phrases)[0]
        probs, confs = maps.probabilities, maps.confidences  # [P, H, W], [P]
        col = {p: k for k, p in enumerate(phrases)}
        rows = []
        for task in tasks:
            prob, gt = probs[col[task.phrase]], ds.task_mask(task.task_id)
            hit = peak_inside(prob, gt) if gt.any() else None  # PointM: target tasks only
            pred = predicted_mask(seg, prob, confs[col[task.phrase]])  # the presence gate too
            rows.append((*mask_iou(pred, gt), hit))
        mine.append((i, rows))
    rows = [r for per_image in shard.gather_keyed(mine) for r in per_image]  # image order
    ious, inters, unions = ([r[j] for r in rows] for j in range(3))
    out = phrasecut_metrics(ious, inters, unions)
    out["images"] = float(len(by_image))
    hits = [r[3] for r in rows if r[3] is not None]
    out["pointm"] = float(np.mean(hits)) if hits else math.nan
    return {k: round(v, 6) if math.isfinite(v) else None for k, v in out.items()}


def evaluate_voc(
    seg: Segmenter,
    ds: VocDataset,
    class_names: dict[str, list[str]] | str | os.PathLike[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Pascal VOC semantic segmentation mIoU from text prompts (Table 1, or section 4.6).

    ``evaluate_semantic`` with VOC's 20 classes; ``options`` are its keyword arguments.

    Args:
        class_names: ``{class: [names]}``, a YAML file of them, or None for the packaged
            ``voc_synonyms.yaml``; the names of a class are merged by their maximum.

    Returns:
        ``{"miou", "pixel_accuracy", "per_class_iou" {class: IoU or None}, "images", ...}``.
    """
    names = class_names if isinstance(class_names, dict) else load_class_names(class_names)
    if list(names) != list(VOC_CLASSES[1:]):
        raise ValueError(f"class_names must map the 20 VOC classes in order: {VOC_CLASSES[1:]}")
    return evaluate_semantic(seg, ds, names, **options)


def evaluate_semantic(
    seg: Segmenter,
    ds: Any,
    class_names: dict[str, list[str]],
    zero_shot: bool = False,
    confidence_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    max_images: int = 0,
    shard: Shard | None = None,
) -> dict[str, Any]:
    """Semantic segmentation mIoU from text prompts on any dataset with a ``label_map``.

    ``ds.label_map(i)`` holds 0 for background and ``k + 1`` for the k-th class of
    ``class_names`` (``ds.ignore_index``, default 255, is not counted): VOC, or COCO instances
    (``tseg.data.own.coco``).

    Args:
        class_names: ``{class: [names]}``; the maps of a class's names are merged by their maximum.
        zero_shot: Drop classes whose confidence is below ``confidence_threshold`` before the
            argmax (section 4.6); otherwise every class competes for every pixel.
        mask_threshold: A pixel is background when no kept class map exceeds it.
        max_images: Only the first N images (0: all).
        shard: Each rank predicts its share of the images; confusion matrices are summed.

    Returns:
        ``{"miou", "pixel_accuracy", "per_class_iou" {class: IoU or None}, "images", ...}``.
    """
    prompts, groups = flatten_class_names(class_names)
    threshold = confidence_threshold if zero_shot else -math.inf
    classes = ["background", *class_names]
    cm = ConfusionMatrix(len(classes), ignore_index=getattr(ds, "ignore_index", IGNORE_INDEX))
    shard = shard or Shard()
    n = _limit(len(ds), max_images)
    hits = np.zeros(2, dtype=np.int64)  # PointM over (image, class present): [hits, pairs]
    for i in shard.take(range(n)):
        m = seg.maps([ds.image(i)], prompts)[0]  # every image gets the same prompts
        probs, conf = merge_synonyms(m.probabilities, m.confidences, groups)
        labels = zero_shot_labels(conf, probs, threshold=threshold, mask_threshold=mask_threshold)
        gt = ds.label_map(i)
        cm.update(labels, gt)
        for k in np.unique(gt):
            if 0 < k <= len(probs):  # a class of the image (not background, not ignored)
                hits += (peak_inside(probs[k - 1], gt == k), 1)
    # Integer counts: the sum over ranks equals one process's matrix exactly.
    cm.matrix = np.sum(shard.gather(cm.matrix), axis=0)
    hits = np.sum(shard.gather(hits), axis=0)
    iou = cm.per_class_iou()

    def num(v: float) -> float | None:
        return round(float(v), 6) if math.isfinite(v) else None

    return {
        "miou": num(cm.miou()),
        "pixel_accuracy": num(cm.pixel_accuracy()),
        "per_class_iou": {c: num(v) for c, v in zip(classes, iou)},
        "pointm": num(hits[0] / hits[1]) if hits[1] else None,
        "images": n,
        "zero_shot": zero_shot,
        "confidence_threshold": confidence_threshold if zero_shot else None,
    }
