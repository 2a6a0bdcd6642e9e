"""Hugging Face datasets (``data.dataset=hf``), built here with the ``datasets`` library itself."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import MICRO_MODEL
from PIL import Image

datasets = pytest.importorskip("datasets", reason="data.dataset=hf needs the datasets library")

from builders.hf import H, W, hf_cache, picture, table  # noqa: E402, F401  (hf_cache: autouse)

from tseg.cli import main  # noqa: E402
from tseg.config import build_config  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.data.base import DatasetError  # noqa: E402
from tseg.data.own.hf import HfDataset  # noqa: E402
from tseg.data.registry import no_masks_reason  # noqa: E402


def saved_dict(root: Path) -> Path:
    datasets.DatasetDict(train=table(3), validation=table(2, 3, masks=True)).save_to_disk(root)
    return root


def test_save_to_disk_dataset_dict_splits_and_columns(tmp_path: Path) -> None:
    root = saved_dict(tmp_path / "saved")
    train = HfDataset(str(root), "train")
    assert len(train) == 3 and train.image_column == "image" and train.text_column == "sentences"
    # a list of strings: one expression per distinct string, in order
    assert train.expressions(1) == ["thing 1", "the thing 1"]
    np.testing.assert_array_equal(train.image(2), np.asarray(picture(2)))
    with pytest.raises(DatasetError, match="no masks"):
        train.masks(0)
    val = HfDataset(str(root), "val")  # ImageFolder's names: val reads validation
    assert val.split == "validation" and val.mask_column == "mask"
    masks = val.masks(1)  # row 1 is k = 4: a 6 x 7 box, for both of its expressions
    assert masks.shape == (2, H, W) and masks[0].sum() == 6 * 7 and (masks[0] == masks[1]).all()
    with pytest.raises(DatasetError, match=r"no split 'test' \(it holds train, validation\)"):
        HfDataset(str(root), "test")
    cfg = build_config(None, ["data.dataset=hf", f"data.root={root}"]).data
    assert no_masks_reason(cfg, "val") is None and "no mask column" in no_masks_reason(cfg, "train")
    assert len(build_dataset(cfg, "train")) == 3


def test_parquet_hub_layout_glob_and_single_dataset(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    (hub / "data").mkdir(parents=True)
    table(3, text="caption").to_parquet(str(hub / "data" / "train-00000-of-00001.parquet"))
    table(2, 3, text="caption").to_parquet(str(hub / "data" / "test-00000-of-00001.parquet"))
    assert len(HfDataset(str(hub), "train")) == 3 and HfDataset(str(hub), "test").expressions(
        0
    ) == ["caption 3"]
    glob = HfDataset(str(hub / "data" / "*.parquet"), "anything")  # one split: every name
    assert len(glob) == 5  # files in name order: test's rows (3, 4), then train's (0, 1, 2)
    assert glob.expressions(0) == ["caption 3"] and glob.expressions(4) == ["caption 2"]
    np.testing.assert_array_equal(glob.image(4), np.asarray(picture(2)))
    single = tmp_path / "single"
    table(2).save_to_disk(single)
    assert len(HfDataset(str(single), "val")) == 2


def test_a_name_in_the_local_cache_is_read_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "made" / "tiny_captions"
    (folder / "data").mkdir(parents=True)
    table(2, text="caption").to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    datasets.load_dataset(str(folder))  # fills the cache, as a download would
    monkeypatch.chdir(tmp_path)  # no folder of that name here: only the cache holds it
    before = datasets.config.HF_HUB_OFFLINE
    ds = HfDataset("tiny_captions", "train")
    assert ds.expressions(1) == ["caption 1"]
    with pytest.raises(DatasetError, match="nor a dataset in the local Hugging Face cache") as e:
        HfDataset("nobody/not_cached", "train")
    # the library was asked in its offline mode (no download tried), and the mode is restored
    assert "OfflineModeIsEnabled" in str(e.value) and "\n" not in str(e.value)
    assert before == datasets.config.HF_HUB_OFFLINE


def test_bad_columns_images_and_texts_are_one_line_naming_the_row(tmp_path: Path) -> None:
    root = tmp_path / "d"
    table(2, text="caption").save_to_disk(root)
    with pytest.raises(
        DatasetError,
        match=r"data.text_column='title' is not a column; the columns: image \(Image\), caption",
    ):
        HfDataset(str(root), "train", text_column="title")
    assert main(["data", "check", "hf", str(root), "--text-column", "title"]) == 1
    assert main(["data", "check", "hf", str(root), "--text-column", "caption"]) == 0
    no_text = tmp_path / "no_text"
    datasets.Dataset.from_dict(
        {"image": [picture(0)], "label": [3]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    ).save_to_disk(no_text)
    with pytest.raises(
        DatasetError, match=r"no text column: expected one of expressions, sentences, text, caption"
    ):
        HfDataset(str(no_text), "train")
    empty = tmp_path / "empty"
    datasets.Dataset.from_dict(
        {"image": [picture(0), picture(1)], "text": ["fine", "  "]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}),
    ).save_to_disk(empty)
    with pytest.raises(DatasetError, match=r"\[train\] row 1: 'text': expression 0 is empty"):
        HfDataset(str(empty), "train")
    broken = tmp_path / "broken"
    datasets.Dataset.from_dict(
        {"image": [{"bytes": b"not an image", "path": None}], "text": ["a cat"]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}),
    ).save_to_disk(broken)
    ds = HfDataset(str(broken), "train")
    with pytest.raises(DatasetError, match=r"row 0: 'image': cannot read the image") as e:
        ds.image(0)
    assert "\n" not in str(e.value)
    assert main(["data", "check", "hf", str(broken)]) == 1
    with pytest.raises(DatasetError, match=r"nothere: no such file or folder"):
        HfDataset(str(tmp_path / "nothere"), "train")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DatasetError, match=r"empty_folder: the datasets library finds no data"):
        HfDataset(str(tmp_path / "empty_folder"), "train")
    picture(0).save(tmp_path / "x.png")  # parquet that names an image file, since removed
    datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": str(tmp_path / "x.png")}], "text": ["a cat"]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}),
    ).to_parquet(str(tmp_path / "gone.parquet"))
    (tmp_path / "x.png").unlink()
    with pytest.raises(DatasetError, match=r"row 0: 'image': image file .*x\.png not found"):
        HfDataset(str(tmp_path / "gone.parquet"), "train").image(0)


def test_cli_check_convert_and_train_with_evaluation_on_the_mask_column(
    tmp_path: Path, capsys
) -> None:
    root = saved_dict(tmp_path / "saved")
    assert main(["data", "check", "hf", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "validation" in out and "mask='mask'" in out
    assert "no mask column (training only)" in out

    shards = tmp_path / "shards"
    assert main(["data", "convert", "hf", str(shards), "--root", str(root), "--quiet"]) == 0
    capsys.readouterr()
    listing = json.loads((shards / "train-shards.json").read_text())
    pattern = listing.get("pattern") or str(shards / "train-000000.tar")
    back = build_dataset(
        build_config(None, ["data.dataset=webdataset", f"data.shards={pattern}"]).data, "train"
    )
    src = HfDataset(str(root), "train")
    assert len(back) == 3 and back.expressions(2) == src.expressions(2)
    np.testing.assert_array_equal(back.image(1), src.image(1))  # stored bytes copied as they are
    assert Image.open(io.BytesIO(src.image_bytes(0))).format == "PNG"

    run = tmp_path / "run"
    code = main(
        ["train", "data.dataset=hf", f"data.root={root}", *MICRO_MODEL, "train.batch_size=2",
         "train.steps=2", "--out", str(run), "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    val = json.loads(capsys.readouterr().out)["val"]
    assert val["pairs"] == 4 and 0.0 <= val["miou"] <= 1.0
    args = ["eval", str(run), "--dataset", "hf", "--dataset-root", str(root), "--split"]
    assert main([*args, "val"]) == 0  # tseg eval on the mask column: the same pairs
    assert '"pairs": 4' in capsys.readouterr().out
    assert main([*args, "train"]) == 2  # no mask column there
    assert (
        "[train]: no masks (no column mask, masks, segmentation of images"
        in capsys.readouterr().err
    )
