"""Datasets: the built-in synthetic `shapes` set, loaders for the paper's datasets and a user's own.

Every dataset is a ``data.dataset`` name in the registry (``tseg.data.registry``), which says how
to build it (``build_dataset``), how to check its files (``tseg.data.check``) and what kind it is.
"""

from __future__ import annotations

from ..config import DataConfig
from .base import DatasetError, RefDataset, normalize_expression, swap_left_right
from .registry import get

__all__ = [
    "DatasetError",
    "RefDataset",
    "build_dataset",
    "normalize_expression",
    "swap_left_right",
]


def build_dataset(cfg: DataConfig, split: str) -> RefDataset:
    """The dataset named by ``cfg.dataset`` for ``split`` ("train" and "val" follow the config).

    Expressions that refer to nothing (``data.shapes_absent``, gRefCOCO's no-target ones) are
    given to every split but "train": weak training reads every expression of an image as
    present in it.

    Raises:
        DatasetError: An unknown dataset (the message lists the registered ones), or what its
            loader raises.
    """
    return get(cfg.dataset).build(cfg, split)
