"""Masks out as one COCO instances file: the builder, ``tseg segment --format coco``, read back
with pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import untrained_checkpoint
from PIL import Image

pytest.importorskip("pycocotools", reason="COCO RLE needs pycocotools")
from pycocotools.coco import COCO  # noqa: E402

from tseg.cli import main  # noqa: E402
from tseg.coco_masks import annotation, instances, write_json_atomic  # noqa: E402


def test_written_masks_read_back_equal_with_pycocotools(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = [rng.random((7, 9)) > 0.5, np.zeros((7, 9), bool), rng.random((7, 9)) > 0.8]
    exprs = ["the dog", "no such thing", "the dog"]
    anns = [annotation(m, expression=e, score=0.5) for m, e in zip(masks, exprs)]
    assert anns[1] is None  # an empty mask has no annotation
    images = [{"id": 1, "file_name": "a.png", "height": 7, "width": 9}]
    path = tmp_path / "instances.json"
    write_json_atomic(path, instances(images, [[anns[0], anns[2]]]))
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["the dog"]
    back = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["id"] for a in back] == [1, 2] and {a["category_id"] for a in back} == {1}
    for ann, mask in zip(back, (masks[0], masks[2])):
        assert np.array_equal(coco.annToMask(ann) > 0, mask)
        assert ann["area"] == mask.sum() and ann["score"] == 0.5
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(mask)
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
    assert not list(tmp_path.glob("*.tmp*"))  # written whole, under its final name only


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("coco") / "run")


def test_segment_format_coco_holds_the_masks_the_pngs_hold(run: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    rng = np.random.default_rng(1)
    for name, (h, w) in {"one/a.png": (20, 30), "two/b.png": (24, 16)}.items():
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(photos / name)
    (photos / "two" / "c.png").write_bytes(b"not a png")
    args = [
        str(run),
        str(photos / "**" / "*.png"),
        "red circle",
        "squares",
        "--threshold",
        "0.5",
        "--quiet",
    ]
    assert main(["segment", *args, "--out", str(tmp_path / "png"), "--workers", "0"]) == 2
    assert main(["segment", *args, "--out", str(tmp_path / "c"), "--format", "coco"]) == 2
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["instances.json"]
    coco = COCO(str(tmp_path / "c" / "instances.json"))
    data = json.loads((tmp_path / "c" / "instances.json").read_text())
    assert Path(data["info"]["image_root"]) == photos.resolve()
    files = {im["id"]: im["file_name"] for im in coco.loadImgs(coco.getImgIds())}
    assert sorted(files.values()) == ["one/a.png", "two/b.png"]  # the unreadable one left out
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert set(names.values()) <= {"red circle", "squares"}
    seen = 0
    for image_id, file_name in files.items():
        scores = json.loads((tmp_path / "png" / Path(file_name).stem / "scores.json").read_text())
        for record in scores:
            png = np.asarray(Image.open(tmp_path / "png" / Path(file_name).stem / record["mask"]))
            anns = [
                a
                for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
                if names[a["category_id"]] == record["expression"]
            ]
            if not png.any():
                assert anns == []
                continue
            seen += 1
            assert len(anns) == 1 and np.array_equal(coco.annToMask(anns[0]) > 0, png > 0)
            assert anns[0]["score"] == pytest.approx(record["confidence"], abs=1e-5)
    assert seen > 0


def test_segment_format_coco_refuses_classes(run: Path, tmp_path: Path, capsys) -> None:
    photo = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    args = ["segment", str(run), str(photo), "--classes", "cat,dog", "--format", "coco"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert "--format coco writes one mask per expression" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
