"""RefCOCO, RefCOCO+ and RefCOCOg in the layout of the public ``refer`` toolkit.

Expected files (``root`` is the toolkit's ``data`` folder)::

    <root>/<dataset>/refs(<splitBy>).p     pickled list of refs (python2, protocol 2)
    <root>/<dataset>/instances.json        COCO-style images / annotations / categories
    <root>/images/train2014/COCO_train2014_%012d.jpg   (``image_dir``; file names are
                                           taken from ``instances.json``; the toolkit's
                                           images/mscoco/images/train2014 also works)

A ref is a dict with ``ref_id``, ``ann_id``, ``image_id``, ``category_id``, ``split``,
``file_name`` and ``sentences`` (dicts with ``sent``, ``raw``, ``tokens``, ``sent_id``).

Items are images: all refs of one image in the split are grouped, and the image's
expressions are the distinct ``sent`` strings of those refs (distinct after
``normalize_expression``), each mapped to the mask of its ref's annotation.

Ambiguous duplicates are dropped: when the same normalised sentence describes two
different objects of one image (annotators do write "left guy" for two refs), no single
mask is its ground truth, so the sentence is removed for that image (both occurrences)
and counted in ``num_dropped_sentences``. An image left with no expression is skipped
(``num_dropped_images``). Repeats of a sentence for the same object are kept once;
``sentence_counts`` says how many annotated sentences each expression stands for, so an
evaluation can weight expressions to reproduce the per-sentence protocol.

Longer than 400 lines because reading the refer toolkit's pickle and COCO JSON safely (with a
named error for every malformed field) is most of it; it is one dataset's one file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError, normalize_expression
from tseg.data.files import join_inside, load_json, read_rgb
from tseg.data.numbers import coordinate_range, is_number
from tseg.data.paths import require_root, resolve_under, split_name
from tseg.data.safe_pickle import load_pickle

__all__ = [
    "DATASETS",
    "DEFAULT_SPLIT_BY",
    "CocoImage",
    "CocoImageItems",
    "VALID_SPLITS",
    "RefCocoDataset",
    "build",
    "check_dataset_args",
    "decode_segmentation",
    "refs_path",
    "instances_path",
    "default_image_dir",
    "index_annotations",
    "index_images",
    "load_instances",
]

DATASETS: tuple[str, ...] = ("refcoco", "refcoco+", "refcocog")
DEFAULT_SPLIT_BY: dict[str, str] = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}

#: Split names that exist for each (dataset, splitBy) pair. The google split of
#: RefCOCOg has no test set; the one of RefCOCO has (TFDS ref_coco catalogue).
VALID_SPLITS: dict[tuple[str, str], tuple[str, ...]] = {
    ("refcoco", "unc"): ("train", "val", "testA", "testB"),
    ("refcoco+", "unc"): ("train", "val", "testA", "testB"),
    ("refcocog", "umd"): ("train", "val", "test"),
    ("refcocog", "google"): ("train", "val"),
    ("refcoco", "google"): ("train", "val", "test"),
}


def refs_path(root: str | os.PathLike[str], dataset: str, split_by: str) -> Path:
    """Path of the refs pickle: ``<root>/<dataset>/refs(<split_by>).p``."""
    return Path(root) / dataset / f"refs({split_by}).p"


def instances_path(root: str | os.PathLike[str], dataset: str) -> Path:
    """Path of the annotations: ``<root>/<dataset>/instances.json``."""
    return Path(root) / dataset / "instances.json"


def default_image_dir(root: str | os.PathLike[str]) -> Path:
    """Default COCO train2014 image folder.

    ``<root>/images/train2014``, unless only the ``refer`` toolkit's own location
    ``<root>/images/mscoco/images/train2014`` exists.
    """
    plain = Path(root) / "images" / "train2014"
    toolkit = Path(root) / "images" / "mscoco" / "images" / "train2014"
    return toolkit if not plain.is_dir() and toolkit.is_dir() else plain


def check_dataset_args(dataset: str, split_by: str | None, split: str | None) -> str:
    """Validate the (dataset, splitBy, split) triple; return the resolved splitBy."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    split_by = DEFAULT_SPLIT_BY[dataset] if split_by is None else split_by
    valid = VALID_SPLITS.get((dataset, split_by))
    if valid is None:
        options = sorted(sb for d, sb in VALID_SPLITS if d == dataset)
        raise DatasetError(
            f"{dataset} has no {split_by!r} split; available splitBy: {', '.join(options)}"
        )
    if split is not None and split not in valid:
        raise DatasetError(
            f"{dataset} ({split_by}) has no split {split!r}; valid splits: {', '.join(valid)}"
        )
    return split_by


# --------------------------------------------------------------------------- masks


def _rle_string_counts(s: str) -> list[int] | None:
    """Parse a compressed COCO RLE string into run lengths (None if malformed).

    The format (COCO maskApi) packs each count in 6-bit characters offset by 48, 5
    payload bits plus a continuation bit, the last char's bit 4 being a sign bit;
    counts after the second are stored as differences to the count two places back.
    Parsed here (rather than handing arbitrary strings to the C decoder, which does
    not bound-check) so that malformed strings are reported, not decoded into garbage.
    """
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n or k > 12:  # truncated, or more bits than a C long holds
                return None
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _check_counts(counts: Sequence[int], height: int, width: int, where: str) -> None:
    if any(c < 0 for c in counts):
        raise DatasetError(f"{where}: RLE has a negative run length")
    if sum(counts) != height * width:
        raise DatasetError(
            f"{where}: RLE run lengths sum to {sum(counts)}, expected height*width = "
            f"{height * width}"
        )


def decode_segmentation(seg: Any, height: int, width: int, *, where: str) -> np.ndarray:
    """Decode a COCO ``segmentation`` into a bool mask [height, width].

    Accepts a list of polygons (each a flat ``[x1, y1, x2, y2, ...]`` list of at least 3
    points), an uncompressed RLE (``counts`` a list, column-major) or a compressed RLE
    (``counts`` a string); decoding is done by pycocotools (frPyObjects, merge,
    decode) at the image's height and width, after validation.

    Raises:
        DatasetError: The segmentation is malformed (the message starts with ``where``).
    """
    from pycocotools import mask as mask_utils  # optional dependency ("data" extra)

    if isinstance(seg, list):
        if not seg:
            raise DatasetError(f"{where}: empty segmentation")
        # Coordinates far outside the image are corrupt data; they would also make the
        # C rasteriser allocate memory in proportion to the edge length.
        lo, hi = coordinate_range(height, width)
        polys: list[list[float]] = []
        for j, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(is_number(v) for v in poly):
                raise DatasetError(f"{where}: polygon {j} is not a list of numbers")
            if len(poly) % 2 or len(poly) < 6:
                # pycocotools would read a 4-number polygon as a box: refuse it.
                raise DatasetError(
                    f"{where}: polygon {j} has {len(poly)} coordinates; a polygon needs an "
                    "even number and at least 3 points"
                )
            if not all(lo <= v <= hi for v in poly):
                raise DatasetError(f"{where}: polygon {j} has a coordinate far outside the image")
            polys.append([float(v) for v in poly])
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise DatasetError(f"{where}: RLE segmentation needs 'counts' and 'size'")
        size = seg["size"]
        if not (isinstance(size, list) and len(size) == 2 and size == [height, width]):
            raise DatasetError(
                f"{where}: RLE size {size!r} does not match the image size [{height}, {width}]"
            )
        counts = seg["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
                raise DatasetError(f"{where}: RLE counts must be integers")
            _check_counts(counts, height, width, where)
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        elif isinstance(counts, str):
            parsed = _rle_string_counts(counts)
            if parsed is None:
                raise DatasetError(f"{where}: malformed compressed RLE string")
            _check_counts(parsed, height, width, where)
            rle = {"size": [height, width], "counts": counts.encode("ascii")}
        else:
            raise DatasetError(f"{where}: RLE counts must be a list or a string")
    else:
        raise DatasetError(f"{where}: segmentation must be a polygon list or an RLE dict")
    with warnings.catch_warnings():
        # pycocotools < 2.1 trips numpy 2's __array__(copy=...) deprecation; harmless.
        warnings.simplefilter("ignore", DeprecationWarning)
        mask = np.asarray(mask_utils.decode(rle), dtype=bool)
    return np.ascontiguousarray(mask.reshape(height, width))


def _check_box(box: Any, where: str) -> list[float]:
    if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)):
        raise DatasetError(f"{where}: bbox must be a list of 4 numbers [x, y, w, h]")
    if box[2] < 0 or box[3] < 0:
        raise DatasetError(f"{where}: bbox has a negative width or height")
    return [float(v) for v in box]


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class _Expression:
    text: str
    ann_id: int
    ref_ids: tuple[int, ...]
    sentence_count: int


@dataclass(frozen=True)
class CocoImage:
    """One item of a COCO-image referring dataset: the image and its expressions."""

    image_id: int
    path: Path
    height: int
    width: int
    expressions: tuple[Any, ...]  # each with ``text`` and ``sentence_count``


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _require(d: dict[str, Any], key: str, check: Any, where: str, what: str) -> Any:
    if key not in d:
        raise DatasetError(f"{where}: missing field '{key}'")
    if not check(d[key]):
        raise DatasetError(f"{where}: field '{key}' must be {what}, got {d[key]!r:.80}")
    return d[key]


def load_instances(path: Path) -> dict[str, Any]:
    """``instances.json``: a COCO object with lists ``images`` and ``annotations``."""
    instances = load_json(path)
    if not isinstance(instances, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    for key in ("images", "annotations"):
        if not isinstance(instances.get(key), list):
            raise DatasetError(f"{path}: missing list '{key}'")
    return instances


def index_images(
    images: list[Any], wanted: set[int], image_dir: Path, instances_file: Path
) -> dict[int, tuple[Path, int, int]]:
    """``{image id: (file path, height, width)}`` for the ``wanted`` COCO images, validated."""
    out: dict[int, tuple[Path, int, int]] = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            raise DatasetError(f"{instances_file}: images[{i}] is not an object")
        if not _is_int(img.get("id")) or img["id"] not in wanted:
            continue
        where = f"{instances_file}: image id {img['id']}"
        name = _require(img, "file_name", lambda v: isinstance(v, str), where, "a string")
        height = _require(img, "height", lambda v: _is_int(v) and v > 0, where, "a positive int")
        width = _require(img, "width", lambda v: _is_int(v) and v > 0, where, "a positive int")
        path = join_inside(image_dir, name, where=where)
        out[img["id"]] = (path, height, width)
    return out


def index_annotations(
    anns: list[Any], wanted: set[int], instances_file: Path
) -> dict[int, dict[str, Any]]:
    """``{annotation id: annotation}`` for the ``wanted`` COCO annotations."""
    out: dict[int, dict[str, Any]] = {}
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise DatasetError(f"{instances_file}: annotations[{i}] is not an object")
        if _is_int(ann.get("id")) and ann["id"] in wanted:
            out[ann["id"]] = ann
    return out


class CocoImageItems:
    """What RefCOCO-style datasets share: items are COCO images with their expressions.

    A subclass sets ``_anns`` (annotation id -> COCO annotation) and ``instances_file``,
    groups one image's refs into expressions in ``_group`` (each with ``text`` and
    ``sentence_count``), calls ``_fill_items`` and writes ``masks``.
    """

    _items: list[CocoImage]
    _anns: dict[int, dict[str, Any]]
    instances_file: Path

    def _group(self, refs: list[Any]) -> tuple[Any, ...]:
        raise NotImplementedError

    def _fill_items(
        self, by_image: dict[int, list[Any]], images: dict[int, tuple[Path, int, int]]
    ) -> None:
        """One item per image (by id) from its refs; images left with no expression skipped."""
        self.num_dropped_sentences = 0
        self.num_dropped_images = 0
        self._items = []
        for image_id in sorted(by_image):
            exprs = self._group(by_image[image_id])
            if not exprs:
                self.num_dropped_images += 1
                continue
            path, height, width = images[image_id]
            self._items.append(CocoImage(image_id, path, height, width, exprs))

    def __len__(self) -> int:
        return len(self._items)

    def _item(self, idx: int) -> CocoImage:
        if not -len(self._items) <= idx < len(self._items):
            raise IndexError(f"image index {idx} out of range for {len(self._items)} images")
        return self._items[idx]

    def _annotation_mask(
        self, item: CocoImage, ann_id: int, cache: dict[int, np.ndarray]
    ) -> np.ndarray:
        """The decoded mask [H, W] of one annotation of ``item`` (``cache``d by id)."""
        if ann_id not in cache:
            ann = self._anns[ann_id]
            where = f"{self.instances_file}: annotation id {ann_id}"
            if "segmentation" not in ann:
                raise DatasetError(f"{where}: missing field 'segmentation'")
            cache[ann_id] = decode_segmentation(
                ann["segmentation"], item.height, item.width, where=where
            )
        return cache[ann_id]

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 [H, W, 3] (checked against the annotated size)."""
        item = self._item(idx)
        return read_rgb(item.path, size=(item.height, item.width))

    def expressions(self, idx: int) -> list[str]:
        """Distinct sentences of every ref of image ``idx`` in this split."""
        return [e.text for e in self._item(idx).expressions]

    def image_id(self, idx: int) -> int:
        """COCO image id of item ``idx``."""
        return self._item(idx).image_id

    def image_path(self, idx: int) -> Path:
        """Image file of item ``idx``."""
        return self._item(idx).path

    def image_size(self, idx: int) -> tuple[int, int]:
        """Annotated (height, width) of item ``idx``."""
        item = self._item(idx)
        return item.height, item.width

    def sentence_counts(self, idx: int) -> list[int]:
        """How many annotated sentences each expression of item ``idx`` stands for."""
        return [e.sentence_count for e in self._item(idx).expressions]

    def iter_pairs(self) -> Iterator[tuple[int, int]]:
        """Every (image index, expression index) pair, for per-expression evaluation."""
        for i, item in enumerate(self._items):
            for k in range(len(item.expressions)):
                yield i, k

    def num_pairs(self) -> int:
        """Number of (image, expression) pairs."""
        return sum(len(item.expressions) for item in self._items)


class RefCocoDataset(CocoImageItems):
    """One RefCOCO / RefCOCO+ / RefCOCOg split, one item per image.

    Args:
        root: The ``refer`` data folder (contains ``<dataset>/`` and ``images/``).
        dataset: ``"refcoco"``, ``"refcoco+"`` or ``"refcocog"``.
        split_by: ``"unc"`` (RefCOCO, RefCOCO+), ``"umd"`` or ``"google"`` (RefCOCOg,
            ``"google"`` also RefCOCO); default ``unc`` / ``umd``.
        split: A split valid for that splitBy (see ``VALID_SPLITS``).
        image_dir: COCO train2014 images; default ``<root>/images/train2014``.

    Raises:
        DatasetError: Unknown dataset/splitBy/split, or a missing or malformed file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        dataset: str = "refcoco",
        split_by: str | None = None,
        split: str = "val",
        image_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.dataset = dataset
        self.split_by = check_dataset_args(dataset, split_by, split)
        self.split = split
        self.image_dir = default_image_dir(root) if image_dir is None else Path(image_dir)
        self.refs_file = refs_path(root, dataset, self.split_by)
        self.instances_file = instances_path(root, dataset)

        refs = load_pickle(self.refs_file)
        if not isinstance(refs, list):
            raise DatasetError(
                f"{self.refs_file}: expected a list of refs, got {type(refs).__name__}"
            )
        instances = load_instances(self.instances_file)

        split_refs = self._split_refs(refs)
        self.num_refs = len(split_refs)
        self.num_sentences = sum(len(r["sentences"]) for r in split_refs)
        image_ids = {r["image_id"] for r in split_refs}
        images = index_images(instances["images"], image_ids, self.image_dir, self.instances_file)
        self._anns = index_annotations(
            instances["annotations"], {r["ann_id"] for r in split_refs}, self.instances_file
        )

        by_image: dict[int, list[dict[str, Any]]] = {}
        for ref in split_refs:
            ann = self._anns.get(ref["ann_id"])
            where = f"{self.refs_file}: ref_id {ref['ref_id']}"
            if ann is None:
                raise DatasetError(
                    f"{where}: ann_id {ref['ann_id']} is not in {self.instances_file}"
                )
            if ref["image_id"] not in images:
                raise DatasetError(
                    f"{where}: image_id {ref['image_id']} is not in {self.instances_file}"
                )
            if ann.get("image_id") != ref["image_id"]:
                raise DatasetError(
                    f"{where}: ann_id {ref['ann_id']} belongs to image {ann.get('image_id')!r}, "
                    f"not to image {ref['image_id']}"
                )
            by_image.setdefault(ref["image_id"], []).append(ref)

        self._fill_items(by_image, images)

    # -- loading helpers

    def _split_refs(self, refs: list[Any]) -> list[dict[str, Any]]:
        out = []
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict):
                raise DatasetError(f"{self.refs_file}: ref #{i} is not a dict")
            if "split" not in ref:
                raise DatasetError(f"{self.refs_file}: ref #{i} has no field 'split'")
            if ref["split"] != self.split:
                continue
            where = f"{self.refs_file}: ref #{i} (ref_id {ref.get('ref_id')!r})"
            for key in ("ref_id", "ann_id", "image_id"):
                _require(ref, key, _is_int, where, "an integer")
            sents = _require(ref, "sentences", lambda v: isinstance(v, list), where, "a list")
            for j, sent in enumerate(sents):
                if not (isinstance(sent, dict) and isinstance(sent.get("sent"), str)):
                    raise DatasetError(f"{where}: sentence {j} has no string field 'sent'")
            out.append(ref)
        return out

    def _group(self, refs: list[dict[str, Any]]) -> tuple[_Expression, ...]:
        # key -> [text, ann_id, ref_ids, count]; insertion order gives the fixed order.
        entries: dict[str, list[Any]] = {}
        ambiguous: dict[str, int] = {}
        for ref in sorted(refs, key=lambda r: r["ref_id"]):
            for sent in ref["sentences"]:
                key = normalize_expression(sent["sent"])
                if not key:
                    self.num_dropped_sentences += 1
                    continue
                if key in ambiguous:
                    ambiguous[key] += 1
                    continue
                entry = entries.get(key)
                if entry is None:
                    entries[key] = [sent["sent"].strip(), ref["ann_id"], [ref["ref_id"]], 1]
                elif entry[1] == ref["ann_id"]:
                    entry[3] += 1
                    if ref["ref_id"] not in entry[2]:
                        entry[2].append(ref["ref_id"])
                else:
                    ambiguous[key] = entry[3] + 1
                    del entries[key]
        self.num_dropped_sentences += sum(ambiguous.values())
        return tuple(_Expression(t, a, tuple(r), c) for t, a, r, c in entries.values())

    # -- RefDataset protocol (the rest is in CocoImageItems)

    def masks(self, idx: int) -> np.ndarray:
        """Bool masks [K, H, W] of each expression's object."""
        item = self._item(idx)
        cache: dict[int, np.ndarray] = {}
        out = np.zeros((len(item.expressions), item.height, item.width), dtype=bool)
        for k, expr in enumerate(item.expressions):
            out[k] = self._annotation_mask(item, expr.ann_id, cache)
        return out

    # -- extras

    def boxes(self, idx: int) -> np.ndarray:
        """COCO boxes [K, 4] (x, y, w, h in pixels), aligned with ``expressions``."""
        item = self._item(idx)
        out = np.zeros((len(item.expressions), 4), dtype=np.float64)
        for k, expr in enumerate(item.expressions):
            where = f"{self.instances_file}: annotation id {expr.ann_id}"
            ann = self._anns[expr.ann_id]
            if "bbox" not in ann:
                raise DatasetError(f"{where}: missing field 'bbox'")
            out[k] = _check_box(ann["bbox"], where)
        return out

    def ann_ids(self, idx: int) -> list[int]:
        """COCO annotation id of each expression of item ``idx``."""
        return [e.ann_id for e in self._item(idx).expressions]

    def ref_ids(self, idx: int) -> list[tuple[int, ...]]:
        """The ref ids each expression of item ``idx`` was annotated in."""
        return [e.ref_ids for e in self._item(idx).expressions]

    def __repr__(self) -> str:
        return (
            f"RefCocoDataset({self.dataset!r}, split_by={self.split_by!r}, split={self.split!r}, "
            f"images={len(self)}, expressions={self.num_pairs()})"
        )


def build(cfg: DataConfig, split: str) -> RefCocoDataset:
    """``data.dataset`` = refcoco, refcoco+ or refcocog: ``split`` of ``data.split_by``."""
    require_root(cfg)
    image_dir = resolve_under(cfg.root, cfg.image_dir) or None
    name = split_name(cfg, split)
    return RefCocoDataset(cfg.root, cfg.dataset, cfg.split_by or None, name, image_dir)
