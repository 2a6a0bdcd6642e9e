"""``check_dataset`` on valid and broken fixture folders."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from builders.grefcoco import default_refs as default_grefs
from builders.grefcoco import make_grefcoco
from builders.phrasecut import default_tasks, make_phrasecut
from builders.refcoco import default_refs, make_refcoco, ref
from builders.voc import make_voc
from PIL import Image

from tseg.cli import main
from tseg.data import check
from tseg.data.base import DatasetError
from tseg.data.check import check_dataset

# ----------------------------------------------------------------------- RefCOCO


def test_refcoco_counts_and_published_mismatch(tmp_path: Path) -> None:
    make_refcoco(tmp_path)
    report = check_dataset("refcoco", tmp_path)
    assert report.dataset == "refcoco (unc)"
    assert report.counts["val"] == {"refs": 3, "images": 2, "sentences": 6}
    assert report.counts["train"] == {"refs": 1, "images": 1, "sentences": 1}
    assert report.expected["train"]["refs"] == 42404
    assert not report.ok
    text = report.format()
    assert "no ref of split 'testB'" in text
    assert "val: 3 refs (expected 3,811), 2 images (expected 1,500)" in text
    assert "fewer than published (the refer release): an incomplete download" in text
    assert "3 (expected 3,811)" in text


def test_refcoco_ok_when_counts_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_refcoco(tmp_path, refs=default_refs() + [ref(105, 12, 2, "testB", ["x"])])
    expected = {
        "train": {"refs": 1, "images": 1},
        "val": {"refs": 3, "images": 2},
        "testA": {"refs": 1, "images": 1},
        "testB": {"refs": 1, "images": 1},
    }
    monkeypatch.setitem(check.EXPECTED, "refcoco/unc", expected)
    report = check_dataset("refcoco", tmp_path)
    assert report.ok, report.format()
    assert report.format().startswith(f"refcoco (unc) at {tmp_path}: OK")


def test_refcoco_missing_files_are_listed_with_fix(tmp_path: Path) -> None:
    make_refcoco(tmp_path, "refcocog", "umd")
    (tmp_path / "refcocog" / "instances.json").unlink()
    for jpg in (tmp_path / "images" / "train2014").iterdir():
        jpg.unlink()
    (tmp_path / "images" / "train2014").rmdir()
    report = check_dataset("refcocog", tmp_path)
    assert report.missing == [
        tmp_path / "refcocog" / "instances.json",
        tmp_path / "images" / "train2014",
    ]
    text = report.format()
    assert f"missing file {tmp_path / 'refcocog' / 'instances.json'}" in text
    assert "refcocog.zip" in text and "github.com/lichengunc/refer" in text
    assert f"missing folder {tmp_path / 'images' / 'train2014'}" in text
    assert "train2014.zip" in text


def test_refcoco_missing_image_file(tmp_path: Path) -> None:
    make_refcoco(tmp_path)
    gone = tmp_path / "images" / "train2014" / "COCO_train2014_000000000002.jpg"
    gone.unlink()
    report = check_dataset("refcoco", tmp_path)
    assert gone in report.missing
    assert "1 image files are missing" in report.format()
    assert gone not in check_dataset("refcoco", tmp_path, check_images=False).missing


def test_refcoco_corrupt_pickle(tmp_path: Path) -> None:
    make_refcoco(tmp_path)
    (tmp_path / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps([{}], protocol=2)[:5])
    report = check_dataset("refcoco", tmp_path)
    assert not report.ok and "refs(unc).p" in report.format()
    assert "re-download" in report.format()


def test_refcoco_refs_pointing_nowhere(tmp_path: Path) -> None:
    make_refcoco(tmp_path, refs=default_refs() + [ref(200, 999, 1, "val", ["x"])])
    report = check_dataset("refcoco", tmp_path)
    assert any("point to missing annotations (e.g. ann_id 999)" in p for p in report.problems)


def test_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'cocoa'.*voc, imagefolder"):
        check_dataset("cocoa", tmp_path)
    with pytest.raises(DatasetError, match="no 'google' split"):
        check_dataset("refcoco+", tmp_path, split_by="google")


def test_missing_root(tmp_path: Path) -> None:
    report = check_dataset("voc", tmp_path / "nowhere")
    assert report.missing == [tmp_path / "nowhere"] and not report.ok


# ----------------------------------------------------------------------- gRefCOCO


def test_grefcoco_counts_and_ok(tmp_path: Path) -> None:
    make_grefcoco(tmp_path)
    report = check_dataset("grefcoco", tmp_path)
    assert report.ok, report.format()
    assert report.counts["val"] == {"refs": 6, "no-target refs": 2, "images": 2, "sentences": 9}
    assert report.counts["train"] == {"refs": 2, "no-target refs": 1, "images": 1, "sentences": 2}
    assert "no published numbers" in report.format()


def test_grefcoco_missing_files_and_images(tmp_path: Path) -> None:
    report = check_dataset("grefcoco", tmp_path)
    assert {p.name for p in report.missing} == {"grefs(unc).json", "instances.json", "train2014"}
    assert "henghuiding/gRefCOCO" in report.format()
    make_grefcoco(tmp_path)
    (tmp_path / "images" / "train2014" / "COCO_train2014_000000000002.jpg").unlink()
    report = check_dataset("grefcoco", tmp_path)
    assert "1 image files are missing" in report.format()
    assert check_dataset("grefcoco", tmp_path, check_images=False).ok


def test_grefcoco_refs_pointing_nowhere_and_malformed(tmp_path: Path) -> None:
    refs = default_grefs()
    refs[0]["ann_id"] = [10, 99]
    refs[3]["ann_id"] = [10]  # annotation of image 1, ref of image 2
    make_grefcoco(tmp_path, refs=refs)
    text = check_dataset("grefcoco", tmp_path).format()
    assert "1 targets are missing annotations (e.g. ref_id 100, ann_id 99)" in text
    assert "1 targets belong to another image than their ref (e.g. ref_id 103, ann_id 10)" in text
    refs = default_grefs()
    del refs[2]["ann_id"]
    make_grefcoco(tmp_path / "b", refs=refs)
    report = check_dataset("grefcoco", tmp_path / "b")
    assert not report.ok and "missing field 'ann_id'" in report.format()


# ----------------------------------------------------------------------- PhraseCut


#: The PhraseCut fixture's counts (tests/test_data_phrasecut.py), as if published.
_PHRASECUT_FIXTURE = {"val": {"tasks": 5, "images": 2}, "miniv": {"tasks": 1, "images": 1}}


def test_phrasecut_counts_and_missing_splits(tmp_path: Path) -> None:
    root = make_phrasecut(tmp_path / "pc")
    report = check_dataset("phrasecut", root)
    assert report.counts["val"] == {"tasks": 5, "images": 2}
    assert report.counts["miniv"] == {"tasks": 1, "images": 1}
    assert report.missing == [root / "refer_train.json", root / "refer_test.json"]
    assert "PhraseCutDataset" in report.format()  # where to get it
    # Published numbers differ: problems, as for every dataset (refer_val.json has no miniv).
    assert any("val: 5 tasks (expected 19,495)" in p for p in report.problems)
    assert not report.warnings


def test_phrasecut_published_val_leaves_out_miniv() -> None:
    # The README's splits add up to its totals with miniv inside val; the files split it out.
    pub = check.EXPECTED["phrasecut"]
    assert sum(pub[s]["tasks"] for s in pub) == 345_486
    assert sum(pub[s]["images"] for s in pub) == 77_262


def test_phrasecut_short_polygons_follow_the_loader_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(check.EXPECTED, "phrasecut", _PHRASECUT_FIXTURE)
    tasks = default_tasks()
    tasks["val"][0]["Polygons"] = [[[[1, 1], [2, 2]]]]
    root = make_phrasecut(tmp_path / "pc", tasks)
    # Strict by default, as data.phrasecut_strict_polygons: the loader refuses them.
    report = check_dataset("phrasecut", root, splits=["val"])
    assert not report.ok
    assert any(
        "1 polygons of 1 tasks have fewer than 3 points (e.g. task '1__10')" in p
        and "data.phrasecut_strict_polygons=false" in p
        for p in report.problems
    )
    assert main(["data", "check", "phrasecut", str(root), "--splits", "val"]) == 1
    # Lenient (data.phrasecut_strict_polygons=false): loadable, a warning only.
    loose = check_dataset("phrasecut", root, splits=["val"], strict_polygons=False)
    assert loose.ok, loose.format()
    assert any("rasterised as the official tools do" in w for w in loose.warnings)
    assert (
        main(["data", "check", "phrasecut", str(root), "--splits", "val", "--lenient-polygons"])
        == 0
    )


def test_phrasecut_missing_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(check.EXPECTED, "phrasecut", _PHRASECUT_FIXTURE)
    root = make_phrasecut(tmp_path / "pc")
    assert check_dataset("phrasecut", root, splits=["val", "miniv"]).ok
    (root / "images" / "2.jpg").unlink()
    report = check_dataset("phrasecut", root, splits=["val"])
    assert root / "images" / "2.jpg" in report.missing and not report.ok


def test_phrasecut_malformed_task(tmp_path: Path) -> None:
    tasks = default_tasks()
    del tasks["val"][2]["phrase"]
    root = make_phrasecut(tmp_path / "pc", tasks)
    report = check_dataset("phrasecut", root, splits=["val"])
    assert any("task '1__13': missing field 'phrase'" in p for p in report.problems)


def test_phrasecut_image_not_in_info(tmp_path: Path) -> None:
    root = make_phrasecut(tmp_path / "pc", info=[{"image_id": 1, "height": 20, "width": 30}])
    report = check_dataset("phrasecut", root, splits=["val"])
    assert any("1 images of refer_val.json are not listed" in p for p in report.problems)


# ----------------------------------------------------------------------- counts


def _partial_refcoco(root: Path) -> None:
    make_refcoco(root, refs=default_refs()[1:])  # ref 100 (val, image 1) lost


def _partial_phrasecut(root: Path) -> None:
    tasks = default_tasks()
    tasks["val"] = tasks["val"][3:]  # the tasks of image 1 lost
    make_phrasecut(root, tasks)


def _partial_voc(root: Path) -> None:
    make_voc(root)
    val = root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    val.write_text(val.read_text().splitlines()[0] + "\n")  # a truncated list


# dataset: fixture writer, writer of a partial download, EXPECTED key, fixture's counts
_PARTIAL = {
    "refcoco": (
        make_refcoco,
        _partial_refcoco,
        "refcoco/unc",
        {
            "train": {"refs": 1, "images": 1, "sentences": 1},
            "val": {"refs": 3, "images": 2, "sentences": 6},
            "testA": {"refs": 1, "images": 1, "sentences": 1},
        },
    ),
    "phrasecut": (make_phrasecut, _partial_phrasecut, "phrasecut", _PHRASECUT_FIXTURE),
    "voc": (
        make_voc,
        _partial_voc,
        "voc",
        {"train": {"images": 2}, "val": {"images": 2}, "train_aug": {"images": 3}},
    ),
}


@pytest.mark.parametrize("name", sorted(_PARTIAL))
def test_partial_download_is_a_problem_for_every_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _, write, key, published = _PARTIAL[name]
    monkeypatch.setitem(check.EXPECTED, key, published)
    root = tmp_path / name
    write(root)
    splits = ["val"] if name != "refcoco" else None
    report = check_dataset(name, root, splits=splits)
    assert not report.ok
    fewer = [p for p in report.problems if p.startswith("val: ") and "fewer than published" in p]
    assert len(fewer) == 1, report.format()
    assert "an incomplete download" in fewer[0] and "\n    -> " in fewer[0]  # what to do
    assert not any("expected" in w for w in report.warnings)
    argv = ["data", "check", name, str(root)] + (["--splits", "val"] if splits else [])
    assert main(argv) == 1


@pytest.mark.parametrize("name", sorted(_PARTIAL))
def test_more_than_published_is_a_problem_for_every_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    write, _, key, published = _PARTIAL[name]
    smaller = {s: {q: n - 1 for q, n in c.items()} for s, c in published.items()}
    monkeypatch.setitem(check.EXPECTED, key, smaller)
    root = tmp_path / name
    write(root)  # the whole fixture: one more of everything than "published"
    report = check_dataset(name, root, splits=["val"] if name != "refcoco" else None)
    assert any(
        p.startswith("val: ") and "more than published" in p and "another release" in p
        for p in report.problems
    ), report.format()


# ----------------------------------------------------------------------- VOC


def test_voc_counts_and_published_mismatch(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "VOCdevkit")
    report = check_dataset("voc", root)
    assert report.counts == {
        "train": {"images": 2},
        "val": {"images": 2},
        "train_aug": {"images": 3},
    }
    assert "train_aug: 3 images (expected 10,582)" in report.format()


def test_voc_ok_when_counts_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_voc(tmp_path / "VOCdevkit")
    monkeypatch.setitem(
        check.EXPECTED,
        "voc",
        {"train": {"images": 2}, "val": {"images": 2}, "train_aug": {"images": 3}},
    )
    report = check_dataset("voc", root)
    assert report.ok, report.format()


def test_voc_missing_sbd_and_leak(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "VOCdevkit")
    aug = root / "VOC2012" / "SegmentationClassAug"
    for png in aug.iterdir():
        png.unlink()
    aug.rmdir()
    sets = root / "VOC2012" / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("2007_000032\n2007_000033\n")  # 000033 is a val image
    report = check_dataset("voc", root)
    assert aug in report.missing
    text = report.format()
    assert "SBD" in text
    assert "1 val images are also in a training list (e.g. 2007_000033)" in text


def test_voc_colour_labels(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "VOCdevkit")
    Image.new("RGB", (16, 12)).save(root / "VOC2012/SegmentationClass/2007_000033.png")
    report = check_dataset("voc", root, splits=["val"])
    assert any("mode 'RGB'" in p for p in report.problems)
