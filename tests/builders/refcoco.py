"""A RefCOCO fixture in the ``refer`` toolkit's on-disk layout: ``refs(<split_by>).p`` (pickle
protocol 2), ``instances.json`` and the COCO JPEGs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

# Image sizes (height, width) of the fixture images.
SIZES = {1: (20, 30), 2: (16, 24), 3: (10, 10)}


def car_mask() -> np.ndarray:
    m = np.zeros(SIZES[1], dtype=np.uint8)
    m[5:9, 15:26] = 1
    m[9, 20] = 1
    return m


def crowd_mask() -> np.ndarray:
    m = np.zeros(SIZES[2], dtype=np.uint8)
    m[2:6, 3:7] = 1
    m[10:, 20:] = 1
    return m


def column_major_counts(m: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts, written independently of pycocotools."""
    flat = m.flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return counts


def sentence(text: str, sent_id: int) -> dict[str, Any]:
    return {"sent": text, "raw": text, "tokens": text.split(), "sent_id": sent_id}


def ref(ref_id: int, ann_id: int, image_id: int, split: str, sents: list[str]) -> dict[str, Any]:
    return {
        "ref_id": ref_id,
        "ann_id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "split": split,
        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
        "sent_ids": [ref_id * 10 + i for i in range(len(sents))],
        "sentences": [sentence(s, ref_id * 10 + i) for i, s in enumerate(sents)],
    }


def default_refs() -> list[dict[str, Any]]:
    return [
        ref(100, 10, 1, "val", ["man on left", "left man"]),
        # "man on left" again, for another object: ambiguous, dropped for image 1.
        ref(101, 11, 1, "val", ["red car", "Man  on left"]),
        ref(102, 12, 2, "val", ["crowd", "crowd"]),
        ref(103, 13, 3, "train", ["dog"]),
        ref(104, 13, 3, "testA", ["the dog"]),
    ]


def default_instances() -> dict[str, Any]:
    car = mask_utils.encode(np.asfortranarray(car_mask()))
    return {
        "images": [
            {"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": h, "width": w}
            for i, (h, w) in SIZES.items()
        ],
        "annotations": [
            {  # rectangle x 2..12, y 3..13: pixels [3:13, 2:12]
                "id": 10,
                "image_id": 1,
                "segmentation": [[2, 3, 12, 3, 12, 13, 2, 13]],
                "bbox": [2, 3, 10, 10],
                "category_id": 1,
                "area": 100.0,
                "iscrowd": 0,
            },
            {  # compressed RLE, counts a str as in COCO json
                "id": 11,
                "image_id": 1,
                "segmentation": {"size": car["size"], "counts": car["counts"].decode()},
                "bbox": [15, 5, 11, 5],
                "category_id": 3,
                "area": 45.0,
                "iscrowd": 0,
            },
            {  # uncompressed RLE, as COCO crowd annotations
                "id": 12,
                "image_id": 2,
                "segmentation": {
                    "size": list(SIZES[2]),
                    "counts": column_major_counts(crowd_mask()),
                },
                "bbox": [3, 2, 21, 14],
                "category_id": 1,
                "area": 40.0,
                "iscrowd": 1,
            },
            {
                "id": 13,
                "image_id": 3,
                "segmentation": [[1, 1, 5, 1, 5, 5], [6, 6, 9, 6, 9, 9, 6, 9]],
                "bbox": [1, 1, 8, 8],
                "category_id": 18,
                "area": 20.0,
                "iscrowd": 0,
            },
        ],
        "categories": [
            {"id": 1, "name": "person"},
            {"id": 3, "name": "car"},
            {"id": 18, "name": "dog"},
        ],
    }


def make_refcoco(
    root: Path,
    dataset: str = "refcoco",
    split_by: str = "unc",
    refs: list[Any] | None = None,
    instances: Any = None,
    image_dir: Path | None = None,
) -> Path:
    """Write a refer-toolkit folder: refs pickle (protocol 2), instances.json, JPEGs."""
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"refs({split_by}).p", "wb") as f:
        pickle.dump(default_refs() if refs is None else refs, f, protocol=2)
    inst = default_instances() if instances is None else instances
    (folder / "instances.json").write_text(json.dumps(inst))
    write_coco_images(root / "images" / "train2014" if image_dir is None else image_dir, SIZES)
    return root


def write_coco_images(image_dir: Path, sizes: dict[int, tuple[int, int]]) -> None:
    """Random JPEGs ``COCO_train2014_%012d.jpg`` of the given (height, width) per image id."""
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in sizes.items():
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / f"COCO_train2014_{i:012d}.jpg", quality=95)
