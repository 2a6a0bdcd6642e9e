"""From a RefDataset to training batches.

Weak mode reads images and expressions only: ``WeakTrainSet`` never calls ``masks()``, and
its batches carry no mask. Full mode reads the masks of the sampled positives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..config import DataConfig
from .base import RefDataset, normalize_expression, swap_left_right
from .transforms import random_view, to_tensor


def sample_rng(seed: int, epoch: int, idx: int) -> np.random.Generator:
    """Per-sample randomness from (seed, epoch, index): the same sample gets the same augmentation
    however the data is split across workers or processes, so an interrupted run can resume exactly."""
    return np.random.default_rng([seed, epoch, idx])


class TrainSet(Dataset):
    """Augmented training samples with about ``expressions_per_image`` sampled positives each."""

    def __init__(self, ds: RefDataset, cfg: DataConfig, seed: int, with_masks: bool) -> None:
        self.ds = ds
        self.cfg = cfg
        self.seed = seed
        self.with_masks = with_masks
        n = max(1, int(round(len(ds) * cfg.train_fraction)))
        self.indices = list(range(n))  # Table 2d: a fixed prefix of the training set
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
        k = min(len(exprs), self.cfg.expressions_per_image)
        pick = sorted(rng.choice(len(exprs), size=k, replace=False).tolist())
        masks = None
        if self.with_masks:
            masks = torch.from_numpy(np.ascontiguousarray(self.ds.masks(idx)[pick]))
        image, masks, flipped = random_view(
            to_tensor(self.ds.image(idx)),
            masks,
            self.cfg.image_size,
            (self.cfg.scale_min, self.cfg.scale_max),
            self.cfg.hflip,
            rng,
        )
        fix = swap_left_right if flipped else (lambda t: t)
        item: dict[str, Any] = {
            "image": image,
            "all": [normalize_expression(fix(e)) for e in exprs],
            "sampled": [normalize_expression(fix(exprs[j])) for j in pick],
        }
        if masks is not None:
            item["masks"] = masks
        return item


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch; ``set_epoch`` chooses it (as DistributedSampler does)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(
            np.random.default_rng([self.seed, 7919, self.epoch]).permutation(self.n).tolist()
        )

    def __len__(self) -> int:
        return self.n


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
    """

    def __init__(self, tfidf: TfidfSimilarity | None = None) -> None:
        self.tfidf = tfidf

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        texts = batch_texts(items)
        targets = torch.zeros(len(items), len(texts))
        for i, it in enumerate(items):
            if self.tfidf is None:
                own = set(it["all"])
                targets[i] = torch.tensor([float(t in own) for t in texts])
            else:
                targets[i] = torch.from_numpy(self.tfidf.max_similarity(texts, it["all"]))
        return {
            "images": torch.stack([it["image"] for it in items]),
            "texts": texts,
            "targets": targets,
        }


def collate_full(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch for full supervision: texts, (image, text) positive pairs [P, 2] and masks [P, S, S]."""
    texts = batch_texts(items)
    col = {t: j for j, t in enumerate(texts)}
    pairs, masks = [], []
    for i, it in enumerate(items):
        for t, m in zip(it["sampled"], it["masks"]):
            pairs.append((i, col[t]))
            masks.append(m)
    return {
        "images": torch.stack([it["image"] for it in items]),
        "texts": texts,
        "pairs": torch.tensor(pairs, dtype=torch.long),
        "masks": torch.stack(masks),
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
