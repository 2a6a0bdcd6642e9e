"""VGPhraseCut, in the layout of the official ``PhraseCutDataset`` repository.

Expected files (``root`` is the official ``data/VGPhraseCut_v0`` folder)::

    <root>/refer_{train,val,test,miniv}.json   list of tasks (phrase-region pairs)
    <root>/image_data_split.json               list of {image_id, width, height, split, ...}
    <root>/images/<image_id>.jpg               Visual Genome images (``image_dir``)

A task is a dict with ``task_id``, ``image_id``, ``phrase``, ``instance_boxes`` (xywh per
instance), ``Polygons`` (per instance, a list of polygons, each a list of ``[x, y]``
points) and ``phrase_structure`` (``name``, ``attributes``, ``relation_descriptions``,
``type``, ...; read only by ``phrase_structure()``, for the official per-subset report). As in the official loader, a split name
may join several files with ``_`` (``"val_miniv"`` is the whole validation set: the
``val`` file leaves out the 100 ``miniv`` images).

Ground truth is rasterised exactly as the official ``utils/data_transfer.py``
``polygons_to_mask`` does: coordinates truncated with ``int()``, each polygon drawn with
``PIL.ImageDraw.polygon(fill=1, outline=1)`` (so the boundary pixels are in the mask) on
an ``"L"`` image of the size given by ``image_data_split.json``, and all polygons of all
instances of the task unioned. Where the official code silently skips polygons of fewer
than 2 points and draws 2-point ones as a line, ``strict=True`` (the default) refuses any
polygon of fewer than 3 points with a ``DatasetError`` naming the task; ``strict=False``
(config key ``data.phrasecut_strict_polygons=false``) reproduces the official behaviour.
``tseg data check phrasecut`` applies the same rule (``short_polygons`` counts what it refuses).

Items are images (sorted by image id); expressions are the image's distinct phrases
(after ``normalize_expression``). A phrase given by two tasks with different regions is
ambiguous and dropped from ``expressions`` (counted in ``num_dropped_tasks``); the
per-task API (``iter_tasks`` / ``task_mask``) still covers every task, for the official
per-task evaluation.

Longer than 400 lines because every malformed field of the official files gets its own named
error and the rasterisation follows the official tools step by step; one dataset, one file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tseg.config import DataConfig
from tseg.data.base import DatasetError, normalize_expression
from tseg.data.files import load_json, read_rgb
from tseg.data.numbers import coordinate_range, is_number
from tseg.data.paths import require_root, resolve_under, split_name

__all__ = [
    "SPLITS",
    "PhraseCutDataset",
    "PhraseCutTask",
    "build",
    "default_image_dir",
    "image_info_path",
    "parse_splits",
    "polygons_to_mask",
    "refer_path",
    "short_polygons",
    "task_polygons_to_mask",
]

SPLITS: tuple[str, ...] = ("train", "val", "test", "miniv")


def refer_path(root: str | os.PathLike[str], split: str) -> Path:
    """``<root>/refer_<split>.json``."""
    return Path(root) / f"refer_{split}.json"


def image_info_path(root: str | os.PathLike[str]) -> Path:
    """``<root>/image_data_split.json``."""
    return Path(root) / "image_data_split.json"


def default_image_dir(root: str | os.PathLike[str]) -> Path:
    """``<root>/images``."""
    return Path(root) / "images"


def parse_splits(split: str) -> list[str]:
    """Split ``"val_miniv"`` into ``["val", "miniv"]``, validating each part."""
    parts = split.split("_")
    for part in parts:
        if part not in SPLITS:
            raise DatasetError(
                f"unknown PhraseCut split {part!r}; valid: {', '.join(SPLITS)} "
                "(join several with '_', e.g. 'val_miniv')"
            )
    if len(set(parts)) != len(parts):
        raise DatasetError(f"PhraseCut split {split!r} names a part twice")
    return parts


# --------------------------------------------------------------------------- masks


#: Fewer points than this make no area: refused when strict (the official tools draw 2).
MIN_POLYGON_POINTS = 3


def short_polygons(instances: Any) -> int:
    """How many polygons of a task's ``Polygons`` have fewer than ``MIN_POLYGON_POINTS`` points.

    These are the polygons a strict ``PhraseCutDataset`` refuses; ``tseg data check`` counts
    them with this function so that it applies the loader's rule. Malformed entries are not
    counted here (the loader names them when it rasterises).
    """
    if not isinstance(instances, list):
        return 0
    return sum(
        1
        for inst in instances
        if isinstance(inst, list)
        for poly in inst
        if isinstance(poly, list) and len(poly) < MIN_POLYGON_POINTS
    )


def _polygon_points(
    poly: Any, height: int, width: int, where: str, strict: bool
) -> list[tuple[int, int]] | None:
    """Validate one polygon and return its integer points (None: skip it)."""
    if not isinstance(poly, list):
        raise DatasetError(f"{where}: a polygon must be a list of [x, y] points")
    lo, hi = coordinate_range(height, width)
    points = []
    for pt in poly:
        if not (isinstance(pt, list) and len(pt) == 2 and is_number(pt[0]) and is_number(pt[1])):
            raise DatasetError(
                f"{where}: polygon point {pt!r:.40} is not an [x, y] pair of numbers"
            )
        if not (lo <= pt[0] <= hi and lo <= pt[1] <= hi):
            # Also keeps PIL's C coordinates far from integer overflow.
            raise DatasetError(f"{where}: polygon point {pt!r} is far outside the image")
        points.append((int(pt[0]), int(pt[1])))  # int() truncation, as the official code
    if len(points) < MIN_POLYGON_POINTS:
        if strict:
            raise DatasetError(
                f"{where}: polygon with {len(points)} point(s); at least 3 are needed "
                "(data.phrasecut_strict_polygons=false, or strict=False, rasterises it the way "
                "the official tools do)"
            )
        if len(points) < 2:
            return None
    return points


def polygons_to_mask(
    polygons: Sequence[Any],
    height: int,
    width: int,
    *,
    where: str = "polygons",
    strict: bool = True,
) -> np.ndarray:
    """Rasterise polygons (lists of ``[x, y]`` points) into one bool mask [height, width].

    Matches PhraseCut's ``polygons_to_mask``: ``int()`` coordinates, PIL polygon with
    fill and outline, union of all polygons.

    Raises:
        DatasetError: A polygon is malformed (message starts with ``where``).
    """
    if not isinstance(polygons, list):
        raise DatasetError(f"{where}: expected a list of polygons")
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        points = _polygon_points(poly, height, width, where, strict)
        if points is not None:
            draw.polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8) > 0


def task_polygons_to_mask(
    instances: Any, height: int, width: int, *, where: str, strict: bool = True
) -> np.ndarray:
    """Rasterise a task's ``Polygons`` (per instance, a list of polygons) as their union."""
    if not isinstance(instances, list):
        raise DatasetError(f"{where}: 'Polygons' must be a list (one entry per instance)")
    flat: list[Any] = []
    for j, inst in enumerate(instances):
        if not isinstance(inst, list):
            raise DatasetError(f"{where}: Polygons[{j}] must be a list of polygons")
        flat.extend(inst)
    return polygons_to_mask(flat, height, width, where=where, strict=strict)


def _union_box(boxes: list[list[float]]) -> list[float]:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return [x0, y0, x1 - x0, y1 - y0]


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class PhraseCutTask:
    """One phrase-region pair: the unit of the official evaluation."""

    image_index: int
    task_id: str
    phrase: str


@dataclass
class _Task:
    task_id: str
    phrase: str
    boxes: list[list[float]]
    polygons: Any  # validated lazily, in masks()
    source: Path
    structure: Any = None  # the raw phrase_structure, validated lazily


@dataclass
class _Image:
    image_id: int
    height: int
    width: int
    tasks: list[_Task]
    # Expressions: (phrase, indices into tasks that share it with the same region).
    expressions: list[tuple[str, list[int]]]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class PhraseCutDataset:
    """One PhraseCut split, one item per image.

    Args:
        root: The ``VGPhraseCut_v0`` folder.
        split: ``"train"``, ``"val"``, ``"test"``, ``"miniv"`` or several joined by ``_``.
        image_dir: Image folder; default ``<root>/images``.
        strict: Refuse polygons of fewer than 3 points (see the module docstring).

    Raises:
        DatasetError: Unknown split, or a missing or malformed file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        image_dir: str | os.PathLike[str] | None = None,
        strict: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.splits = parse_splits(split)
        self.image_dir = default_image_dir(root) if image_dir is None else Path(image_dir)
        self.strict = strict
        self.info_file = image_info_path(root)

        tasks_by_image: dict[int, list[_Task]] = {}
        seen_ids: dict[str, Path] = {}
        for part in self.splits:
            path = refer_path(root, part)
            data = load_json(path)
            if not isinstance(data, list):
                raise DatasetError(f"{path}: expected a list of tasks")
            for i, raw in enumerate(data):
                image_id, task = self._parse_task(raw, i, path)
                if task.task_id in seen_ids:
                    raise DatasetError(
                        f"{path}: task_id {task.task_id!r} appears twice "
                        f"(also in {seen_ids[task.task_id]})"
                    )
                seen_ids[task.task_id] = path
                tasks_by_image.setdefault(image_id, []).append(task)
        self.num_tasks = len(seen_ids)

        info = self._image_info(set(tasks_by_image))
        self.num_dropped_tasks = 0
        self._items: list[_Image] = []
        for image_id in sorted(tasks_by_image):
            if image_id not in info:
                first = tasks_by_image[image_id][0]
                raise DatasetError(
                    f"{first.source}: task {first.task_id!r}: image_id {image_id} is not in "
                    f"{self.info_file}"
                )
            height, width = info[image_id]
            tasks = tasks_by_image[image_id]
            exprs = self._group(tasks)
            self._items.append(_Image(image_id, height, width, tasks, exprs))
        self._task_index = {
            t.task_id: (i, j)
            for i, item in enumerate(self._items)
            for j, t in enumerate(item.tasks)
        }

    # -- loading helpers

    @staticmethod
    def _parse_task(raw: Any, i: int, path: Path) -> tuple[int, _Task]:
        if not isinstance(raw, dict):
            raise DatasetError(f"{path}: task #{i} is not an object")
        task_id = raw.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise DatasetError(f"{path}: task #{i} has no string field 'task_id'")
        where = f"{path}: task {task_id!r}"
        for key in ("image_id", "phrase", "instance_boxes", "Polygons"):
            if key not in raw:
                raise DatasetError(f"{where}: missing field '{key}'")
        image_id = raw["image_id"]
        if not _is_int(image_id) or image_id < 0:
            raise DatasetError(f"{where}: 'image_id' must be a non-negative integer")
        if not isinstance(raw["phrase"], str) or not normalize_expression(raw["phrase"]):
            raise DatasetError(f"{where}: 'phrase' must be a non-empty string")
        boxes = raw["instance_boxes"]
        if not isinstance(boxes, list) or not boxes:
            raise DatasetError(f"{where}: 'instance_boxes' must be a non-empty list")
        for b in boxes:
            if not (isinstance(b, list) and len(b) == 4 and all(is_number(v) for v in b)):
                raise DatasetError(f"{where}: instance box {b!r:.60} is not [x, y, w, h]")
            if b[2] < 0 or b[3] < 0:
                raise DatasetError(f"{where}: instance box {b!r} has a negative size")
        polys = raw["Polygons"]
        if not isinstance(polys, list) or len(polys) != len(boxes):
            raise DatasetError(
                f"{where}: 'Polygons' must be a list with one entry per instance box ({len(boxes)})"
            )
        task = _Task(
            task_id,
            raw["phrase"].strip(),
            [[float(v) for v in b] for b in boxes],
            polys,
            path,
            raw.get("phrase_structure"),
        )
        return image_id, task

    def _image_info(self, wanted: set[int]) -> dict[int, tuple[int, int]]:
        data = load_json(self.info_file)
        if not isinstance(data, list):
            raise DatasetError(f"{self.info_file}: expected a list of images")
        out: dict[int, tuple[int, int]] = {}
        for i, img in enumerate(data):
            if not isinstance(img, dict):
                raise DatasetError(f"{self.info_file}: entry #{i} is not an object")
            image_id = img.get("image_id")
            if not _is_int(image_id) or image_id not in wanted:
                continue
            where = f"{self.info_file}: image_id {image_id}"
            for key in ("height", "width"):
                if not (_is_int(img.get(key)) and img[key] > 0):
                    raise DatasetError(f"{where}: field '{key}' must be a positive integer")
            out[image_id] = (img["height"], img["width"])
        return out

    def _group(self, tasks: list[_Task]) -> list[tuple[str, list[int]]]:
        groups: dict[str, list[int]] = {}
        ambiguous: set[str] = set()
        for j, task in enumerate(tasks):
            key = normalize_expression(task.phrase)
            if key in ambiguous:
                self.num_dropped_tasks += 1
            elif key not in groups:
                groups[key] = [j]
            elif tasks[groups[key][0]].polygons == task.polygons:
                groups[key].append(j)  # same phrase, same region: one expression
            else:
                self.num_dropped_tasks += len(groups.pop(key)) + 1
                ambiguous.add(key)
        return [(tasks[js[0]].phrase, js) for js in groups.values()]

    # -- RefDataset protocol

    def __len__(self) -> int:
        return len(self._items)

    def _item(self, idx: int) -> _Image:
        if not -len(self._items) <= idx < len(self._items):
            raise IndexError(f"image index {idx} out of range for {len(self._items)} images")
        return self._items[idx]

    def image_path(self, idx: int) -> Path:
        """``<image_dir>/<image_id>.jpg``; ids are integers, so it cannot leave the folder."""
        return self.image_dir / f"{self._item(idx).image_id}.jpg"

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 [H, W, 3] (checked against ``image_data_split.json``)."""
        item = self._item(idx)
        return read_rgb(self.image_path(idx), size=(item.height, item.width))

    def expressions(self, idx: int) -> list[str]:
        """Distinct phrases of image ``idx``."""
        return [phrase for phrase, _ in self._item(idx).expressions]

    def _task_mask(self, item: _Image, task: _Task) -> np.ndarray:
        where = f"{task.source}: task {task.task_id!r}"
        return task_polygons_to_mask(
            task.polygons, item.height, item.width, where=where, strict=self.strict
        )

    def masks(self, idx: int) -> np.ndarray:
        """Bool masks [K, H, W]: union of the instance polygons of each expression's task."""
        item = self._item(idx)
        out = np.zeros((len(item.expressions), item.height, item.width), dtype=bool)
        for k, (_, js) in enumerate(item.expressions):
            out[k] = self._task_mask(item, item.tasks[js[0]])
        return out

    # -- extras

    def boxes(self, idx: int) -> np.ndarray:
        """Union box [K, 4] (x, y, w, h) of each expression's instance boxes."""
        item = self._item(idx)
        out = np.zeros((len(item.expressions), 4), dtype=np.float64)
        for k, (_, js) in enumerate(item.expressions):
            out[k] = _union_box(item.tasks[js[0]].boxes)
        return out

    def image_id(self, idx: int) -> int:
        """Visual Genome image id of item ``idx``."""
        return self._item(idx).image_id

    def image_size(self, idx: int) -> tuple[int, int]:
        """(height, width) of item ``idx`` from ``image_data_split.json``."""
        item = self._item(idx)
        return item.height, item.width

    def task_ids(self, idx: int) -> list[tuple[str, ...]]:
        """Task ids behind each expression of item ``idx`` (several when repeated)."""
        item = self._item(idx)
        return [tuple(item.tasks[j].task_id for j in js) for _, js in item.expressions]

    def iter_tasks(self) -> Iterator[PhraseCutTask]:
        """Every task of the split (ambiguous ones included), image by image."""
        for i, item in enumerate(self._items):
            for task in item.tasks:
                yield PhraseCutTask(i, task.task_id, task.phrase)

    def task_mask(self, task_id: str) -> np.ndarray:
        """Ground-truth mask [H, W] of one task."""
        item, task = self._task(task_id)
        return self._task_mask(item, task)

    def _task(self, task_id: str) -> tuple[_Image, _Task]:
        if task_id not in self._task_index:
            raise KeyError(f"unknown task_id {task_id!r}")
        i, j = self._task_index[task_id]
        return self._items[i], self._items[i].tasks[j]

    def instance_count(self, task_id: str) -> int:
        """Number of instances (boxes) the task's phrase refers to."""
        return len(self._task(task_id)[1].boxes)

    def phrase_structure(self, task_id: str) -> dict[str, Any] | None:
        """The task's ``phrase_structure`` (None when the file gives none).

        Raises:
            DatasetError: It is not an object with a string ``name`` and ``type`` and lists
                ``attributes`` and ``relation_descriptions`` (the fields the official
                subsets read); the message names the file and the task.
        """
        _, task = self._task(task_id)
        ps = task.structure
        if ps is None:
            return None
        where = f"{task.source}: task {task_id!r}: phrase_structure"
        if not isinstance(ps, dict):
            raise DatasetError(f"{where} must be an object")
        for key, kind in (
            ("name", str),
            ("type", str),
            ("attributes", list),
            ("relation_descriptions", list),
        ):
            if key not in ps:
                raise DatasetError(f"{where}: missing field '{key}'")
            if not isinstance(ps[key], kind):
                raise DatasetError(f"{where}: field '{key}' must be a {kind.__name__}")
        return ps

    def __repr__(self) -> str:
        return f"PhraseCutDataset(split={self.split!r}, images={len(self)}, tasks={self.num_tasks})"


def build(cfg: DataConfig, split: str) -> PhraseCutDataset:
    """``data.dataset=phrasecut``, with ``data.phrasecut_strict_polygons``."""
    require_root(cfg)
    image_dir = resolve_under(cfg.root, cfg.image_dir) or None
    name = split_name(cfg, split)
    return PhraseCutDataset(cfg.root, name, image_dir, strict=cfg.phrasecut_strict_polygons)
