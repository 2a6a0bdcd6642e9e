"""Pascal VOC 2012 with the SBD augmentation (``train_aug``), for semantic segmentation.

Expected files (``root`` contains ``VOC2012/``; the usual VOCdevkit layout)::

    <root>/VOC2012/JPEGImages/<id>.jpg
    <root>/VOC2012/SegmentationClass/<id>.png        VOC labels (palette PNG, class
                                                     indices, 255 = ignored border)
    <root>/VOC2012/SegmentationClassAug/<id>.png     SBD + VOC labels for train_aug
                                                     (grayscale or palette PNG)
    <root>/VOC2012/ImageSets/Segmentation/{train,val,trainval,train_aug}.txt

A list file has one image per line, either the bare id (``2007_000032``) or the
DeepLab-style pair ``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``
(only the id is used). ``train_aug`` (10,582 images) reads labels from
``SegmentationClassAug``, the other splits from ``SegmentationClass``.

Expressions are the readable names (``VOC_CLASS_NAMES``) of the classes present in the
label PNG, background and 255 excluded. In weakly-supervised mode this class presence is
the only information used from the label file (it is the standard source of image-level
labels for VOC); pixel labels are read only by ``masks`` and ``label_map``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tseg.config import DataConfig
from tseg.data.base import DatasetError
from tseg.data.files import read_rgb
from tseg.data.paths import require_root, split_name

__all__ = [
    "IGNORE_INDEX",
    "SPLITS",
    "VOC_CLASSES",
    "VOC_CLASS_NAMES",
    "VocDataset",
    "build",
    "default_label_dir",
    "read_id_list",
    "read_label_png",
    "split_list_path",
]

#: VOC class identifiers; the index is the label value in the PNGs.
VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

#: The same classes as plain text, used as expressions (a text encoder reads them).
VOC_CLASS_NAMES: tuple[str, ...] = tuple(
    {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}.get(
        c, c
    )
    for c in VOC_CLASSES
)

IGNORE_INDEX = 255
SPLITS: tuple[str, ...] = ("train", "val", "trainval", "train_aug")

_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def split_list_path(root: str | os.PathLike[str], split: str) -> Path:
    """``<root>/VOC2012/ImageSets/Segmentation/<split>.txt``."""
    return Path(root) / "VOC2012" / "ImageSets" / "Segmentation" / f"{split}.txt"


def default_label_dir(root: str | os.PathLike[str], split: str) -> Path:
    """``SegmentationClassAug`` for ``train_aug``, else ``SegmentationClass``."""
    name = "SegmentationClassAug" if split == "train_aug" else "SegmentationClass"
    return Path(root) / "VOC2012" / name


def read_id_list(path: Path) -> list[str]:
    """Read a VOC split list (bare ids or DeepLab-style path pairs).

    Raises:
        DatasetError: Missing file, a malformed line, an id that is not a plain file
            stem (e.g. ``../x``), or a repeated id.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    ids: list[str] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 2:
            raise DatasetError(f"{path}:{lineno}: expected an image id or an image/label pair")
        first = tokens[0]
        # "/JPEGImages/2007_000032.jpg" -> "2007_000032"; a bare id stays as it is.
        image_id = first.rsplit("/", 1)[-1].removesuffix(".jpg") if len(tokens) == 2 else first
        if not _ID.match(image_id) or any(".." in t.split("/") for t in tokens):
            raise DatasetError(f"{path}:{lineno}: invalid image id {image_id!r}")
        if image_id in seen:
            raise DatasetError(f"{path}:{lineno}: image id {image_id!r} is listed twice")
        seen.add(image_id)
        ids.append(image_id)
    return ids


def read_label_png(path: Path) -> np.ndarray:
    """Read a class-index label PNG (palette or grayscale) as uint8 [H, W].

    Raises:
        DatasetError: Missing file, not a PNG of indices (e.g. an RGB colour rendering),
            or values other than 0-20 and 255.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L"):
                raise DatasetError(
                    f"{path}: label PNG has mode {im.mode!r}; expected a palette ('P') or "
                    "grayscale ('L') image of class indices"
                )
            # For 'P' images the array holds the palette indices, i.e. the classes.
            labels = np.array(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"{path}: label file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: cannot read the label PNG ({e})") from None
    bad = np.unique(labels[(labels >= len(VOC_CLASSES)) & (labels != IGNORE_INDEX)])
    if bad.size:
        raise DatasetError(
            f"{path}: label values {bad[:10].tolist()} are not VOC classes (0-20) or 255"
        )
    return labels


class VocDataset:
    """Pascal VOC 2012 (+ SBD) semantic segmentation, one item per image.

    Args:
        root: Folder that contains ``VOC2012/``.
        split: ``"train"``, ``"val"``, ``"trainval"`` or ``"train_aug"``.
        label_dir: Label PNG folder; default see ``default_label_dir``.

    Raises:
        DatasetError: Unknown split, or a missing or malformed list file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        label_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"unknown VOC split {split!r}; valid: {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.image_dir = self.root / "VOC2012" / "JPEGImages"
        self.label_dir = default_label_dir(root, split) if label_dir is None else Path(label_dir)
        self.list_file = split_list_path(root, split)
        self.ids = read_id_list(self.list_file)
        self._present: dict[int, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def _id(self, idx: int) -> str:
        if not -len(self.ids) <= idx < len(self.ids):
            raise IndexError(f"image index {idx} out of range for {len(self.ids)} images")
        return self.ids[idx]

    def image_path(self, idx: int) -> Path:
        """``JPEGImages/<id>.jpg``."""
        return self.image_dir / f"{self._id(idx)}.jpg"

    def label_path(self, idx: int) -> Path:
        """``<label_dir>/<id>.png``."""
        return self.label_dir / f"{self._id(idx)}.png"

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 [H, W, 3]."""
        return read_rgb(self.image_path(idx))

    def label_map(self, idx: int) -> np.ndarray:
        """Raw labels uint8 [H, W]: class indices, 255 kept (for the confusion matrix)."""
        return read_label_png(self.label_path(idx))

    def class_ids(self, idx: int) -> list[int]:
        """Indices (1-20) of the classes present in image ``idx`` (image-level labels)."""
        self._id(idx)  # range check
        idx %= len(self.ids)
        if idx not in self._present:
            values = np.unique(self.label_map(idx))
            self._present[idx] = tuple(int(v) for v in values if 0 < v < len(VOC_CLASSES))
        return list(self._present[idx])

    def expressions(self, idx: int) -> list[str]:
        """Readable names of the classes present (background and 255 excluded)."""
        return [VOC_CLASS_NAMES[c] for c in self.class_ids(idx)]

    def masks(self, idx: int) -> np.ndarray:
        """Bool masks [K, H, W], one per present class; 255 pixels are in no mask."""
        labels = self.label_map(idx)
        present = [int(v) for v in np.unique(labels) if 0 < v < len(VOC_CLASSES)]
        return (
            np.stack([labels == c for c in present])
            if present
            else np.zeros((0, *labels.shape), dtype=bool)
        )

    def __repr__(self) -> str:
        return f"VocDataset(split={self.split!r}, images={len(self)})"


def build(cfg: DataConfig, split: str) -> VocDataset:
    """``data.dataset=voc`` (``data.train_split=train_aug`` for the SBD-augmented set)."""
    require_root(cfg)
    return VocDataset(cfg.root, split_name(cfg, split))
