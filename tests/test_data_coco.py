"""``coco`` (instances: polygons, RLE, crowd RLE) and ``coco_captions``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders.coco import H, W, box_mask, make_captions, make_instances
from PIL import Image
from pycocotools import mask as mask_utils

from tseg.config import build_config
from tseg.data import build_dataset
from tseg.data.base import DatasetError
from tseg.data.own.coco import CocoDataset
from tseg.data.own.coco_captions import CocoCaptionsDataset

# ----------------------------------------------------------------------- instances


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools on numpy 2
def test_instances_union_per_category_with_crowd(tmp_path: Path) -> None:
    ds = CocoDataset(make_instances(tmp_path), "val2017")
    assert len(ds) == 2 and ds.num_images_without_annotations == 1
    assert ds.class_names == ("cat", "dog")
    assert ds.expressions(0) == ["cat", "dog"] and ds.expressions(1) == ["dog"]
    masks = ds.masks(0)
    assert masks.shape == (2, H, W)
    polygon = mask_utils.decode(mask_utils.frPyObjects([[0, 0, 10, 0, 10, 10, 0, 10]], H, W))
    expected_cat = polygon[..., 0].astype(bool) | box_mask(12, 18, 20, 28)
    assert np.array_equal(masks[0], expected_cat)
    assert np.array_equal(masks[1], box_mask(14, 20, 24, 30))  # the crowd region
    labels = ds.label_map(0)
    assert labels[1, 1] == 1 and labels[19, 29] == 2 and labels[0, 29] == 0
    assert labels[15, 25] == 255  # a cat pixel inside the dog crowd: two classes, ignored
    assert ds.image(1)[0, 0, 0] == 80


def test_build_dataset_coco_uses_split_names(tmp_path: Path) -> None:
    make_instances(tmp_path)
    cfg = build_config(
        None, ["data.dataset=coco", f"data.root={tmp_path}", "data.val_split=val2017"]
    )
    assert len(build_dataset(cfg.data, "val")) == 2


def test_annotation_naming_an_unknown_image(tmp_path: Path) -> None:
    bad = {"id": 9, "image_id": 99, "category_id": 17, "segmentation": [[0, 0, 1, 0, 1, 1]]}
    make_instances(tmp_path, extra_anns=[bad])
    with pytest.raises(DatasetError, match=r"annotations\[4\] \(id 9\): image_id 99 is not in"):
        CocoDataset(tmp_path, "val2017")


def test_annotation_naming_an_unknown_category(tmp_path: Path) -> None:
    bad = {"id": 9, "image_id": 1, "category_id": 5, "segmentation": [[0, 0, 1, 0, 1, 1]]}
    make_instances(tmp_path, extra_anns=[bad])
    with pytest.raises(DatasetError, match="category_id 5 is not in 'categories'"):
        CocoDataset(tmp_path, "val2017")


def test_missing_instances_file_and_image(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"instances_val2017\.json: file not found"):
        CocoDataset(tmp_path, "val2017")
    make_instances(tmp_path)
    (tmp_path / "val2017" / "2.png").unlink()
    with pytest.raises(DatasetError, match=r"image id 2: file .*2\.png not found"):
        CocoDataset(tmp_path, "val2017")


def test_malformed_rle_is_named_when_read(tmp_path: Path) -> None:
    bad = {
        "id": 9,
        "image_id": 2,
        "category_id": 17,
        "segmentation": {"size": [H, W], "counts": [1, 2]},
    }
    make_instances(tmp_path, extra_anns=[bad])
    ds = CocoDataset(tmp_path, "val2017")
    with pytest.raises(DatasetError, match=r"annotations\[4\] \(id 9\): RLE run lengths sum"):
        ds.masks(1)


# ----------------------------------------------------------------------- captions


def test_captions_grouped_per_image(tmp_path: Path) -> None:
    ds = CocoCaptionsDataset(make_captions(tmp_path), "train2017")
    assert len(ds) == 2 and ds.num_images_without_captions == 1
    assert ds.expressions(0) == ["Two cats.", "cats near a dog"]
    assert ds.expressions(1) == ["A dog on grass."]
    assert ds.image(0).shape == (H, W, 3)
    with pytest.raises(DatasetError, match="no masks"):
        ds.masks(0)


def test_caption_naming_an_unknown_image(tmp_path: Path) -> None:
    make_captions(tmp_path, extra_anns=[{"id": 14, "image_id": 7, "caption": "x"}])
    with pytest.raises(DatasetError, match=r"annotations\[4\] \(id 14\): image_id 7 is not in"):
        CocoCaptionsDataset(tmp_path, "train2017")


@pytest.mark.parametrize(
    ("caption", "message"), [(3, "expression 0 is not a string"), ("  ", "expression 0 is empty")]
)
def test_bad_caption_is_named(tmp_path: Path, caption: object, message: str) -> None:
    make_captions(tmp_path, extra_anns=[{"id": 14, "image_id": 1, "caption": caption}])
    with pytest.raises(DatasetError, match=rf"\(id 14\): 'caption': {message}"):
        CocoCaptionsDataset(tmp_path, "train2017")


def test_image_size_is_checked_against_the_file(tmp_path: Path) -> None:
    make_captions(tmp_path)
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(tmp_path / "train2017" / "1.png")
    with pytest.raises(DatasetError, match=r"1\.png: image is 5x5 \(HxW\) but the annotation says"):
        CocoCaptionsDataset(tmp_path, "train2017").image(0)


# ----------------------------------------------------------------------- evaluation hooks


def test_semantic_classes_and_eval_data(tmp_path: Path) -> None:
    from builders.imagefolder import make_folder

    from tseg.data.eval_data import override_data, semantic_classes
    from tseg.data.own.imagefolder import ImageFolderDataset

    ds = CocoDataset(make_instances(tmp_path / "coco"), "val2017")
    assert semantic_classes(ds) == {"cat": ["cat"], "dog": ["dog"]}
    names = tmp_path / "names.yaml"
    names.write_text("cat: [cat, kitten]\ndog: [dog, puppy]\n")
    assert semantic_classes(ds, str(names))["cat"] == ["cat", "kitten"]
    with pytest.raises(DatasetError, match="needs a dataset with per-class masks"):
        semantic_classes(ImageFolderDataset(make_folder(tmp_path / "if"), "train"))

    data = build_config(None, ["data.dataset=coco_captions", "data.root=/x"]).data
    assert override_data(data, None, None) is data
    moved = override_data(data, "coco", str(tmp_path / "coco"))
    assert (moved.dataset, moved.root, moved.image_dir) == ("coco", str(tmp_path / "coco"), "")
    with pytest.raises(DatasetError, match="--dataset coco: give its folder with --dataset-root"):
        override_data(data, "coco", None)
