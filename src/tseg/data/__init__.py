"""Datasets: the built-in synthetic `shapes` set and loaders for the paper's datasets."""

from __future__ import annotations

from ..config import DataConfig
from .base import DatasetError, RefDataset, normalize_expression, swap_left_right

__all__ = [
    "WEAK_DATASETS",
    "DatasetError",
    "RefDataset",
    "build_dataset",
    "normalize_expression",
    "swap_left_right",
]


REAL_DATASETS = ("refcoco", "refcoco+", "refcocog", "grefcoco", "phrasecut", "voc")
#: A user's own data (docs/own_data.md): images with text only, and COCO instances.
WEAK_DATASETS = ("imagefolder", "coco_captions", "webdataset")
#: ``hf`` is weak unless a split has a mask column (``tseg.data.own.no_masks_reason``).
OWN_DATASETS = (*WEAK_DATASETS, "coco", "hf")


def build_dataset(cfg: DataConfig, split: str) -> RefDataset:
    """The dataset named by ``cfg.dataset`` for ``split`` ("train" and "val" follow the config).

    Expressions that refer to nothing (``data.shapes_absent``, gRefCOCO's no-target ones) are
    given to every split but "train": weak training reads every expression of an image as
    present in it.
    """
    if cfg.dataset == "shapes":
        from .shapes import ShapesDataset

        sizes = {"train": cfg.train_size, "val": cfg.val_size}
        size = sizes.get(split, cfg.test_size)
        return ShapesDataset(
            split=split,
            size=size,
            image_size=cfg.render_size or cfg.image_size,
            seed=cfg.seed,
            expressions=cfg.shapes_expressions,
            absent=cfg.shapes_absent if split != "train" else 0,
        )
    if cfg.dataset in OWN_DATASETS:
        from .own import build_own_dataset

        return build_own_dataset(cfg, split)
    if cfg.dataset not in REAL_DATASETS:
        raise DatasetError(
            f"config key 'data.dataset' = {cfg.dataset!r}: unknown dataset "
            f"(available: shapes, {', '.join(REAL_DATASETS + OWN_DATASETS)})"
        )
    if not cfg.root:
        raise DatasetError(f"config key 'data.root' is empty: set it to the {cfg.dataset} folder")
    name = {"train": cfg.train_split, "val": cfg.val_split}.get(split, split)
    from .coco_layout import resolve_under

    # relative to data.root, as every folder key of data is (tseg.data.coco_layout)
    image_dir = resolve_under(cfg.root, cfg.image_dir) or None
    if cfg.dataset.startswith("refcoco"):
        from .refcoco import RefCocoDataset

        return RefCocoDataset(cfg.root, cfg.dataset, cfg.split_by or None, name, image_dir)
    if cfg.dataset == "grefcoco":
        from .grefcoco import GRefCocoDataset

        return GRefCocoDataset(cfg.root, name, image_dir, no_target=split != "train")
    if cfg.dataset == "phrasecut":
        from .phrasecut import PhraseCutDataset

        return PhraseCutDataset(cfg.root, name, image_dir, strict=cfg.phrasecut_strict_polygons)
    from .voc import VocDataset

    return VocDataset(cfg.root, name)
