"""A gRefCOCO fixture in the published layout (``grefs(unc).json`` + ``instances.json``).

The layout follows ReLA's ``datasets/DATASET.md`` and ``grefer.py``: refs whose ``ann_id`` and
``category_id`` are lists, ``[-1]`` and ``"no_target": true`` for an expression that refers
to nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .refcoco import write_coco_images

SIZES = {1: (20, 30), 2: (16, 24)}  # image id -> (height, width)


def rect_mask(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


# Ground truth of each annotation, drawn here independently of the loader.
ANN_MASKS = {
    10: rect_mask(20, 30, 3, 2, 13, 12),  # the polygon below covers pixels [3:13, 2:12]
    11: rect_mask(20, 30, 5, 15, 9, 26),
    12: rect_mask(16, 24, 2, 3, 6, 7),
    13: rect_mask(20, 30, 14, 0, 20, 30),  # a crowd region
}


def rle(m: np.ndarray) -> dict[str, Any]:
    enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": list(enc["size"]), "counts": enc["counts"].decode()}


def ref(
    ref_id: int, image_id: int, ann_id: list[int], sents: list[str], split: str = "val"
) -> dict[str, Any]:
    empty = ann_id == [-1]
    return {
        "ref_id": ref_id,
        "image_id": image_id,
        "ann_id": ann_id,
        "category_id": [-1] if empty else [1] * len(ann_id),
        "split": split,
        "file_name": f"COCO_train2014_{image_id:012d}_{ref_id}.jpg",
        "no_target": empty,
        "sent_ids": [ref_id * 10 + j for j in range(len(sents))],
        "sentences": [
            {"sent": s, "raw": s, "tokens": s.split(), "sent_id": ref_id * 10 + j}
            for j, s in enumerate(sents)
        ],
    }


def default_refs() -> list[dict[str, Any]]:
    return [
        ref(100, 1, [10, 11], ["two things", "both objects"]),  # two targets
        ref(101, 1, [-1], ["the blue elephant"]),  # no target
        # "two things" again for another target set: ambiguous, dropped (both occurrences).
        ref(102, 1, [10], ["left object", "Two  things"]),
        ref(103, 2, [12], ["box", "box"]),
        ref(104, 2, [-1], ["a dog"]),
        ref(105, 1, [10, 13], ["object and crowd"]),  # the crowd target is left out
        ref(106, 2, [12], ["train only"], split="train"),
        ref(107, 2, [-1], ["no target in train"], split="train"),
    ]


def default_instances() -> dict[str, Any]:
    anns = [
        {"id": 10, "image_id": 1, "segmentation": [[2, 3, 12, 3, 12, 13, 2, 13]], "iscrowd": 0},
        {"id": 11, "image_id": 1, "segmentation": rle(ANN_MASKS[11]), "iscrowd": 0},
        {"id": 12, "image_id": 2, "segmentation": rle(ANN_MASKS[12]), "iscrowd": 0},
        {"id": 13, "image_id": 1, "segmentation": rle(ANN_MASKS[13]), "iscrowd": 1},
    ]
    for a in anns:
        a.update({"category_id": 1, "bbox": [0, 0, 1, 1], "area": 1.0})
    return {
        "images": [
            {"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": h, "width": w}
            for i, (h, w) in SIZES.items()
        ],
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing"}],
    }


def make_grefcoco(root: Path, refs: Any = None, instances: Any = None) -> Path:
    """Write ``<root>/grefcoco/{grefs(unc).json, instances.json}`` and the JPEGs."""
    folder = root / "grefcoco"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grefs(unc).json").write_text(json.dumps(default_refs() if refs is None else refs))
    inst = default_instances() if instances is None else instances
    (folder / "instances.json").write_text(json.dumps(inst))
    write_coco_images(root / "images" / "train2014", SIZES)
    return root
