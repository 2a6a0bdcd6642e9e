"""``tseg data convert``: shapes round-trips through every weak format, pixel for pixel, and trains
to the same weights as shapes itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO
from safetensors.torch import load_file

from tseg.checkpoint import resolve
from tseg.cli import main
from tseg.config import build_config
from tseg.data import build_dataset
from tseg.data.base import DatasetError
from tseg.data.convert import convert
from tseg.data.synthetic.shapes import ShapesDataset
from tseg.train import train

#: How each converted copy is read back: data.* overrides.
READ_BACK = {
    "imagefolder": lambda r: ["data.dataset=imagefolder", f"data.root={r['out']}"],
    "coco_captions": lambda r: ["data.dataset=coco_captions", f"data.root={r['out']}"],
    "webdataset": lambda r: ["data.dataset=webdataset", f"data.shards={r['data.shards']}"],
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The micro training set of shapes (24 images) in each format."""
    source = build_dataset(build_config(None, MICRO).data, "train")
    root = tmp_path_factory.mktemp("converted")
    return {
        fmt: convert(source, root / fmt, fmt, shard_size=5, progress=False) for fmt in READ_BACK
    }


@pytest.mark.parametrize("fmt", list(READ_BACK))
def test_same_images_and_expressions(converted: dict, fmt: str) -> None:
    source = build_dataset(build_config(None, MICRO).data, "train")
    back = build_dataset(
        build_config(None, [*MICRO, *READ_BACK[fmt](converted[fmt])]).data, "train"
    )
    assert len(back) == len(source) == 24
    for i in range(len(source)):
        assert np.array_equal(back.image(i), source.image(i)), i  # PNG: bit-identical pixels
        assert back.expressions(i) == source.expressions(i), i


@pytest.mark.parametrize("fmt", list(READ_BACK))
def test_trains_to_the_same_weights_as_shapes(converted: dict, fmt: str, tmp_path: Path) -> None:
    # Same images, expressions and order: the same vocabulary (built from the expressions), the
    # same augmentation (drawn from seed, epoch, index) and so the same steps. The stream keeps
    # this order too but trains through the map-style path here; streaming is not wired yet.
    weights = []
    for name, extra in (("shapes", []), (fmt, READ_BACK[fmt](converted[fmt]))):
        cfg = build_config(None, [*MICRO, *extra, f"train.out_dir={tmp_path / name}"])
        train(cfg, progress=False, evaluate_splits=())
        weights.append(load_file(str(resolve(tmp_path / name) / "model.safetensors")))
    a, b = weights
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_shards_index_and_atomic_names(converted: dict) -> None:
    r = converted["webdataset"]
    out = Path(r["out"])
    assert r["data.shards"] == str(out / "train-{000000..000004}.tar")
    assert [s["samples"] for s in r["shards"]] == [5, 5, 5, 5, 4]
    assert json.loads((out / "train-shards.json").read_text())["samples"] == 24
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_source_jpegs_are_copied_byte_for_byte(tmp_path: Path) -> None:
    from builders.coco import make_captions

    make_captions(tmp_path / "coco")
    src = build_dataset(
        build_config(
            None,
            [
                "data.dataset=coco_captions",
                f"data.root={tmp_path / 'coco'}",
                "data.train_split=train2017",
            ],
        ).data,
        "train",
    )
    r = convert(src, tmp_path / "if", "imagefolder", progress=False)
    rows = [
        json.loads(line) for line in (tmp_path / "if" / "metadata.jsonl").read_text().splitlines()
    ]
    assert (Path(r["out"]) / rows[0]["file_name"]).read_bytes() == src.image_path(0).read_bytes()
    assert rows[0]["expressions"] == src.expressions(0)


def test_convert_errors(tmp_path: Path) -> None:
    ds = ShapesDataset("train", size=2, image_size=32)
    with pytest.raises(DatasetError, match="unknown output format 'zip'"):
        convert(ds, tmp_path, "zip")
    with pytest.raises(DatasetError, match="--shard-size must be at least 1"):
        convert(ds, tmp_path, shard_size=0)


def test_cli_convert_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shards"
    code = main(
        ["data", "convert", "shapes", str(out), "--shard-size", "2", "--set", "data.train_size=5",
         "--set", "data.image_size=32", "--quiet"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    pattern = str(out / "train-{000000..000002}.tar")
    assert f"data.dataset=webdataset data.shards='{pattern}'" in printed
    assert (
        f"or stream them: tseg train data.dataset=webdataset data.shards='{pattern}' data.stream=true"
        in printed
    )
    assert main(["data", "check", "webdataset", pattern]) == 0
    assert "webdataset at" in capsys.readouterr().out
    assert main(["data", "convert", "nope", str(out)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
