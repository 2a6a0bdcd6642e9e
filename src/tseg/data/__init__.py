"""Datasets: the built-in synthetic `shapes` set and loaders for the paper's datasets."""

from __future__ import annotations

from ..config import DataConfig
from .base import DatasetError, RefDataset, normalize_expression, swap_left_right

__all__ = ["DatasetError", "RefDataset", "build_dataset", "normalize_expression", "swap_left_right"]


def build_dataset(cfg: DataConfig, split: str) -> RefDataset:
    """The dataset named by ``cfg.dataset`` for ``split``."""
    if cfg.dataset == "shapes":
        from .shapes import ShapesDataset

        sizes = {"train": cfg.train_size, "val": cfg.val_size}
        size = sizes.get(split, cfg.test_size)
        return ShapesDataset(split=split, size=size, image_size=cfg.image_size, seed=cfg.seed)
    raise DatasetError(
        f"config key 'data.dataset' = {cfg.dataset!r}: unknown dataset (available: shapes)"
    )
