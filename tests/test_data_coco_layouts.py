"""COCO files as the annotation tools export them, and one file given as it is (``data.annotations``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import MICRO_MODEL
from PIL import Image

from tseg.cli import main
from tseg.config import build_config
from tseg.data import build_dataset
from tseg.data.base import DatasetError
from tseg.data.check import check_dataset
from tseg.data.own.coco import CocoDataset
from tseg.data.own.coco_captions import CocoCaptionsDataset

H, W = 16, 24


def write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value, dtype=np.uint8)).save(path)


def instances(file_names: list[str]) -> dict:
    """One image per name; image k has a "cat" box (and the first one also a "dog" box)."""
    anns = [
        {"id": 10 + k, "image_id": k, "category_id": 1, "iscrowd": 0,
         "segmentation": [[0, 0, 8, 0, 8, 8, 0, 8]], "bbox": [0, 0, 8, 8], "area": 64}
        for k in range(len(file_names))
    ] + [{"id": 99, "image_id": 0, "category_id": 2, "iscrowd": 0,
          "segmentation": [[10, 4, 20, 4, 20, 12, 10, 12]], "bbox": [10, 4, 10, 8], "area": 80}]  # fmt: skip
    return {
        "images": [
            {"id": k, "file_name": f, "height": H, "width": W} for k, f in enumerate(file_names)
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": anns,
    }


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def export(root: Path, json_path: str, images: list[str], file_names: list[str]) -> Path:
    """A tool's export: the images (paths under root) and the instances file naming them."""
    for k, image in enumerate(images):
        write_image(root / image, 50 * k)
    write_json(root / json_path, instances(file_names))
    return root


def labelme2coco(root: Path) -> Path:
    """labelme2coco: annotations.json beside JPEGImages/, file_name relative to the root."""
    names = ["JPEGImages/0.jpg", "JPEGImages/1.jpg"]
    return export(root, "annotations.json", names, names)


def cvat(root: Path) -> Path:
    """CVAT "COCO 1.0": annotations/instances_default.json and images/, bare file names."""
    names = ["0.jpg", "1.jpg"]
    return export(root, "annotations/instances_default.json", [f"images/{n}" for n in names], names)


def label_studio(root: Path) -> Path:
    """Label Studio's COCO export: result.json and images/, file_name "images/..."."""
    names = ["images/a1b2-0.png", "images/a1b2-1.png"]
    return export(root, "result.json", names, names)


def roboflow(root: Path) -> Path:
    """Roboflow: <split>/_annotations.coco.json beside the images; train, valid, test."""
    for n, split in enumerate(("train", "valid", "test")):
        names = [f"{split}{k}_jpg.rf.abc.jpg" for k in range(n + 1)]
        for k, name in enumerate(names):
            write_image(root / split / name, 30 * k)
        write_json(root / split / "_annotations.coco.json", instances(names))
    return root


@pytest.mark.parametrize("layout", [labelme2coco, cvat, label_studio])
def test_single_file_layouts_are_found_from_the_folder(tmp_path: Path, layout) -> None:
    root = layout(tmp_path / layout.__name__)
    ds = CocoDataset(root, "val")  # one file: every split name reads it
    assert len(ds) == 2
    assert ds.expressions(0) == ["cat", "dog"] and ds.expressions(1) == ["cat"]
    masks = ds.masks(0)
    assert masks.shape == (2, H, W) and masks[0, :8, :8].all() and not masks[0, 8:].any()
    assert masks[1, 4:12, 10:20].all() and masks[1].sum() == 80
    assert ds.image(1).shape == (H, W, 3) and int(ds.image(1)[0, 0, 0]) in range(45, 56)
    report = check_dataset("coco", root)
    assert report.ok, report.format()
    assert list(report.counts.values())[0]["images"] == 2


def test_roboflow_split_folders_are_splits(tmp_path: Path) -> None:
    root = roboflow(tmp_path / "rf")
    assert [len(CocoDataset(root, s)) for s in ("train", "val", "valid", "test")] == [1, 2, 2, 3]
    report = check_dataset("coco", root)
    assert report.ok, report.format()
    assert {s: c["images"] for s, c in report.counts.items()} == {"test": 3, "train": 1, "valid": 2}
    with pytest.raises(DatasetError, match=r"holds the splits test, train, valid \(Roboflow"):
        CocoDataset(root, "val2017")


def test_a_folder_of_no_known_layout_says_what_it_holds_and_what_is_expected(
    tmp_path: Path,
) -> None:
    write_json(tmp_path / "labels" / "export.json", instances(["0.jpg"]))
    with pytest.raises(DatasetError) as e:
        CocoDataset(tmp_path, "val")
    message = str(e.value)
    assert "\n" not in message and "labels/export.json" in message
    assert "instances_val.json: file not found" in message
    for expected in ("JPEGImages/", "result.json", "_annotations.coco.json", "data.annotations"):
        assert expected in message
    report = check_dataset("coco", tmp_path)
    assert not report.ok and "labels/export.json" in report.format()


def test_annotations_file_and_image_dir_are_relative_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_image(root / "pictures" / "0.jpg", 10)
    write_image(root / "pictures" / "1.jpg", 20)
    write_json(root / "labels" / "mine.json", instances(["0.jpg", "1.jpg"]))
    cfg = build_config(
        None,
        ["data.dataset=coco", f"data.root={root}", "data.annotations=labels/mine.json",
         "data.image_dir=pictures"],
    ).data  # fmt: skip
    ds = build_dataset(cfg, "val")
    assert ds.json_path == root / "labels" / "mine.json" and len(ds) == 2
    assert ds.image_path(0) == root / "pictures" / "0.jpg"
    # Without the image folder the images are looked for beside the file only.
    no_dir = build_config(None, [f"data.annotations={root}/labels/mine.json", "data.dataset=coco"])
    with pytest.raises(DatasetError, match=r"image id 0: file \S*labels/0\.jpg not found") as e:
        build_dataset(no_dir.data, "val")
    assert "\n" not in str(e.value)
    # The official layout: data.image_dir relative to the root too.
    write_json(root / "annotations" / "captions_train2017.json",
               {"images": instances(["0.jpg"])["images"],
                "annotations": [{"id": 1, "image_id": 0, "caption": "a grey cat"}]})  # fmt: skip
    caps = CocoCaptionsDataset(root, "train2017", str(root / "pictures"))
    assert caps.expressions(0) == ["a grey cat"]
    cfg = build_config(
        None, ["data.dataset=coco_captions", f"data.root={root}", "data.train_split=train2017",
               "data.image_dir=pictures"]
    ).data  # fmt: skip
    assert build_dataset(cfg, "train").image_path(0) == root / "pictures" / "0.jpg"


def test_a_coco_file_that_is_not_json_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "result.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match=r"result\.json: malformed JSON at line 1") as e:
        CocoDataset(tmp_path, "val")
    assert "\n" not in str(e.value)
    with pytest.raises(DatasetError, match="a folder; data.annotations names a COCO JSON file"):
        CocoDataset(tmp_path, "val", annotations=str(tmp_path))


def test_cli_check_a_file_and_train_on_captions_then_eval_on_instances_file(
    tmp_path: Path, capsys
) -> None:
    root = label_studio(tmp_path / "ls")
    assert main(["data", "check", "coco", str(root / "result.json")]) == 0
    assert "images" in capsys.readouterr().out
    (root / "images" / "a1b2-1.png").unlink()
    assert main(["data", "check", "coco", str(root / "result.json"), "--skip-images"]) == 1
    assert "missing image: 1" in capsys.readouterr().out
    write_image(root / "images" / "a1b2-1.png", 50)

    # Captions whose images sit in images/ (file names relative to it): data.image_dir=images.
    caps = {"images": instances(["a1b2-0.png", "a1b2-1.png"])["images"],
            "annotations": [{"id": 1, "image_id": 0, "caption": "a cat and a dog"},
                            {"id": 2, "image_id": 1, "caption": "a cat"}]}  # fmt: skip
    write_json(root / "captions.json", caps)
    run = tmp_path / "run"
    code = main(
        ["train", "data.dataset=coco_captions", f"data.root={root}",
         "data.annotations=captions.json", "data.image_dir=images", *MICRO_MODEL,
         "train.batch_size=2", "train.steps=2", "--out", str(run), "--quiet"]
    )  # fmt: skip
    assert code == 0
    capsys.readouterr()
    code = main(["eval", str(run), "--dataset", "coco", "--annotations", str(root / "result.json")])
    assert code == 0, capsys.readouterr().err
    pairs = json.loads(capsys.readouterr().out)["val"]
    assert pairs["pairs"] == 3
