"""A PhraseCut fixture in the official ``VGPhraseCut_v0`` layout: ``refer_<split>.json``,
``image_data_split.json`` and ``images/<id>.jpg``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

SIZES = {1: (20, 30), 2: (12, 16), 3: (10, 10)}  # image_id -> (height, width)


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """Closed rectangle polygon as a list of [x, y] points."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def task(task_id: str, image_id: Any, phrase: str, boxes: list[Any], polys: list[Any]) -> dict:
    return {
        "task_id": task_id,
        "image_id": image_id,
        "ann_ids": [1],
        "phrase": phrase,
        "instance_boxes": boxes,
        "Polygons": polys,
        "phrase_structure": {"name": phrase.split()[-1], "attributes": [], "type": "name"},
    }


def default_tasks() -> dict[str, list[dict[str, Any]]]:
    sky = [[rect(0, 0, 15, 3)]]
    return {
        "val": [
            task("1__10", 1, "white dog", [[2, 3, 10, 10]], [[rect(2, 3, 11, 12)]]),
            task(
                "1__11_12",
                1,
                "cars",
                [[15, 2, 5, 5], [20, 10, 6, 4]],
                [[rect(15, 2, 19, 6)], [rect(20.7, 10.2, 25.9, 13.5)]],
            ),
            # Same phrase as 1__10 for another region: ambiguous, dropped.
            task("1__13", 1, "White  dog", [[0, 0, 2, 2]], [[rect(0, 0, 1, 1)]]),
            # Same phrase, same region: one expression for both tasks.
            task("2__20", 2, "sky", [[0, 0, 16, 4]], sky),
            task("2__21", 2, "Sky", [[0, 0, 16, 4]], sky),
        ],
        "miniv": [task("3__30", 3, "tree", [[1, 1, 3, 3]], [[rect(1, 1, 3, 3)]])],
    }


def make_phrasecut(
    root: Path, tasks: dict[str, Any] | None = None, info: Any = None, images: bool = True
) -> Path:
    """Write refer_<split>.json files, image_data_split.json and images/<id>.jpg."""
    root.mkdir(parents=True, exist_ok=True)
    for split, data in (default_tasks() if tasks is None else tasks).items():
        (root / f"refer_{split}.json").write_text(json.dumps(data))
    if info is None:
        split_of = {1: "val", 2: "val", 3: "miniv"}
        info = [
            {
                "image_id": i,
                "height": h,
                "width": w,
                "split": split_of[i],
                "coco_id": None,
                "flickr_id": 1000 + i,
                "url": f"https://cs.stanford.edu/people/rak248/VG_100K/{i}.jpg",
            }
            for i, (h, w) in SIZES.items()
        ]
    (root / "image_data_split.json").write_text(json.dumps(info))
    if images:
        (root / "images").mkdir(exist_ok=True)
        for i, (h, w) in SIZES.items():
            Image.new("RGB", (w, h), (i * 40, 100, 200)).save(root / "images" / f"{i}.jpg")
    return root
