"""COCO fixtures: an instances file (polygons, compressed RLE, a crowd's uncompressed RLE) and a
captions file, with their images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .refcoco import column_major_counts

H, W = 20, 30


def rle_of(mask: np.ndarray, compressed: bool) -> dict:
    """A COCO RLE of a bool mask: compressed (string counts) or uncompressed (crowd style)."""
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    return {"size": [mask.shape[0], mask.shape[1]], "counts": column_major_counts(mask)}


def box_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def make_instances(root: Path, split: str = "val2017", extra_anns: list | None = None) -> Path:
    """Two images: image 1 has two cats (polygon + compressed RLE) and a crowd of dogs
    overlapping one cat; image 2 has one dog; image 3 has no annotation."""
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir()
    for i in (1, 2, 3):
        Image.fromarray(np.full((H, W, 3), 40 * i, dtype=np.uint8)).save(root / split / f"{i}.png")
    anns = [
        # cat: polygon of the rectangle x 0..10, y 0..10 (pixel centres inside)
        {"id": 1, "image_id": 1, "category_id": 17, "iscrowd": 0,
         "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
        {"id": 2, "image_id": 1, "category_id": 17, "iscrowd": 0,
         "segmentation": rle_of(box_mask(12, 18, 20, 28), compressed=True)},
        {"id": 3, "image_id": 1, "category_id": 18, "iscrowd": 1,
         "segmentation": rle_of(box_mask(14, 20, 24, 30), compressed=False)},
        {"id": 4, "image_id": 2, "category_id": 18, "iscrowd": 0,
         "segmentation": rle_of(box_mask(2, 5, 2, 5), compressed=True)},
    ] + (extra_anns or [])  # fmt: skip
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": H, "width": W} for i in (1, 2, 3)],
        "categories": [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}],
        "annotations": anns,
    }
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


def make_captions(root: Path, split: str = "train2017", extra_anns: list | None = None) -> Path:
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    for i in (1, 2, 3):
        Image.fromarray(np.full((H, W, 3), 40 * i, dtype=np.uint8)).save(root / split / f"{i}.png")
    anns = [
        {"id": 10, "image_id": 2, "caption": "A dog on grass."},
        {"id": 11, "image_id": 1, "caption": "Two cats."},
        {"id": 12, "image_id": 1, "caption": "two  cats."},  # the same after normalising
        {"id": 13, "image_id": 1, "caption": "cats near a dog"},
    ] + (extra_anns or [])
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": H, "width": W} for i in (1, 2, 3)],
        "annotations": anns,
    }
    (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(data))
    return root
