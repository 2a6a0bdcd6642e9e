"""``imagefolder``: the Hugging Face ImageFolder layout with metadata.jsonl / .csv / .parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders.imagefolder import make_folder, write_image, write_jsonl

from tseg.config import build_config
from tseg.data import build_dataset
from tseg.data.base import DatasetError
from tseg.data.own.imagefolder import ImageFolderDataset, split_folder


def test_jsonl_rows_are_grouped_by_image(tmp_path: Path) -> None:
    ds = ImageFolderDataset(make_folder(tmp_path), "train")
    assert len(ds) == 2 and ds.num_rows == 3
    assert ds.expressions(0) == ["red circle", "the red thing"]
    assert ds.expressions(1) == ["a blue square"]
    assert ds.image(0).shape == (6, 5, 3) and ds.image(0)[0, 0, 0] == 10
    with pytest.raises(DatasetError, match="no masks"):
        ds.masks(0)


def test_metadata_in_subfolders_is_relative_to_its_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "part1" / "x.png")
    write_image(tmp_path / "part2" / "imgs" / "y.png")
    write_jsonl(tmp_path / "part1" / "metadata.jsonl", [{"file_name": "x.png", "text": "x"}])
    write_jsonl(tmp_path / "part2" / "metadata.jsonl", [{"file_name": "imgs/y.png", "text": "y"}])
    ds = ImageFolderDataset(tmp_path, "train")
    assert [ds.image_path(i).name for i in range(len(ds))] == ["x.png", "y.png"]


def test_csv_with_text_and_json_list_columns(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    (tmp_path / "metadata.csv").write_text(
        'file_name,expressions\na.png,"[""one"", ""two""]"\nb.png,"[""three""]"\n'
    )
    ds = ImageFolderDataset(tmp_path, "train")
    assert ds.expressions(0) == ["one", "two"] and ds.expressions(1) == ["three"]
    (tmp_path / "metadata.csv").write_text("file_name,text\na.png,a caption\n")
    assert ImageFolderDataset(tmp_path, "train").expressions(0) == ["a caption"]


def test_metadata_parquet_is_read_as_the_datasets_library_reads_it(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    write_image(tmp_path / "train" / "a.png", 10)
    write_image(tmp_path / "train" / "b.png", 20)
    rows = {"file_name": ["a.png", "b.png"], "expressions": [["red circle", "it"], ["a square"]]}
    pq.write_table(pa.table(rows), tmp_path / "train" / "metadata.parquet")
    ds = ImageFolderDataset(tmp_path, "train")
    assert [ds.expressions(i) for i in range(2)] == [["red circle", "it"], ["a square"]]
    assert ds.image(1)[0, 0, 0] == 20
    datasets = pytest.importorskip("datasets")
    theirs = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert theirs["expressions"] == rows["expressions"]  # the same rows, the same layout
    pq.write_table(pa.table({"name": ["a.png"]}), tmp_path / "train" / "metadata.parquet")
    with pytest.raises(DatasetError, match=r"metadata\.parquet: no 'file_name' column: \['name'\]"):
        ImageFolderDataset(tmp_path, "train")
    (tmp_path / "train" / "metadata.parquet").write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match=r"metadata\.parquet: cannot read as Parquet"):
        ImageFolderDataset(tmp_path, "train")


def test_split_folders_follow_imagefolder_names(tmp_path: Path) -> None:
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "validation")
    assert split_folder(tmp_path, "val") == tmp_path / "validation"
    assert split_folder(tmp_path, "train") == tmp_path / "train"
    with pytest.raises(DatasetError, match="no folder for split 'test'"):
        split_folder(tmp_path, "test")
    # Without split folders the root is the training split.
    assert split_folder(make_folder(tmp_path / "plain"), "train") == tmp_path / "plain"


def test_build_dataset_reads_it(tmp_path: Path) -> None:
    cfg = build_config(None, ["data.dataset=imagefolder", f"data.root={make_folder(tmp_path)}"])
    assert len(build_dataset(cfg.data, "train")) == 2


# ----------------------------------------------------------------------- bad input


def test_missing_metadata_file_is_named(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    with pytest.raises(
        DatasetError, match=r"no metadata\.jsonl, metadata\.csv or metadata\.parquet"
    ):
        ImageFolderDataset(tmp_path, "train")


def test_row_naming_a_missing_image(tmp_path: Path) -> None:
    make_folder(tmp_path)
    meta = tmp_path / "metadata.jsonl"
    meta.write_text(meta.read_text() + json.dumps({"file_name": "gone.png", "text": "x"}) + "\n")
    with pytest.raises(DatasetError, match=rf"{meta}:4: image .*gone\.png not found"):
        ImageFolderDataset(tmp_path, "train")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"file_name": "a.png", "expressions": []}, "the expression list is empty"),
        ({"file_name": "a.png", "expressions": ["ok", 3]}, "expression 1 is not a string"),
        ({"file_name": "a.png", "expressions": ["  "]}, "expression 0 is empty"),
        ({"file_name": "a.png", "text": 5}, "'text' must be a string"),
        ({"file_name": "a.png"}, "no text"),
        ({"file_name": "../a.png", "text": "x"}, "escapes the folder"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: dict, message: str) -> None:
    write_image(tmp_path / "a.png")
    write_jsonl(tmp_path / "metadata.jsonl", [{"file_name": "a.png", "text": "fine"}, row])
    with pytest.raises(DatasetError, match=rf"metadata\.jsonl:2.*{message}"):
        ImageFolderDataset(tmp_path, "train")


def test_mixed_metadata_formats_are_refused(tmp_path: Path) -> None:
    make_folder(tmp_path)
    (tmp_path / "sub" / "metadata.csv").write_text("file_name,text\nb.jpg,x\n")
    with pytest.raises(DatasetError, match="two formats"):
        ImageFolderDataset(tmp_path, "train")
