"""``build_dataset`` for a user's own data: ``imagefolder``, ``coco_captions``, ``webdataset``, ``coco``.

Config keys: ``data.dataset`` names the format; ``data.root`` is the dataset folder
(``data.shards`` the shard pattern for ``webdataset``); ``data.train_split`` /
``data.val_split`` name the splits as in the folder or file names (``train2017``,
``val2017`` for COCO; ``train``, ``validation`` ... for an ImageFolder); ``data.image_dir``
moves the COCO images out of ``<root>/<split>``. See docs/own_data.md.
"""

from __future__ import annotations

from tseg.config import DataConfig
from tseg.data.base import DatasetError, RefDataset

__all__ = ["build_own_dataset"]


def build_own_dataset(cfg: DataConfig, split: str) -> RefDataset:
    """The dataset ``cfg.dataset`` (one of ``tseg.data.OWN_DATASETS``) for ``split``."""
    name = {"train": cfg.train_split, "val": cfg.val_split}.get(split, split)
    if cfg.dataset == "webdataset":
        if split not in ("train", cfg.train_split):
            raise DatasetError(
                f"data.dataset=webdataset: data.shards holds the training data; there is no "
                f"split {split!r} (evaluate on data with masks, e.g. --dataset coco)"
            )
        from tseg.data.shards import ShardDataset

        return ShardDataset(cfg.shards)
    if not cfg.root:
        raise DatasetError(f"config key 'data.root' is empty: set it to the {cfg.dataset} folder")
    if cfg.dataset == "imagefolder":
        from tseg.data.imagefolder import ImageFolderDataset

        return ImageFolderDataset(cfg.root, name)
    if cfg.dataset == "coco_captions":
        from tseg.data.coco_captions import CocoCaptionsDataset

        return CocoCaptionsDataset(cfg.root, name, cfg.image_dir or None)
    if cfg.dataset == "coco":
        from tseg.data.coco import CocoDataset

        return CocoDataset(cfg.root, name, cfg.image_dir or None)
    raise DatasetError(f"config key 'data.dataset' = {cfg.dataset!r}: not a user data format")
