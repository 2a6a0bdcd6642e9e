"""COCO captions as weak training data (``data.dataset=coco_captions``).

Expected files (``root`` is the COCO folder, ``data.root``; ``split`` as in the file names,
e.g. ``train2017`` or ``train2014``, set with ``data.train_split``)::

    <root>/annotations/captions_<split>.json   images (id, file_name; height and width are
                                               checked when given), annotations (id, image_id,
                                               caption)
    <root>/<split>/<file_name>                 the images (``data.image_dir`` to put them
                                               elsewhere)

One item per image with at least one caption, in the order of image ids; its expressions are
its distinct captions in the order of the file (COCO has five per image). Images without a
caption are left out and counted (``num_images_without_captions``). An annotation naming an
image id that ``images`` does not hold, a caption that is not a non-empty string, or a missing
image file is an error naming the file and the annotation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tseg.config import DataConfig
from tseg.data.base import DatasetError
from tseg.data.own.coco import (
    CocoImage,
    CocoItems,
    coco_location,
    existing_images,
    index_images,
    load_coco_json,
)
from tseg.data.own.weak import RecordError, WeakDataset, clean_expressions, merge_expressions
from tseg.data.paths import split_name

__all__ = ["CocoCaptionsDataset", "build", "read_captions"]


def read_captions(
    json_path: Path, image_dir: Path | Sequence[Path]
) -> tuple[dict[int, CocoImage], dict[int, list[list[str]]], list[RecordError]]:
    """Parse a captions file -> (images by id, captions by image id, bad annotations).

    Bad annotations (unknown image, bad caption) are returned rather than raised, so that
    ``tseg data check`` can count them; the loader raises the first.

    Raises:
        DatasetError: The file is missing or malformed, or an ``images`` entry is bad.
    """
    data = load_coco_json(json_path, ("images", "annotations"))
    images = index_images(data["images"], json_path, image_dir, need_size=False)
    captions: dict[int, list[list[str]]] = {}
    bad: list[RecordError] = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{json_path}: annotations[{i}]"
        if not isinstance(ann, dict):
            bad.append(RecordError(f"{where} is not an object", "malformed record"))
            continue
        where += f" (id {ann.get('id')!r})"
        image_id = ann.get("image_id")
        if not isinstance(image_id, int) or isinstance(image_id, bool) or image_id not in images:
            bad.append(
                RecordError(
                    f"{where}: image_id {image_id!r} is not in 'images' of {json_path}",
                    "unknown image",
                )
            )
            continue
        if "caption" not in ann:
            bad.append(RecordError(f"{where}: no field 'caption'", "no text"))
            continue
        try:
            captions.setdefault(image_id, []).append(
                clean_expressions([ann["caption"]], f"{where}: 'caption'")
            )
        except RecordError as e:
            bad.append(e)
    return images, captions, bad


class CocoCaptionsDataset(CocoItems, WeakDataset):
    """A COCO captions split: one item per captioned image.

    Args:
        root: The COCO folder (holds ``annotations/captions_<split>.json``).
        split: The split in the file names, e.g. ``train2017``.
        image_dir: Another folder to look for images in, after ``<root>/<split>``, ``images/``.
        annotations: The captions file itself (its ``file_name`` relative to its folder).

    Raises:
        DatasetError: See the module docstring.
    """

    name = "coco_captions"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train2017",
        image_dir: str | None = None,
        annotations: str | None = None,
    ) -> None:
        from tseg.data.own.coco_layout import coco_source

        self.root = Path(root)
        self.split = split
        src = coco_source(root, "captions", split, annotations, image_dir)
        self.json_path, self.image_dirs = src.json_path, src.image_dirs
        self.source = self.json_path
        images, captions, bad = read_captions(self.json_path, self.image_dirs)
        if bad:
            raise bad[0]
        self.num_images_without_captions = len(images) - len(captions)
        self._items = [
            (im, merge_expressions(captions[im.image_id]))
            for im in existing_images(images, list(captions), self.json_path)
        ]
        if not self._items:
            raise DatasetError(f"{self.json_path}: no image has a caption")

    def expressions(self, idx: int) -> list[str]:
        """The image's distinct captions."""
        return list(self._items[idx][1])

    def __repr__(self) -> str:
        return f"CocoCaptionsDataset({str(self.json_path)!r}, images={len(self)})"


def build(cfg: DataConfig, split: str) -> CocoCaptionsDataset:
    """``data.dataset=coco_captions``: the split's captions file, or ``data.annotations``."""
    image_dir, annotations = coco_location(cfg)
    return CocoCaptionsDataset(cfg.root, split_name(cfg, split), image_dir, annotations)
