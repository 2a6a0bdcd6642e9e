"""Where a dataset is, from its config keys: ``data.root``, the folders under it, the split's name.

Every loader's ``build`` reads these the same way, so the messages and the rules are one: a
relative ``data.image_dir`` / ``data.annotations`` is relative to ``data.root`` (a dataset folder
moves as a whole, the working directory does not matter), and the splits "train" and "val" are
the names ``data.train_split`` / ``data.val_split`` give them.
"""

from __future__ import annotations

import os
from pathlib import Path

from tseg.config import DataConfig
from tseg.data.base import DatasetError

__all__ = ["require_root", "resolve_under", "split_name"]


def resolve_under(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> str:
    """``path`` as given when absolute or when ``root`` is empty, else ``root/path``.

    Every folder or file key of ``data`` (``data.image_dir``, ``data.annotations``) resolves this
    way, so a dataset folder moves as a whole and the working directory does not matter.
    """
    if not str(path) or not str(root) or os.path.isabs(path):
        return str(path)
    return str(Path(root) / path)


def split_name(cfg: DataConfig, split: str) -> str:
    """The name of ``split`` in the dataset's files: "train" and "val" follow the config."""
    return {"train": cfg.train_split, "val": cfg.val_split}.get(split, split)


def require_root(cfg: DataConfig) -> None:
    """Raise when ``data.root`` is empty: every loader given one reads its files under it.

    Raises:
        DatasetError: ``data.root`` is empty.
    """
    if not cfg.root:
        raise DatasetError(f"config key 'data.root' is empty: set it to the {cfg.dataset} folder")
