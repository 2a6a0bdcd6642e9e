"""Pascal VOC 2012 + SBD loader on fixtures in the VOCdevkit layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders.voc import (
    AUG_IDS,
    H,
    W,
    label_for,
    make_voc,
    save_palette_png,
)
from PIL import Image

from tseg.data.base import DatasetError, RefDataset
from tseg.data.paper.voc import VOC_CLASS_NAMES, VOC_CLASSES, VocDataset, read_id_list


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "VOCdevkit")


def test_classes() -> None:
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background"
    assert VOC_CLASSES[15] == "person" and VOC_CLASS_NAMES[11] == "dining table"


def test_val_expressions_masks_and_labels(root: Path) -> None:
    ds = VocDataset(root, "val")
    assert isinstance(ds, RefDataset)
    assert len(ds) == 2
    assert ds.expressions(0) == ["dog", "person"]  # 2007_000033: odd id
    assert ds.class_ids(0) == [12, 15]
    assert ds.expressions(1) == ["person"]
    masks = ds.masks(0)
    assert masks.shape == (2, H, W) and masks.dtype == bool
    person = np.zeros((H, W), dtype=bool)
    person[3:7, 3:7] = True
    np.testing.assert_array_equal(masks[1], person)
    assert masks[0][:, 12:].all() and masks[0].sum() == H * 4
    assert not masks.any(axis=0)[2, 2]  # 255 border: in no mask
    labels = ds.label_map(0)
    assert labels.dtype == np.uint8 and labels[2, 2] == 255 and labels[4, 4] == 15
    img = ds.image(0)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8


def test_train_aug_reads_deeplab_pairs_and_aug_labels(root: Path) -> None:
    ds = VocDataset(root, "train_aug")
    assert ds.ids == AUG_IDS
    assert ds.label_path(2).parent.name == "SegmentationClassAug"
    assert ds.expressions(2) == ["dog", "person"]
    assert VocDataset(root, "train").label_path(0).parent.name == "SegmentationClass"


def test_unknown_split(root: Path) -> None:
    with pytest.raises(DatasetError, match="unknown VOC split 'test'"):
        VocDataset(root, "test")


def test_missing_list(root: Path) -> None:
    (root / "VOC2012/ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DatasetError, match=r"Segmentation/val\.txt: file not found"):
        VocDataset(root, "val")


@pytest.mark.parametrize(
    "line, message",
    [
        ("../../etc/passwd", "invalid image id"),
        ("/JPEGImages/../x.jpg /x.png", "invalid image id"),
        ("a b c", "expected an image id"),
        ("2007_000033\n2007_000033", "listed twice"),
    ],
)
def test_malformed_list(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "val.txt"
    path.write_text(line + "\n")
    with pytest.raises(DatasetError, match=f"val.txt:[12]: .*{message}"):
        read_id_list(path)


def test_missing_label_and_image(root: Path) -> None:
    (root / "VOC2012/SegmentationClass/2007_000042.png").unlink()
    (root / "VOC2012/JPEGImages/2007_000042.jpg").unlink()
    ds = VocDataset(root, "val")
    with pytest.raises(DatasetError, match=r"2007_000042\.png: label file not found"):
        ds.expressions(1)
    with pytest.raises(DatasetError, match=r"2007_000042\.jpg: image file not found"):
        ds.image(1)


def test_colour_png_is_refused(root: Path) -> None:
    Image.new("RGB", (W, H), (128, 0, 0)).save(root / "VOC2012/SegmentationClass/2007_000033.png")
    with pytest.raises(DatasetError, match="mode 'RGB'"):
        VocDataset(root, "val").label_map(0)


def test_out_of_range_label_is_refused(root: Path) -> None:
    lab = label_for("2007_000033")
    lab[0, 0] = 30
    save_palette_png(root / "VOC2012/SegmentationClass/2007_000033.png", lab)
    with pytest.raises(DatasetError, match=r"label values \[30\]"):
        VocDataset(root, "val").masks(0)


def test_background_only_image(root: Path) -> None:
    save_palette_png(root / "VOC2012/SegmentationClass/2007_000033.png", np.zeros((H, W), np.uint8))
    ds = VocDataset(root, "val")
    assert ds.expressions(0) == []
    assert ds.masks(0).shape == (0, H, W)
