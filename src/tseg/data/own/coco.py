"""COCO instance annotations as evaluation data (``data.dataset=coco``); category names are the text.

Expected files (``root`` is the COCO folder, ``data.root``; ``split`` e.g. ``val2017``)::

    <root>/annotations/instances_<split>.json   images (id, file_name, height, width),
                                                categories (id, name), annotations (id,
                                                image_id, category_id, segmentation, iscrowd)
    <root>/<split>/<file_name>                  the images (``data.image_dir``: another folder)

or the files of the annotation tools (CVAT, Roboflow, labelme2coco, Label Studio), or one file
given as ``data.annotations`` (``tseg.data.own.coco_layout`` says where each looks for images).

Segmentations may be polygons, uncompressed RLE (as crowd regions are stored) or compressed
RLE; pycocotools decodes them (``tseg.data.paper.refcoco.decode_segmentation``, which validates them
first).

One item per image that has at least one annotation. Its expressions are the names of the
categories present, in the order of ``categories``, and the mask of a name is the union of
every instance of that category in the image, crowd regions included. Why the union and not
one pair per instance: the text "person" refers to every person in the picture, so a model
given "person" should segment them all; one pair per instance would give the same text two
different ground truths, the ambiguity the RefCOCO loader drops. This is also exactly the
per-class mask of semantic segmentation, so ``label_map`` (one class per pixel: 0 background,
``k + 1`` for the k-th category, 255 where instances of two categories overlap, since no single
class is then the truth) serves the semantic and zero-shot protocols as VOC's label PNGs do.

``tseg eval CHECKPOINT --dataset coco --dataset-root ROOT --split val2017`` scores the pairs
(image, category name); ``--protocol semantic`` (or ``semantic-zeroshot``) gives every image all
category names and reports mIoU over a dataset-level confusion matrix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError, normalize_expression
from tseg.data.files import join_inside, load_json, read_rgb
from tseg.data.paper.refcoco import decode_segmentation
from tseg.data.paths import require_root, resolve_under, split_name

__all__ = [
    "IGNORE_INDEX",
    "CocoDataset",
    "CocoImage",
    "CocoItems",
    "annotation_path",
    "build",
    "coco_location",
    "existing_images",
    "image_folder",
    "index_images",
    "load_coco_json",
    "missing_image",
]

IGNORE_INDEX = 255


def annotation_path(root: str | os.PathLike[str], kind: str, split: str) -> Path:
    """``<root>/annotations/<kind>_<split>.json`` (kind: ``instances`` or ``captions``)."""
    return Path(root) / "annotations" / f"{kind}_{split}.json"


def image_folder(root: str | os.PathLike[str], split: str, image_dir: str | None = None) -> Path:
    """``image_dir`` when given, else ``<root>/<split>`` (COCO's ``val2017/`` beside ``annotations/``)."""
    return Path(image_dir) if image_dir else Path(root) / split


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def load_coco_json(path: Path, lists: tuple[str, ...]) -> dict[str, Any]:
    """Read a COCO JSON file and check that it is an object holding the lists ``lists``.

    Raises:
        DatasetError: Missing or malformed file, or a missing list (naming the key).
    """
    data = load_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with {', '.join(lists)}")
    for key in lists:
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing list '{key}'")
    return data


@dataclass(frozen=True)
class CocoImage:
    """One entry of ``images``: its id, file and (when given) size."""

    image_id: int
    path: Path
    height: int | None
    width: int | None
    looked: tuple[Path, ...] = ()  # the folders searched for the file (for a not-found message)


def index_images(
    images: list[Any], json_path: Path, image_dir: Path | Sequence[Path], need_size: bool
) -> dict[int, CocoImage]:
    """``images`` -> {id: CocoImage}, each field checked; ``file_name`` is looked up in each
    folder of ``image_dir`` in turn (``tseg.data.own.coco_layout``), the first holding it wins.

    Raises:
        DatasetError: A malformed entry, a repeated id, or (``need_size``) no height / width;
            the message names ``images[i]``.
    """
    dirs = [image_dir] if isinstance(image_dir, Path) else list(image_dir)
    out: dict[int, CocoImage] = {}
    for i, im in enumerate(images):
        where = f"{json_path}: images[{i}]"
        if not isinstance(im, dict):
            raise DatasetError(f"{where} is not an object")
        if not _is_int(im.get("id")):
            raise DatasetError(f"{where}: field 'id' must be an integer, got {im.get('id')!r}")
        if im["id"] in out:
            raise DatasetError(f"{where}: image id {im['id']} is listed twice")
        paths = [join_inside(d, im.get("file_name"), where=f"{where} 'file_name'") for d in dirs]
        path = next((p for p in paths if p.is_file()), paths[0]) if len(paths) > 1 else paths[0]
        h, w = im.get("height"), im.get("width")
        sized = _is_int(h) and _is_int(w) and h > 0 and w > 0
        if need_size and not sized:
            raise DatasetError(f"{where}: fields 'height' and 'width' must be positive integers")
        out[im["id"]] = CocoImage(
            im["id"], path, h if sized else None, w if sized else None, tuple(dirs)
        )
    return out


def existing_images(
    images: dict[int, CocoImage], ids: list[int], json_path: Path
) -> list[CocoImage]:
    """The entries of ``ids`` (sorted), each of whose files must exist.

    Raises:
        DatasetError: An image file is missing (naming the annotation file and image id).
    """
    out = []
    for image_id in sorted(ids):
        im = images[image_id]
        if not im.path.is_file():
            raise DatasetError(f"{json_path}: image id {image_id}: {missing_image(im)}")
        out.append(im)
    return out


def missing_image(im: CocoImage) -> str:
    """ "file X not found" and, when several folders were searched, which."""
    if len(im.looked) < 2:
        return f"file {im.path} not found"
    name = im.path.relative_to(im.looked[0])
    return f"file {name} not found (looked in {', '.join(f'{d}/' for d in im.looked)})"


class CocoItems:
    """Items (``CocoImage``, annotations) of a COCO file: length and image access."""

    _items: list[tuple[CocoImage, Any]]

    def __len__(self) -> int:
        return len(self._items)

    def image_path(self, idx: int) -> Path:
        """The image file of item ``idx``."""
        return self._items[idx][0].path

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 [H, W, 3] (checked against the annotated size when there is one)."""
        im = self._items[idx][0]
        return read_rgb(im.path, size=(im.height, im.width) if im.height is not None else None)


class CocoDataset(CocoItems):
    """COCO instances: one item per annotated image, one expression per category present.

    Args:
        root: The dataset folder, in any layout of ``tseg.data.own.coco_layout`` (COCO's
            ``annotations/instances_<split>.json``, CVAT, Roboflow, labelme2coco, Label Studio).
        split: The split, e.g. ``val2017`` (``instances_val2017.json``).
        image_dir: Another folder to look for images in, after the layout's.
        annotations: The instances file itself (its ``file_name`` relative to its folder).

    Raises:
        DatasetError: A missing or malformed file, an annotation naming an unknown image or
            category, or a missing image file (each message names the file and entry).
    """

    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val2017",
        image_dir: str | None = None,
        annotations: str | None = None,
    ) -> None:
        from tseg.data.own.coco_layout import coco_source

        self.root = Path(root)
        self.split = split
        src = coco_source(root, "instances", split, annotations, image_dir)
        self.json_path, self.image_dirs, self.layout = src.json_path, src.image_dirs, src.layout
        data = load_coco_json(self.json_path, ("images", "annotations", "categories"))
        images = index_images(data["images"], self.json_path, self.image_dirs, need_size=True)
        self._categories: dict[int, int] = {}  # category id -> index in class_names
        names: list[str] = []
        seen: dict[str, int] = {}
        for i, cat in enumerate(data["categories"]):
            where = f"{self.json_path}: categories[{i}]"
            if not isinstance(cat, dict) or not _is_int(cat.get("id")):
                raise DatasetError(f"{where}: expected an object with an integer 'id'")
            name = cat.get("name")
            if not isinstance(name, str) or not normalize_expression(name):
                raise DatasetError(f"{where}: field 'name' must be a non-empty string")
            key = normalize_expression(name)
            if cat["id"] in self._categories or key in seen:
                raise DatasetError(f"{where}: category id {cat['id']} or name {name!r} repeats")
            seen[key] = cat["id"]
            self._categories[cat["id"]] = len(names)
            names.append(name.strip())
        self.class_names: tuple[str, ...] = tuple(names)

        by_image: dict[int, list[dict[str, Any]]] = {}
        for i, ann in enumerate(data["annotations"]):
            where = f"{self.json_path}: annotations[{i}]"
            if not isinstance(ann, dict):
                raise DatasetError(f"{where} is not an object")
            where += f" (id {ann.get('id')!r})"
            for key in ("image_id", "category_id"):
                if not _is_int(ann.get(key)):
                    raise DatasetError(f"{where}: field '{key}' must be an integer")
            if ann["image_id"] not in images:
                raise DatasetError(
                    f"{where}: image_id {ann['image_id']} is not in 'images' of {self.json_path}"
                )
            if ann["category_id"] not in self._categories:
                raise DatasetError(
                    f"{where}: category_id {ann['category_id']} is not in 'categories'"
                )
            if "segmentation" not in ann:
                raise DatasetError(f"{where}: missing field 'segmentation'")
            if ann.get("iscrowd", 0) not in (0, 1):
                raise DatasetError(f"{where}: field 'iscrowd' must be 0 or 1")
            by_image.setdefault(ann["image_id"], []).append({**ann, "_where": where})
        self.num_images_without_annotations = len(images) - len(by_image)
        self._items = [
            (im, by_image[im.image_id])
            for im in existing_images(images, list(by_image), self.json_path)
        ]
        if not self._items:
            raise DatasetError(f"{self.json_path}: no image has an annotation")

    def _class_indices(self, idx: int) -> list[int]:
        return sorted({self._categories[a["category_id"]] for a in self._items[idx][1]})

    def expressions(self, idx: int) -> list[str]:
        """Names of the categories present, in the order of ``categories``."""
        return [self.class_names[c] for c in self._class_indices(idx)]

    def _class_masks(self, idx: int) -> tuple[list[int], np.ndarray]:
        im, anns = self._items[idx]
        classes = self._class_indices(idx)
        row = {c: k for k, c in enumerate(classes)}
        out = np.zeros((len(classes), im.height, im.width), dtype=bool)
        for ann in anns:
            mask = decode_segmentation(
                ann["segmentation"], im.height, im.width, where=ann["_where"]
            )
            out[row[self._categories[ann["category_id"]]]] |= mask
        return classes, out

    def masks(self, idx: int) -> np.ndarray:
        """Bool masks [K, H, W]: per category present, the union of its instances."""
        return self._class_masks(idx)[1]

    def label_map(self, idx: int) -> np.ndarray:
        """uint8 [H, W]: 0 background, k + 1 for ``class_names[k]``, 255 where classes overlap.

        Raises:
            DatasetError: More than 254 categories (they do not fit a uint8 map with 255).
        """
        if len(self.class_names) > 254:
            raise DatasetError(
                f"{self.json_path}: {len(self.class_names)} categories; the semantic protocol "
                "holds at most 254"
            )
        classes, masks = self._class_masks(idx)
        out = np.zeros(masks.shape[1:], dtype=np.uint8)
        for c, m in zip(classes, masks):
            out[m] = c + 1
        out[masks.sum(axis=0) > 1] = IGNORE_INDEX
        return out

    def __repr__(self) -> str:
        return f"CocoDataset({str(self.json_path)!r}, images={len(self)})"


def coco_location(cfg: DataConfig) -> tuple[str | None, str | None]:
    """(``data.image_dir``, ``data.annotations``) resolved under ``data.root`` (None: unset).

    Raises:
        DatasetError: Neither ``data.root`` nor ``data.annotations`` is set.
    """
    if not cfg.annotations:
        require_root(cfg)
    image_dir = resolve_under(cfg.root, cfg.image_dir) or None
    return image_dir, resolve_under(cfg.root, cfg.annotations) or None


def build(cfg: DataConfig, split: str) -> CocoDataset:
    """``data.dataset=coco``: the split's instances file in any layout (``coco_layout``), or
    ``data.annotations``."""
    image_dir, annotations = coco_location(cfg)
    return CocoDataset(cfg.root, split_name(cfg, split), image_dir, annotations)
