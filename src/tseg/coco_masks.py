"""Masks out as a COCO instances file: what pycocotools, FiftyOne, CVAT and Label Studio import.

One file, ``instances.json``, in the COCO detection format with compressed RLE masks::

    images       {"id", "file_name", "width", "height"} per image
    categories   {"id", "name": the expression, "supercategory": "expression"}: one category per
                 distinct expression, numbered from 1 in the order they first come
    annotations  {"id", "image_id", "category_id", "segmentation": {"size": [H, W], "counts":
                 str}, "area", "bbox": [x, y, w, h], "iscrowd": 0, "score": the confidence}

The expression is the category's name (a referring expression is a one-object class of its
image); an empty mask has no annotation. ``tseg segment --format coco`` and ``tseg
pseudo-label --coco FILE`` write it (``write_json_atomic``: a temporary file, then a rename, so
the name only ever holds a whole file). Each annotation also keeps its ``expression`` (the
category's name again). RLE is pycocotools' (``tseg[data]``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["annotation", "decode", "encode", "instances", "write_json_atomic"]


def _mask_utils() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        from .errors import DatasetError

        raise DatasetError("COCO RLE masks need pycocotools: pip install 'tseg[data]'") from None
    return mask_utils


def encode(mask: np.ndarray) -> dict[str, Any]:
    """bool [H, W] -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (pycocotools)."""
    rle = _mask_utils().encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO compressed RLE -> bool [H, W]."""
    mask_utils = _mask_utils()
    with warnings.catch_warnings():  # pycocotools < 2.1 trips numpy 2's copy deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}) > 0


def annotation(mask: np.ndarray, **fields: Any) -> dict[str, Any] | None:
    """A mask bool [H, W] -> its annotation fields (``segmentation``, ``area``, ``bbox``,
    ``iscrowd``, then ``fields``), or None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "segmentation": encode(mask),
        "area": len(ys),
        "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
        "iscrowd": 0,
        **fields,
    }


def instances(
    images: list[dict[str, Any]],
    annotations: Iterable[list[dict[str, Any]]],
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO instances dict: ``images`` (each with an ``id``) and per image its annotations
    (from ``annotation``, each with its ``expression``), numbered here; the categories are the
    expressions (module docstring). Each annotation keeps its other fields."""
    anns: list[dict[str, Any]] = []
    category: dict[str, int] = {}
    for im, own in zip(images, annotations):
        for a in own:
            cid = category.setdefault(a["expression"], len(category) + 1)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": cid, **a})
    return {
        "info": info or {"description": "tseg masks"},
        "licenses": [],
        "images": images,
        "categories": [
            {"id": j, "name": n, "supercategory": "expression"} for n, j in category.items()
        ],
        "annotations": anns,
    }


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON under a temporary name, then rename: the final name only ever holds a whole
    file (a kill mid-write leaves a ``.tmp`` that is rewritten next time)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
