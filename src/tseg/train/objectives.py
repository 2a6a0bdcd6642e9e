"""Training objectives: ``train.mode`` -> what the data pipeline yields and the loss of a batch.

An objective's ``loss(model, batch, device)`` returns ``{"loss": scalar, ...}``, computed in
float32 whatever autocast left the scores in. Adding one is a function and an entry in
``OBJECTIVES`` (as pooling heads are in ``tseg.models.pooling.HEADS``).

- weak: multi-label soft-margin loss of the pooled scores against in-batch expression targets
  (section 3.3); the data path never reads a mask.
- full: Dice on the upsampled similarity of each (image, expression) pair (eq. 9).
- box: each patch of a pair learns whether it lies inside the expression's box (Table 2e).
- pseudo: the student of self-training (``tseg.selftrain``): Dice and/or BCE against the pseudo
  masks of ``data.pseudo_masks``, their ignore pixels left out, plus ``train.weak_weight`` x the
  weak loss; the data path reads pseudo masks only, never the dataset's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import distributed
from ..config import Config, TrainConfig
from ..data import RefDataset
from ..data.pipeline import (
    BoxCollate,
    TfidfSimilarity,
    WeakCollate,
    box_patch_targets,
    collate_full,
    collate_pseudo,
)
from ..models.tseg import TSEG
from .losses import bce_loss, box_loss, dice_loss, soft_margin_loss


def weak_loss(model: TSEG, batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """Soft-margin loss of every image's scores against the batch's texts, [B, L]."""
    images = batch["images"].to(device, non_blocking=True)
    img = model.encode_image(images)
    y = model.encode_text(batch["texts"])  # [L_rank, D], this process's texts
    if "gather_index" in batch:  # global negatives (see with_global_negatives)
        y = distributed.gather_rows(y, batch["gather_width"], batch["gather_index"])  # [L, D]
    scores = model.pool(model.similarity(img["x"], y))["scores"]  # [B, L]
    return {"loss": soft_margin_loss(scores.float(), batch["targets"].to(device))}


def _pair_similarities(
    model: TSEG, images: Tensor, batch: dict[str, Any], device: torch.device
) -> tuple[Tensor, tuple[int, int]]:
    """The similarities of the batch's (image, expression) pairs: [P, N] and the patch grid."""
    img = model.encode_image(images)
    y = model.encode_text(batch["texts"])
    s = model.similarity(img["x"], y)  # [B, N, L]
    pairs = batch["pairs"].to(device)
    return s[pairs[:, 0], :, pairs[:, 1]], tuple(img["grid"])  # [P, N], row-major grid order


def full_loss(model: TSEG, batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """Dice between each pair's upsampled similarity and its ground-truth mask [P, H, W]."""
    images = batch["images"].to(device, non_blocking=True)
    s_pairs, (h, w) = _pair_similarities(model, images, batch, device)
    s_pairs = s_pairs.view(-1, 1, h, w)  # [P, 1, h, w]
    size = batch["masks"].shape[-2:]
    logits = F.interpolate(s_pairs.float(), size=size, mode="bilinear", align_corners=False)
    return {"loss": dice_loss(logits[:, 0], batch["masks"].to(device))}  # [P, H, W]


def pseudo_loss(
    model: TSEG, batch: dict[str, Any], device: torch.device, tc: TrainConfig | None = None
) -> dict[str, Tensor]:
    """The student's loss on pseudo masks [P, H, W] whose ignore pixels are left out
    (``tc``: train.pseudo_loss and train.weak_weight; default: Dice alone)."""
    tc = tc or TrainConfig()
    images = batch["images"].to(device, non_blocking=True)
    img = model.encode_image(images)
    y = model.encode_text(batch["texts"])
    s = model.similarity(img["x"], y)  # [B, N, L]
    pairs = batch["pairs"].to(device)
    h, w = img["grid"]
    s_pairs = s[pairs[:, 0], :, pairs[:, 1]].view(-1, 1, h, w)  # [P, 1, h, w]
    target = batch["masks"].to(device)
    size = target.shape[-2:]
    logits = F.interpolate(s_pairs.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    valid = ~batch["ignore"].to(device) if "ignore" in batch else None  # [P, H, W]
    out: dict[str, Tensor] = {}
    if "dice" in tc.pseudo_loss:
        out["dice"] = dice_loss(logits, target, valid=valid)
    if "bce" in tc.pseudo_loss:
        out["bce"] = bce_loss(logits, target, valid)
    loss = sum(out.values())
    if tc.weak_weight > 0:
        out["weak"] = soft_margin_loss(model.pool(s)["scores"].float(), batch["targets"].to(device))
        loss = loss + tc.weak_weight * out["weak"]
    return {"loss": loss, **out}


def box_objective(model: TSEG, batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """Binary cross-entropy of each pair's patch similarities against "inside its box" [P, N]."""
    images = batch["images"].to(device, non_blocking=True)
    s_pairs, grid = _pair_similarities(model, images, batch, device)
    targets = batch["box_masks"]
    if tuple(targets.shape[-2:]) != grid:  # the encoder's grid is not size / patch_size
        patch = images.shape[-2] / grid[0]
        targets = box_patch_targets(batch["boxes"], grid, patch)
    return {"loss": box_loss(s_pairs.float(), targets.flatten(1).to(device))}


def _weak_collate(cfg: Config, ds: RefDataset, n: int, world_size: int) -> Callable:
    tfidf = None
    if cfg.train.ground_truth == "tfidf":
        tfidf = TfidfSimilarity(tfidf_corpus(ds, n))
    # Global negatives recompute targets over all ranks' texts, from each image's expressions.
    keep_own = world_size > 1 and cfg.train.ddp_negatives == "global"
    return WeakCollate(tfidf, keep_own=keep_own)


def tfidf_corpus(ds: RefDataset, n: int, limit: int = 2000) -> list[str]:
    """The expressions of the first training images, for tf-idf ground truth (Table 2c)."""
    texts: list[str] = []
    for i in range(min(n, limit)):
        texts.extend(ds.expressions(i))
    return texts


@dataclass(frozen=True)
class Objective:
    """A training objective: its loss and the batches it needs."""

    loss: Callable[[TSEG, dict[str, Any], torch.device], dict[str, Tensor]]
    reads: str  # what the training set yields besides images and expressions: "", masks, boxes
    # (cfg, training dataset, images used, processes) -> the DataLoader's collate_fn
    collate: Callable[[Config, RefDataset, int, int], Callable]


OBJECTIVES: dict[str, Objective] = {
    "weak": Objective(weak_loss, "", _weak_collate),
    "full": Objective(full_loss, "masks", lambda cfg, ds, n, world: collate_full),
    "box": Objective(
        box_objective, "boxes", lambda cfg, ds, n, world: BoxCollate(cfg.model.image.patch_size)
    ),
    "pseudo": Objective(pseudo_loss, "masks", lambda cfg, ds, n, world: collate_pseudo),
}


def with_global_negatives(batch: dict[str, Any], collate: WeakCollate) -> dict[str, Any]:
    """A weak batch scored against the expressions of every process's batch (global negatives).

    The candidates become the union of all ranks' texts, deduplicated in rank order: the L texts
    one process holding the whole global batch would have. Targets are recomputed over them from
    each image's annotated expressions, since an image's positive may sit in another rank's batch.
    """
    texts, width, index = distributed.union_in_rank_order(batch["texts"])
    return {
        **batch,
        "targets": collate.targets(batch["own"], texts),  # [B, L]
        "gather_width": width,
        "gather_index": index,
    }


class TrainObjective(nn.Module):
    """The training loss as a module, ``forward(batch, device) -> {"loss": ...}``.

    DistributedDataParallel synchronises the gradients of what runs inside its wrapped module's
    forward, and the loss calls several TSEG methods, so the whole objective is that module.
    """

    def __init__(self, model: TSEG, mode: str, cfg: TrainConfig | None = None) -> None:
        super().__init__()
        self.model = model
        loss = OBJECTIVES[mode].loss
        # The student's loss has options (train.pseudo_loss, train.weak_weight).
        self.loss = partial(loss, tc=cfg) if mode == "pseudo" else loss

    def forward(self, batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
        return self.loss(self.model, batch, device)
