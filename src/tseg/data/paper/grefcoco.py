"""gRefCOCO (GRES, Liu, Ding and Jiang, CVPR 2023) in its published file layout.

Expected files, as ReLA's ``datasets/DATASET.md`` lays them out (``root`` is that
``datasets`` folder; the files come from the download links of henghuiding/gRefCOCO)::

    <root>/grefcoco/grefs(unc).json      list of refs (JSON; only splitBy "unc" exists)
    <root>/grefcoco/instances.json       COCO-style images / annotations / categories
    <root>/images/train2014/COCO_train2014_%012d.jpg   (``image_dir``; names from
                                         instances.json)

A ref is a RefCOCO ref (``ref_id``, ``image_id``, ``split``, ``sentences`` of dicts with
``sent``, ``raw``, ``tokens``, ``sent_id``) whose ``ann_id`` and ``category_id`` are lists:
several ids for an expression with several targets, ``[-1]`` for an expression with no
target, which the file also marks ``"no_target": true``. This is how ReLA's
``gres_model/data/datasets/grefer.py`` and ``grefcoco.py`` read the file (a lone int
``ann_id`` is taken as a one-element list, as there).

Masks: the union of the targets' COCO segmentations, decoded as ``tseg.data.paper.refcoco`` does
(pycocotools, after validation), at the image's size; empty for a no-target expression.
Crowd annotations (``iscrowd`` 1) are left out of the union, as ReLA's loader leaves them out
of the ground truth; an expression whose targets are all crowd is refused.

Items are images, as in ``RefCocoDataset``: an image's expressions are the distinct
normalised ``sent`` strings of its refs in the split. A sentence given to two different
target sets of one image (two refs, or a ref with a target and one without) has no single
ground truth and is dropped for that image (``num_dropped_sentences``); repeats for the same
targets are kept once (``sentence_counts``). ``no_target(idx)`` says which expressions have
no target. ``no_target=False`` leaves out the no-target refs (for weak training, which reads
every expression of an image as present).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError, normalize_expression
from tseg.data.files import load_json
from tseg.data.paper.refcoco import (
    CocoImageItems,
    default_image_dir,
    index_annotations,
    index_images,
    load_instances,
)
from tseg.data.paths import require_root, resolve_under, split_name

__all__ = [
    "SPLITS",
    "GRefCocoDataset",
    "build",
    "grefs_path",
    "instances_path",
    "parse_ref",
    "parse_ref_targets",
]

#: Splits of the release (testA and testB were held back for a challenge at first).
SPLITS: tuple[str, ...] = ("train", "val", "testA", "testB")
_NO_TARGET = -1


def grefs_path(root: str | os.PathLike[str]) -> Path:
    """``<root>/grefcoco/grefs(unc).json``."""
    return Path(root) / "grefcoco" / "grefs(unc).json"


def instances_path(root: str | os.PathLike[str]) -> Path:
    """``<root>/grefcoco/instances.json``."""
    return Path(root) / "grefcoco" / "instances.json"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_ref_targets(ref: dict[str, Any], where: str) -> tuple[int, ...]:
    """The annotation ids a ref points to; ``()`` for a no-target ref.

    Raises:
        DatasetError: ``ann_id`` is missing or malformed, mixes -1 with real ids, or
            disagrees with ``no_target``.
    """
    if "ann_id" not in ref:
        raise DatasetError(f"{where}: missing field 'ann_id'")
    raw = ref["ann_id"]
    ids = [raw] if _is_int(raw) else raw
    if not (isinstance(ids, list) and ids and all(_is_int(a) for a in ids)):
        raise DatasetError(
            f"{where}: field 'ann_id' must be an integer or a non-empty list of integers "
            f"([-1] for no target), got {raw!r:.80}"
        )
    empty = ids == [_NO_TARGET]
    if not empty and (_NO_TARGET in ids or any(a < 0 for a in ids)):
        raise DatasetError(f"{where}: 'ann_id' {ids!r:.80} mixes -1 (no target) with targets")
    flag = ref.get("no_target")
    if flag is not None:
        if not isinstance(flag, bool):
            raise DatasetError(f"{where}: field 'no_target' must be true or false")
        if flag != empty:
            raise DatasetError(
                f"{where}: 'no_target' is {str(flag).lower()} but 'ann_id' is {ids!r:.80}"
            )
    return () if empty else tuple(sorted(set(ids)))


def parse_ref(raw: Any, i: int, path: Path) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Validate ref #``i`` of ``path``; return it with its target ids (``()``: no target).

    Raises:
        DatasetError: A field is missing or malformed (the message names file, ref and field).
    """
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: ref #{i} is not an object")
    where = f"{path}: ref #{i} (ref_id {raw.get('ref_id')!r:.20})"
    for key in ("ref_id", "image_id"):
        if key not in raw:
            raise DatasetError(f"{where}: missing field '{key}'")
        if not _is_int(raw[key]):
            raise DatasetError(f"{where}: field '{key}' must be an integer")
    if not isinstance(raw.get("split"), str):
        raise DatasetError(f"{where}: missing string field 'split'")
    ann_ids = parse_ref_targets(raw, where)
    sents = raw.get("sentences")
    if not isinstance(sents, list):
        raise DatasetError(f"{where}: missing list 'sentences'")
    for j, sent in enumerate(sents):
        if not (isinstance(sent, dict) and isinstance(sent.get("sent"), str)):
            raise DatasetError(f"{where}: sentence {j} has no string field 'sent'")
    return raw, ann_ids


@dataclass(frozen=True)
class _Expression:
    text: str
    targets: tuple[int, ...]  # non-crowd annotation ids; () for no target
    sentence_count: int


class GRefCocoDataset(CocoImageItems):
    """One gRefCOCO split, one item per image; implements ``tseg.data.base.RefDataset``.

    Args:
        root: The folder holding ``grefcoco/`` and ``images/`` (module docstring).
        split: ``"train"``, ``"val"``, ``"testA"`` or ``"testB"``.
        image_dir: COCO train2014 images; default ``<root>/images/train2014``.
        no_target: Keep the expressions that refer to nothing (empty masks).

    Raises:
        DatasetError: Unknown split, or a missing or malformed file (the message names the
            file, the ref and the field).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        image_dir: str | os.PathLike[str] | None = None,
        no_target: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"gRefCOCO has no split {split!r}; valid: {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.image_dir = default_image_dir(root) if image_dir is None else Path(image_dir)
        self.keep_no_target = no_target
        self.refs_file = grefs_path(root)
        self.instances_file = instances_path(root)

        refs = load_json(self.refs_file)
        if not isinstance(refs, list):
            raise DatasetError(f"{self.refs_file}: expected a list of refs")
        split_refs = self._split_refs(refs)
        instances = load_instances(self.instances_file)
        self.num_refs = len(split_refs)
        self.num_sentences = sum(len(r["sentences"]) for r, _ in split_refs)
        self.num_no_target_refs = sum(1 for _, t in split_refs if not t)
        images = index_images(
            instances["images"],
            {r["image_id"] for r, _ in split_refs},
            self.image_dir,
            self.instances_file,
        )
        self._anns = index_annotations(
            instances["annotations"], {a for _, t in split_refs for a in t}, self.instances_file
        )

        by_image: dict[int, list[tuple[dict[str, Any], tuple[int, ...]]]] = {}
        for ref, ann_ids in split_refs:
            where = f"{self.refs_file}: ref_id {ref['ref_id']}"
            if ref["image_id"] not in images:
                raise DatasetError(
                    f"{where}: image_id {ref['image_id']} is not in {self.instances_file}"
                )
            targets = self._targets(ref, ann_ids, where)
            if targets or self.keep_no_target:
                by_image.setdefault(ref["image_id"], []).append((ref, targets))

        self._fill_items(by_image, images)

    # -- loading helpers

    def _split_refs(self, refs: list[Any]) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
        out = []
        for i, raw in enumerate(refs):
            if not isinstance(raw, dict):
                raise DatasetError(f"{self.refs_file}: ref #{i} is not an object")
            if "split" not in raw:
                raise DatasetError(f"{self.refs_file}: ref #{i} has no field 'split'")
            if raw["split"] == self.split:
                out.append(parse_ref(raw, i, self.refs_file))
        return out

    def _targets(
        self, ref: dict[str, Any], ann_ids: tuple[int, ...], where: str
    ) -> tuple[int, ...]:
        """The non-crowd targets of a ref, checked against ``instances.json``."""
        for a in ann_ids:
            ann = self._anns.get(a)
            if ann is None:
                raise DatasetError(f"{where}: ann_id {a} is not in {self.instances_file}")
            if ann.get("image_id") != ref["image_id"]:
                raise DatasetError(
                    f"{where}: ann_id {a} belongs to image {ann.get('image_id')!r}, not to "
                    f"image {ref['image_id']}"
                )
        targets = tuple(a for a in ann_ids if not self._anns[a].get("iscrowd", 0))
        if ann_ids and not targets:
            raise DatasetError(
                f"{where}: every target ({', '.join(map(str, ann_ids))}) is a crowd annotation, "
                "which gRefCOCO's ground truth leaves out: no mask would remain"
            )
        return targets

    def _group(self, refs: list[tuple[dict[str, Any], tuple[int, ...]]]) -> tuple[_Expression, ...]:
        entries: dict[str, list[Any]] = {}  # key -> [text, targets, count]
        ambiguous: dict[str, int] = {}
        for ref, targets in sorted(refs, key=lambda rt: rt[0]["ref_id"]):
            for sent in ref["sentences"]:
                key = normalize_expression(sent["sent"])
                if not key:
                    self.num_dropped_sentences += 1
                elif key in ambiguous:
                    ambiguous[key] += 1
                elif key not in entries:
                    entries[key] = [sent["sent"].strip(), targets, 1]
                elif entries[key][1] == targets:
                    entries[key][2] += 1
                else:
                    ambiguous[key] = entries.pop(key)[2] + 1
        self.num_dropped_sentences += sum(ambiguous.values())
        return tuple(_Expression(t, a, c) for t, a, c in entries.values())

    # -- RefDataset protocol (the rest is in CocoImageItems)

    def masks(self, idx: int) -> np.ndarray:
        """Bool masks [K, H, W]: union of each expression's targets; empty for no target."""
        item = self._item(idx)
        cache: dict[int, np.ndarray] = {}
        out = np.zeros((len(item.expressions), item.height, item.width), dtype=bool)
        for k, expr in enumerate(item.expressions):
            for a in expr.targets:
                out[k] |= self._annotation_mask(item, a, cache)
        return out

    # -- extras

    def no_target(self, idx: int) -> list[bool]:
        """Per expression of image ``idx``: True when it refers to nothing."""
        return [not e.targets for e in self._item(idx).expressions]

    def ann_ids(self, idx: int) -> list[tuple[int, ...]]:
        """The (non-crowd) target annotation ids of each expression; ``()`` for no target."""
        return [e.targets for e in self._item(idx).expressions]

    def __repr__(self) -> str:
        return (
            f"GRefCocoDataset(split={self.split!r}, images={len(self)}, "
            f"expressions={self.num_pairs()}, no_target_refs={self.num_no_target_refs})"
        )


def build(cfg: DataConfig, split: str) -> GRefCocoDataset:
    """``data.dataset=grefcoco``; the no-target expressions are left out of "train" (weak
    training reads every expression of an image as present in it)."""
    require_root(cfg)
    image_dir = resolve_under(cfg.root, cfg.image_dir) or None
    name = split_name(cfg, split)
    return GRefCocoDataset(cfg.root, name, image_dir, no_target=split != "train")
