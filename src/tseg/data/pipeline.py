"""From a RefDataset to training batches.

Weak mode reads images and expressions only: ``TrainSet`` never calls ``masks()``, and
its batches carry no mask. Full mode reads the masks of the sampled positives. Box mode
(COCO box pretraining, Table 2e) reads the boxes of the sampled positives, never a mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..config import DataConfig
from .base import DatasetError, RefDataset, normalize_expression, swap_left_right
from .transforms import View, apply_view, sample_view, to_tensor, transform_boxes


def sample_rng(seed: int, epoch: int, idx: int) -> np.random.Generator:
    """Per-sample randomness from (seed, epoch, index): the same sample gets the same augmentation
    however the data is split across workers or processes, so an interrupted run can resume exactly."""
    return np.random.default_rng([seed, epoch, idx])


def weak_item(
    image: np.ndarray, exprs: list[str], cfg: DataConfig, rng: np.random.Generator
) -> tuple[dict[str, Any], View, list[int]]:
    """One augmented sample from an image and its expressions -> (item, view, picked indices).

    The item holds "image" [3, S, S], "all" (every expression, normalised, "left"/"right" swapped
    when flipped) and "sampled" (about ``cfg.expressions_per_image`` of them). The random view
    and the picked indices are returned so that masks or boxes can follow the same geometry.
    Randomness is drawn from ``rng`` in a fixed order: the picks, then the view.
    """
    k = min(len(exprs), cfg.expressions_per_image)
    pick = sorted(rng.choice(len(exprs), size=k, replace=False).tolist())
    tensor = to_tensor(image)
    view = sample_view(
        tensor.shape[-2],
        tensor.shape[-1],
        cfg.image_size,
        (cfg.scale_min, cfg.scale_max),
        cfg.hflip,
        rng,
    )
    fix = swap_left_right if view.flipped else (lambda t: t)
    item: dict[str, Any] = {
        "image": apply_view(tensor, view),
        "all": [normalize_expression(fix(e)) for e in exprs],
        "sampled": [normalize_expression(fix(exprs[j])) for j in pick],
    }
    return item, view, pick


class TrainSet(Dataset):
    """Augmented training samples with about ``expressions_per_image`` sampled positives each."""

    def __init__(
        self,
        ds: RefDataset,
        cfg: DataConfig,
        seed: int,
        with_masks: bool,
        with_boxes: bool = False,
    ) -> None:
        if with_masks and with_boxes:
            raise ValueError("a training set yields masks or boxes, not both")
        if with_boxes and not callable(getattr(ds, "boxes", None)):
            raise DatasetError(
                f"train.mode=box needs box annotations, but dataset {cfg.dataset!r} "
                f"({type(ds).__name__}) has no boxes(); box pretraining works on "
                "refcoco, refcoco+, refcocog and phrasecut"
            )
        self.ds = ds
        self.cfg = cfg
        self.seed = seed
        self.with_masks = with_masks
        self.with_boxes = with_boxes
        n = max(1, int(round(len(ds) * cfg.train_fraction)))
        # Table 2d: a fixed prefix of the training set, less images without any expression
        # (weak training has nothing to learn from them; `shapes` with disjoint expressions has
        # a few, where two objects share colour and shape).
        self.indices = [i for i in range(n) if ds.expressions(i)]
        if not self.indices:
            raise DatasetError(f"none of the {n} training images has an expression")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        idx = self.indices[i]
        rng = sample_rng(self.seed, self.epoch, idx)
        exprs = self.ds.expressions(idx)
        if not exprs:
            raise ValueError(f"training image {idx} has no expressions")
        item, view, pick = weak_item(self.ds.image(idx), exprs, self.cfg, rng)
        if self.with_masks:
            masks = torch.from_numpy(np.ascontiguousarray(self.ds.masks(idx)[pick]))
            item["masks"] = apply_view(masks, view, masks=True)
            if callable(getattr(self.ds, "ignore", None)):  # pseudo masks' uncertain pixels
                ignore = torch.from_numpy(np.ascontiguousarray(self.ds.ignore(idx)[pick]))
                item["ignore"] = apply_view(ignore, view, masks=True)
        if self.with_boxes:
            boxes = np.asarray(self.ds.boxes(idx), dtype=np.float64)[pick]
            item["boxes"] = torch.from_numpy(transform_boxes(boxes, view)).float()
        return item


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch; ``set_epoch`` chooses it (as DistributedSampler does).

    With ``world_size`` > 1 every process draws the same permutation and cuts it into global
    batches of ``batch_size * world_size`` indices; process ``rank`` takes the ``rank``-th slice
    of ``batch_size`` from each. So the processes' batches are disjoint, and together they are
    exactly the batch one process with ``batch_size * world_size`` would see. With several
    processes an incomplete last global batch is dropped (as ``drop_last`` does); a single
    process yields the whole permutation and leaves batching to the DataLoader.
    """

    def __init__(
        self, n: int, seed: int, rank: int = 0, world_size: int = 1, batch_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.start = 0  # skip this many indices of the epoch's permutation (resuming mid-epoch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng([self.seed, 7919, self.epoch]).permutation(self.n).tolist()
        order = order[self.start :]
        if self.world_size == 1:
            return iter(order)
        b, g = self.batch_size, self.batch_size * self.world_size
        lo = self.rank * b
        return iter(i for k in range(len(order) // g) for i in order[k * g + lo : k * g + lo + b])

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n - self.start
        return (self.n - self.start) // (self.batch_size * self.world_size) * self.batch_size


def batch_texts(items: Sequence[dict[str, Any]]) -> list[str]:
    """The batch's sampled expressions, deduplicated, in first-seen order: the L texts."""
    seen: dict[str, None] = {}
    for it in items:
        for t in it["sampled"]:
            seen.setdefault(t, None)
    return list(seen)


class WeakCollate:
    """Batch for weak training: {"images" [B,3,S,S], "texts" (L), "targets" [B, L]} and no mask.

    The target of (image i, text j) is 1 when text j equals any expression annotated for image i,
    not only its sampled ones (the paper's identity ground truth), or, with tf-idf, the largest
    tf-idf cosine similarity between text j and the image's expressions (Table 2c).
    ``keep_own`` adds "own": each image's annotated expressions, so targets can be recomputed
    over another candidate set (the texts of every process's batch, see ``targets``).
    """

    def __init__(self, tfidf: TfidfSimilarity | None = None, keep_own: bool = False) -> None:
        self.tfidf = tfidf
        self.keep_own = keep_own

    def targets(self, own: Sequence[Sequence[str]], texts: Sequence[str]) -> torch.Tensor:
        """[B, L] targets of B images (their annotated expressions ``own``) against ``texts``."""
        out = torch.zeros(len(own), len(texts))
        for i, exprs in enumerate(own):
            if self.tfidf is None:
                mine = set(exprs)
                out[i] = torch.tensor([float(t in mine) for t in texts])
            else:
                out[i] = torch.from_numpy(self.tfidf.max_similarity(texts, exprs))
        return out

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        texts = batch_texts(items)
        own = [it["all"] for it in items]
        batch = {
            "images": torch.stack([it["image"] for it in items]),
            "texts": texts,
            "targets": self.targets(own, texts),
        }
        if self.keep_own:
            batch["own"] = own
        return batch


def collate_full(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch for full supervision: texts, (image, text) positive pairs [P, 2] and masks [P, S, S]
    (and "ignore" [P, S, S] where the items carry it: pseudo masks)."""
    texts = batch_texts(items)
    col = {t: j for j, t in enumerate(texts)}
    pairs, masks = [], []
    for i, it in enumerate(items):
        for t, m in zip(it["sampled"], it["masks"]):
            pairs.append((i, col[t]))
            masks.append(m)
    batch = {
        "images": torch.stack([it["image"] for it in items]),
        "texts": texts,
        "pairs": torch.tensor(pairs, dtype=torch.long),
        "masks": torch.stack(masks),
    }
    if "ignore" in items[0]:
        batch["ignore"] = torch.cat([it["ignore"] for it in items])  # [P, S, S]
    return batch


def collate_pseudo(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``collate_full`` plus the weak targets [B, L] of the batch's texts (for train.weak_weight)."""
    batch = collate_full(items)
    batch["targets"] = WeakCollate().targets([it["all"] for it in items], batch["texts"])
    return batch


def box_patch_targets(boxes: torch.Tensor, grid: tuple[int, int], patch: float) -> torch.Tensor:
    """Boxes [P, 4] (x, y, w, h in input pixels) -> [P, h, w] float, 1 where a patch's centre is inside.

    Patch (i, j) has its centre at ((j + 0.5) * patch, (i + 0.5) * patch); inside means
    x <= cx < x + w and y <= cy < y + h.
    """
    gh, gw = grid
    cy = (torch.arange(gh, dtype=torch.float32) + 0.5) * patch  # [h]
    cx = (torch.arange(gw, dtype=torch.float32) + 0.5) * patch  # [w]
    b = boxes.float().view(-1, 4, 1)
    in_x = (cx >= b[:, 0]) & (cx < b[:, 0] + b[:, 2])  # [P, w]
    in_y = (cy >= b[:, 1]) & (cy < b[:, 1] + b[:, 3])  # [P, h]
    return (in_y[:, :, None] & in_x[:, None, :]).float()


class BoxCollate:
    """Batch for box pretraining: texts, positive pairs [P, 2], boxes [P, 4] and box masks.

    ``box_masks`` [P, h, w] is the patch-level target on a ``ceil(S / patch)`` grid: 1 where the
    patch centre lies inside the (augmented) box of the pair's expression.
    """

    def __init__(self, patch_size: int) -> None:
        self.patch_size = patch_size

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        texts = batch_texts(items)
        col = {t: j for j, t in enumerate(texts)}
        pairs, boxes = [], []
        for i, it in enumerate(items):
            for t, b in zip(it["sampled"], it["boxes"]):
                pairs.append((i, col[t]))
                boxes.append(b)
        images = torch.stack([it["image"] for it in items])
        size = images.shape[-2:]
        grid = (math.ceil(size[0] / self.patch_size), math.ceil(size[1] / self.patch_size))
        box_t = torch.stack(boxes)
        return {
            "images": images,
            "texts": texts,
            "pairs": torch.tensor(pairs, dtype=torch.long),
            "boxes": box_t,
            "box_masks": box_patch_targets(box_t, grid, self.patch_size),
        }


class TfidfSimilarity:
    """tf-idf cosine similarity between expressions, idf fitted on a training corpus."""

    def __init__(self, corpus: Sequence[str]) -> None:
        docs = [set(normalize_expression(t).split()) for t in corpus]
        vocab = sorted(set().union(*docs)) if docs else []
        self.index = {w: i for i, w in enumerate(vocab)}
        df = np.zeros(len(vocab))
        for d in docs:
            for w in d:
                df[self.index[w]] += 1
        self.idf = np.log((1 + len(docs)) / (1 + df)) + 1.0  # smoothed idf

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        v = np.zeros((len(texts), len(self.idf) + 1))  # last column: out-of-vocabulary words
        for i, t in enumerate(texts):
            for w in normalize_expression(t).split():
                j = self.index.get(w, len(self.idf))
                v[i, j] += self.idf[j] if j < len(self.idf) else 1.0
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.maximum(n, 1e-12)

    def max_similarity(self, texts: Sequence[str], own: Sequence[str]) -> np.ndarray:
        """[len(texts)] float32: for each text, its best cosine similarity with any of ``own``."""
        sim = self.vectors(texts) @ self.vectors(own).T  # [L, K]
        exact = np.array([[float(t == o) for o in own] for t in texts])
        return np.maximum(sim, exact).max(axis=1).astype(np.float32)
