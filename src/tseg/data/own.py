"""``build_dataset`` for a user's own data: ``imagefolder``, ``coco_captions``, ``webdataset``, ``coco``.

Config keys: ``data.dataset`` names the format; ``data.root`` is the dataset folder
(``data.shards`` the shard pattern for ``webdataset``); ``data.train_split`` /
``data.val_split`` name the splits as in the folder or file names (``train2017``,
``val2017`` for COCO; ``train``, ``validation`` ... for an ImageFolder); ``data.image_dir``
is another folder for the COCO images and ``data.annotations`` a COCO file itself (both
relative to ``data.root`` when relative). See docs/own_data.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tseg.config import DataConfig
from tseg.data.base import DatasetError, RefDataset
from tseg.data.coco_layout import resolve_under

__all__ = ["build_own_dataset", "no_masks_reason", "override_data", "semantic_classes"]


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
    coco = cfg.dataset in ("coco", "coco_captions")
    if not cfg.root and not (coco and cfg.annotations):
        raise DatasetError(f"config key 'data.root' is empty: set it to the {cfg.dataset} folder")
    image_dir = resolve_under(cfg.root, cfg.image_dir) or None
    annotations = resolve_under(cfg.root, cfg.annotations) or None
    if cfg.dataset == "hf":
        from tseg.data.hf import HfDataset

        return HfDataset(cfg.root, name, cfg.text_column, cfg.mask_column)
    if cfg.dataset == "imagefolder":
        from tseg.data.imagefolder import ImageFolderDataset

        return ImageFolderDataset(cfg.root, name)
    if cfg.dataset == "coco_captions":
        from tseg.data.coco_captions import CocoCaptionsDataset

        return CocoCaptionsDataset(cfg.root, name, image_dir, annotations)
    if cfg.dataset == "coco":
        from tseg.data.coco import CocoDataset

        return CocoDataset(cfg.root, name, image_dir, annotations)
    raise DatasetError(f"config key 'data.dataset' = {cfg.dataset!r}: not a user data format")


def no_masks_reason(cfg: DataConfig, split: str) -> str | None:
    """Why split ``split`` of ``cfg`` has no masks to evaluate on, or None when it has them.

    The weak formats never hold masks; an ``hf`` split has them when it exists and has a mask
    column (``tseg.data.hf``).
    """
    from tseg.data import WEAK_DATASETS

    elsewhere = "evaluate the checkpoint on data with masks: tseg eval CHECKPOINT --dataset coco --dataset-root FOLDER"
    if cfg.dataset in WEAK_DATASETS:
        return f"data.dataset={cfg.dataset} has no masks; {elsewhere}"
    if cfg.dataset != "hf":
        return None
    from tseg.data.hf import HfDataset

    name = {"train": cfg.train_split, "val": cfg.val_split}.get(split, split)
    try:
        ds = HfDataset(cfg.root, name, cfg.text_column, cfg.mask_column)
    except DatasetError as e:
        if "no split" not in str(e):
            raise
        return f"data.dataset=hf: {e}; {elsewhere}"
    if ds.mask_column is None:
        return f"data.dataset=hf: {ds.source} has no mask column; {elsewhere}"
    return None


def override_data(
    data: DataConfig,
    dataset: str | None,
    root: str | None,
    image_dir: str | None = None,
    annotations: str | None = None,
) -> DataConfig:
    """A checkpoint's data config pointed at other data (``tseg eval --dataset --dataset-root``,
    ``--annotations FILE``).

    Raises:
        DatasetError: ``dataset`` is given without ``root`` or ``annotations``.
    """
    if not (dataset or root or image_dir or annotations):
        return data
    if dataset and dataset != data.dataset and not (root or annotations):
        raise DatasetError(
            f"--dataset {dataset}: give its folder with --dataset-root (or a COCO file with "
            "--annotations)"
        )
    changes: dict[str, Any] = {"dataset": dataset or data.dataset}
    if root or annotations:
        # the checkpoint's data.root must not prefix another dataset's relative paths
        changes["shards" if changes["dataset"] == "webdataset" else "root"] = root or ""
    if image_dir is not None or dataset:
        changes["image_dir"] = image_dir or ""
    if annotations is not None or dataset or root:
        changes["annotations"] = annotations or ""
    return replace(data, **changes)


def semantic_classes(ds: Any, classes_file: str | None = None) -> dict[str, list[str]]:
    """The classes of the semantic protocol on ``ds`` -> {class: names given to the model}.

    VOC: the 20 classes (names from the packaged synonyms or ``classes_file``). A dataset with
    ``class_names`` (COCO): each class its own name, or the names in ``classes_file`` (a YAML
    mapping every class to a list of names).

    Raises:
        DatasetError: ``ds`` has no per-class label map, or the file does not fit its classes.
    """
    from tseg.data.voc import VocDataset
    from tseg.data.zeroshot import load_class_names

    if isinstance(ds, VocDataset):
        return load_class_names(classes_file)
    names = getattr(ds, "class_names", None)
    if names is None or not callable(getattr(ds, "label_map", None)):
        raise DatasetError(
            f"the semantic protocol needs a dataset with per-class masks (coco, voc); "
            f"{type(ds).__name__} has none"
        )
    if classes_file:
        return load_class_names(classes_file, classes=tuple(names))
    return {c: [c] for c in names}
