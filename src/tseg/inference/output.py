"""Writing segmentation results: one mask PNG per expression, an overlay and a JSON of scores;
for zero-shot semantic segmentation a class-label PNG, its overlay and the class confidences;
and ``index.json``, which says which input image each output folder belongs to. Or, instead of
all of these, one COCO instances file of every image's masks (``write_coco``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..results import Prediction
from ..viz import PALETTE, overlay


def slug(text: str, max_len: int = 48) -> str:
    """A file-name-safe version of an expression: the ``mask_XX_<slug>.png`` names of both
    ``tseg segment``'s folders and ``tseg serve``'s zip, which import it from here (this module
    loads no torch)."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return (s or "expr")[:max_len]


# zlib level 1: masks and overlays encode 2-3x faster than at PNG's default 6, for files a
# little larger (a 640 x 480 mask: 2.7 instead of 1.5 KB); the pixels are the same.
PNG_LEVEL = 1


def write_prediction(out_dir: Path, stem: str, image: np.ndarray, preds: list[Prediction]) -> Path:
    """Write ``out_dir/<stem>/`` with mask_XX_<slug>.png, overlay.png and scores.json."""
    d = out_dir / stem
    d.mkdir(parents=True, exist_ok=True)
    records = []
    for k, p in enumerate(preds):
        name = f"mask_{k:02d}_{slug(p.expression)}.png"
        Image.fromarray(p.mask.astype(np.uint8) * 255).save(d / name, compress_level=PNG_LEVEL)
        records.append(
            {
                "expression": p.expression,
                "confidence": round(p.confidence, 6),
                "mask": name,
                "area_fraction": round(float(p.mask.mean()), 6),
            }
        )
    scale = max(1, 256 // max(1, min(image.shape[:2])))
    masks = np.stack([p.mask for p in preds])
    overlay(
        image, masks, [p.expression for p in preds], [p.confidence for p in preds], scale=scale
    ).save(d / "overlay.png", compress_level=PNG_LEVEL)
    (d / "scores.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    return d


INDEX = "index.json"


def write_index(
    out: Path, paths: list[Path], stems: list[str], errors: dict[int, str] | None = None
) -> Path:
    """Write ``out/index.json``: every input image of the run, in order, with its output folder.

    Two inputs of the same stem (``x.bmp``, ``x.tiff``) get folders ``x`` and ``x_1``; the index
    is what tells them apart. An image that could not be read has ``"folder": null`` and its
    ``"error"``; ``errors`` maps its index in ``paths`` to the message. ``tseg segment``
    writes it whenever it writes a result.

    A rerun into the same ``out`` adds to the index instead of forgetting the earlier images:
    their entries stay, first, unless this run has the same image or wrote their folder again.
    """
    errors = errors or {}
    images = []
    for i, (path, stem) in enumerate(zip(paths, stems)):
        if i in errors:
            images.append({"image": str(path), "folder": None, "error": errors[i]})
        else:
            images.append({"image": str(path), "folder": stem})
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    new_images = {e["image"] for e in images}
    new_folders = {e["folder"] for e in images if e["folder"]}
    kept = [
        e
        for e in _earlier_entries(index)
        if e.get("image") not in new_images and e.get("folder") not in new_folders
    ]
    from ..atomic import atomic_write_text  # a killed run leaves the old index or the new

    atomic_write_text(index, json.dumps({"images": kept + images}, indent=1))
    return index


def _earlier_entries(index: Path) -> list[dict]:
    """The entries of an earlier run's index.json ([] if there is none or it is unreadable)."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = data.get("images") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def write_zero_shot(
    out: Path,
    stem: str,
    image: np.ndarray,
    preds: list[Prediction],
    classes: dict[str, list[str]],
    threshold: float,
) -> Path:
    """Section 4.6: merge synonyms, drop unconfident classes, argmax; palette PNG + overlay.

    ``preds`` are the predictions of ``flatten_class_names(classes)``'s names, in that order.
    """
    from ..data.zeroshot import flatten_class_names, merge_synonyms, zero_shot_labels

    _, groups = flatten_class_names(classes)
    probs, conf = merge_synonyms(
        np.stack([p.probability for p in preds]), np.array([p.confidence for p in preds]), groups
    )
    labels = zero_shot_labels(conf, probs, threshold=threshold)  # [H, W], 0 = background
    d = out / stem
    d.mkdir(parents=True, exist_ok=True)
    pal = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [0, 0, 0] + [v for c in range(len(classes)) for v in PALETTE[c % len(PALETTE)]]
    pal.putpalette(flat + [0] * (768 - len(flat)))
    pal.save(d / "classes.png")
    names = list(classes)
    masks = np.stack([labels == k + 1 for k in range(len(names))])
    overlay(image, masks, names, [float(c) for c in conf]).save(d / "classes_overlay.png")
    scores = {n: round(float(c), 6) for n, c in zip(names, conf)}
    (d / "classes.json").write_text(
        json.dumps({"classes": names, "confidence": scores, "threshold": threshold}, indent=1),
        encoding="utf-8",
    )
    return d


COCO_FILE = "instances.json"


def coco_annotations(preds: list[Prediction]) -> list[dict[str, Any]]:
    """One image's predictions -> its COCO annotations (``tseg.coco_masks``): one per non-empty
    mask, with its expression and confidence (``score``)."""
    from ..coco_masks import annotation

    anns = (
        annotation(p.mask, expression=p.expression, score=round(float(p.confidence), 6))
        for p in preds
    )
    return [a for a in anns if a is not None]


def write_coco(
    out: Path, paths: list[Path], results: list[tuple[int, tuple[int, int], list[dict[str, Any]]]]
) -> Path:
    """Write ``out/instances.json``: the images segmented (``results``: index into ``paths``,
    (height, width), annotations), each ``file_name`` relative to the images' common folder
    (``info.image_root``, what FiftyOne's ``data_path`` or a COCO loader's image folder is).
    Images that could not be read are left out."""
    from ..coco_masks import instances, write_json_atomic

    root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    images = [
        {
            "id": i + 1,
            "file_name": paths[i].resolve().relative_to(root).as_posix(),
            "height": int(hw[0]),
            "width": int(hw[1]),
        }
        for i, hw, _ in results
    ]
    info = {"description": "tseg segment: categories are the expressions", "image_root": str(root)}
    out.mkdir(parents=True, exist_ok=True)
    path = out / COCO_FILE
    write_json_atomic(path, instances(images, [anns for _, _, anns in results], info))
    return path
