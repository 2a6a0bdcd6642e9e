"""Dataset-level evaluation protocols: PhraseCut per task, VOC semantic segmentation, zero-shot VOC.

- ``evaluate_phrasecut``: the official PhraseCut protocol (section 4.1): one prediction per task
  (phrase-region pair, ambiguous phrases included) at the original image size, reported as mean
  IoU over tasks, cumulative IoU and precision at IoU strictly above 0.5 / 0.7 / 0.9.
- ``evaluate_voc``: weakly supervised semantic segmentation on Pascal VOC (Table 1): the model gets
  the names of all 20 classes for every image; each pixel takes the class of highest probability,
  or background when no class map exceeds 0.5; mIoU over a dataset-level confusion matrix.
- ``evaluate_voc(zero_shot=True)``: section 4.6: classes whose confidence (sigmoid of the pooled
  score) is below a threshold (0.5) are dropped before the argmax.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data.phrasecut import PhraseCutDataset
from .data.transforms import eval_size, resize, to_tensor
from .data.voc import IGNORE_INDEX, VOC_CLASSES, VocDataset
from .data.zeroshot import flatten_class_names, load_class_names, merge_synonyms, zero_shot_labels
from .metrics_semantic import ConfusionMatrix, mask_iou, phrasecut_metrics
from .models.tseg import TSEG

__all__ = ["PROTOCOLS", "evaluate_phrasecut", "evaluate_voc", "predict_image"]

#: Names accepted by ``tseg eval --protocol``.
PROTOCOLS: tuple[str, ...] = ("pairs", "phrasecut", "voc", "voc-zeroshot")


@torch.no_grad()
def predict_image(
    model: TSEG, image: np.ndarray, text_emb: Tensor, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """One image, L text embeddings [L, D] -> probability maps [L, H, W] and confidences [L].

    The image is resized as in ``engine.evaluate`` (shorter side at the training size); the maps
    are the head's probability maps at the original size, the confidences sigmoid(pooled score).
    """
    h, w = image.shape[:2]
    patch = getattr(model.image_encoder, "patch_size", 16)
    size = eval_size(h, w, model.input_size, patch)
    x = resize(to_tensor(image), size)[None].to(device)
    enc = model.encode_image(x)
    s = model.similarity(enc["x"], text_emb.to(device))  # [1, N, L]
    conf = torch.sigmoid(model.pool(s)["scores"][0])  # [L]
    probs = model.masks_at(s, enc["grid"], (h, w))[0]  # [L, H, W]
    return probs.float().cpu().numpy(), conf.float().cpu().numpy()


def _encode_texts(model: TSEG, texts: list[str], chunk: int = 256) -> Tensor:
    parts = [model.encode_text(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0)


def _limit(n: int, max_images: int) -> int:
    return n if not max_images else min(n, max_images)


@torch.no_grad()
def evaluate_phrasecut(
    model: TSEG,
    ds: PhraseCutDataset,
    device: torch.device,
    max_images: int = 0,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Official PhraseCut metrics over every task of ``ds`` (``max_images``: the first N images).

    Each image is encoded once with its distinct task phrases; a task's prediction is its
    phrase's probability map above ``threshold``, compared with ``ds.task_mask``.
    """
    model.eval()
    n = _limit(len(ds), max_images)
    by_image: dict[int, list[Any]] = {}
    for task in ds.iter_tasks():
        if task.image_index < n:
            by_image.setdefault(task.image_index, []).append(task)
    ious: list[float] = []
    inters: list[int] = []
    unions: list[int] = []
    for i in sorted(by_image):
        tasks = by_image[i]
        phrases = list(dict.fromkeys(t.phrase for t in tasks))
        probs, _ = predict_image(model, ds.image(i), _encode_texts(model, phrases), device)
        col = {p: k for k, p in enumerate(phrases)}
        for task in tasks:
            iou, inter, union = mask_iou(
                probs[col[task.phrase]] > threshold, ds.task_mask(task.task_id)
            )
            ious.append(iou)
            inters.append(inter)
            unions.append(union)
    out = phrasecut_metrics(ious, inters, unions)
    out["images"] = float(len(by_image))
    return {k: round(v, 6) for k, v in out.items()}


@torch.no_grad()
def evaluate_voc(
    model: TSEG,
    ds: VocDataset,
    device: torch.device,
    class_names: dict[str, list[str]] | str | os.PathLike[str] | None = None,
    zero_shot: bool = False,
    confidence_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    max_images: int = 0,
) -> dict[str, Any]:
    """Pascal VOC semantic segmentation mIoU from text prompts (Table 1, or section 4.6).

    Args:
        class_names: ``{class: [names]}``, a YAML file of them, or None for the packaged
            ``voc_synonyms.yaml``; the names of a class are merged by their maximum.
        zero_shot: Drop classes whose confidence is below ``confidence_threshold`` before the
            argmax (section 4.6); otherwise all 20 classes compete for every pixel.
        mask_threshold: A pixel is background when no kept class map exceeds it.

    Returns:
        ``{"miou", "pixel_accuracy", "per_class_iou" {class: IoU or None}, "images", ...}``.
    """
    model.eval()
    names = class_names if isinstance(class_names, dict) else load_class_names(class_names)
    if list(names) != list(VOC_CLASSES[1:]):
        raise ValueError(f"class_names must map the 20 VOC classes in order: {VOC_CLASSES[1:]}")
    prompts, groups = flatten_class_names(names)
    text_emb = _encode_texts(model, prompts)
    threshold = confidence_threshold if zero_shot else -math.inf
    cm = ConfusionMatrix(len(VOC_CLASSES), ignore_index=IGNORE_INDEX)
    n = _limit(len(ds), max_images)
    for i in range(n):
        probs, conf = predict_image(model, ds.image(i), text_emb, device)
        probs, conf = merge_synonyms(probs, conf, groups)
        labels = zero_shot_labels(conf, probs, threshold=threshold, mask_threshold=mask_threshold)
        cm.update(labels, ds.label_map(i))
    iou = cm.per_class_iou()

    def num(v: float) -> float | None:
        return round(float(v), 6) if math.isfinite(v) else None

    return {
        "miou": num(cm.miou()),
        "pixel_accuracy": num(cm.pixel_accuracy()),
        "per_class_iou": {c: num(v) for c, v in zip(VOC_CLASSES, iou)},
        "images": n,
        "zero_shot": zero_shot,
        "confidence_threshold": confidence_threshold if zero_shot else None,
    }
