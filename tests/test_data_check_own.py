"""``tseg data check`` on a user's own data: counts, and every problem counted with examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders.coco import make_captions, make_instances
from builders.imagefolder import make_folder
from builders.shards import png, text, write_tar

from tseg.cli import main
from tseg.data.check import check_dataset


def test_imagefolder_counts_and_problems(tmp_path: Path) -> None:
    make_folder(tmp_path)
    meta = tmp_path / "metadata.jsonl"
    rows = [
        {"file_name": "gone.png", "text": "x"},
        {"file_name": "gone2.png", "text": "y"},
        {"file_name": "a.png", "expressions": []},
        {"file_name": "a.png", "expressions": ["ok", 5]},
    ]
    meta.write_text(meta.read_text() + "".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "sub" / "b.jpg").write_bytes(b"not a jpeg")
    report = check_dataset("imagefolder", tmp_path)
    assert report.counts["train"] == {"metadata files": 1, "rows": 7, "images": 2, "expressions": 4}
    text_ = report.format()
    assert "train: missing image: 2, e.g." in text_ and "metadata.jsonl:4: image" in text_
    assert "train: empty expression list: 1" in text_ and "metadata.jsonl:6" in text_
    assert "train: non-string expression: 1" in text_ and "metadata.jsonl:7" in text_
    assert "train: unreadable image: 1" in text_ and "b.jpg: cannot read the image" in text_
    assert not report.ok
    assert (
        check_dataset("imagefolder", tmp_path, check_images=False).format().count("unreadable") == 0
    )


def test_imagefolder_missing_metadata_and_ok(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = check_dataset("imagefolder", tmp_path / "empty")
    assert (
        "no metadata.jsonl, metadata.csv or metadata.parquet" in report.format() and not report.ok
    )
    report = check_dataset("imagefolder", make_folder(tmp_path / "fine"))
    assert report.ok, report.format()


def test_coco_captions_and_instances(tmp_path: Path) -> None:
    bad = {"id": 9, "image_id": 99, "category_id": 17, "segmentation": [[0, 0, 1, 0, 1, 1]]}
    make_instances(tmp_path, extra_anns=[bad])
    make_captions(tmp_path, extra_anns=[{"id": 14, "image_id": 7, "caption": "x"}])
    inst = check_dataset("coco", tmp_path)
    assert inst.counts["val2017"] == {
        "images": 2,
        "categories": 2,
        "expressions": 3,
        "instances": 5,
    }
    assert "val2017: unknown image: 1" in inst.format() and "(id 9): image_id 99" in inst.format()
    caps = check_dataset("coco_captions", tmp_path)
    assert caps.counts["train2017"] == {"images": 2, "expressions": 4}
    assert "train2017: unknown image: 1" in caps.format()
    assert "image without a caption: 1" in "\n".join(caps.warnings)
    missing = check_dataset("coco", tmp_path, splits=["train2017"])
    assert missing.missing == [tmp_path / "annotations" / "instances_train2017.json"]


def test_webdataset_counts_bad_samples_as_warnings(tmp_path: Path) -> None:
    write_tar(
        tmp_path / "a.tar",
        [
            {"__key__": "good", "png": png(), "json": text(["one", "two"])},
            {"__key__": "corrupt", "png": b"garbage", "json": text(["x"])},
            {"__key__": "empty", "png": png(), "json": text([])},
        ],
    )
    report = check_dataset("webdataset", str(tmp_path / "*.tar"))
    assert report.counts["shards"] == {"shards": 1, "samples": 3, "expressions": 2}
    assert report.ok and "unreadable image: 1" in report.format()
    assert "empty expression list: 1" in report.format()
    nothing = check_dataset("webdataset", str(tmp_path / "none-{0..3}.tar"))
    assert not nothing.ok and "matches nothing" in nothing.format()


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_folder(tmp_path / "ok")
    assert main(["data", "check", "imagefolder", str(tmp_path / "ok")]) == 0
    assert "imagefolder at" in capsys.readouterr().out
    assert main(["data", "check", "coco", str(tmp_path / "nothing")]) == 1
