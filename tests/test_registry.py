"""The dataset registry: a dataset registered with one ``register`` call trains and is checked
with no other edit; an unknown ``data.dataset`` fails in the config naming the key and the
registered names; the table of docs/datasets.md is the registry's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tseg.cli import main
from tseg.config import ConfigError, DataConfig, build_config
from tseg.data import DatasetError, build_dataset
from tseg.data.registry import (
    DATASETS,
    DatasetSpec,
    get,
    lazy,
    markdown_table,
    names,
    no_masks_reason,
    register,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (240, 220, 40)}  # fmt: skip


class Squares:
    """8 images of one coloured square on grey, each with its expression and mask."""

    def __init__(self, split: str, side: int = 32, size: int = 8) -> None:
        rng = np.random.default_rng({"train": 0, "val": 1}.get(split, 2))
        self.side, self.items = side, []
        for i in range(size):
            colour = list(COLOURS)[i % len(COLOURS)]
            half = int(rng.integers(side // 6, side // 3))
            y, x = rng.integers(0, side - half, 2)
            self.items.append((colour, int(y), int(x), half))

    def __len__(self) -> int:
        return len(self.items)

    def _mask(self, idx: int) -> np.ndarray:
        _, y, x, half = self.items[idx]
        mask = np.zeros((self.side, self.side), dtype=bool)
        mask[y : y + half, x : x + half] = True
        return mask

    def image(self, idx: int) -> np.ndarray:
        image = np.full((self.side, self.side, 3), 128, dtype=np.uint8)
        image[self._mask(idx)] = COLOURS[self.items[idx][0]]
        return image

    def expressions(self, idx: int) -> list[str]:
        return [f"{self.items[idx][0]} square"]

    def masks(self, idx: int) -> np.ndarray:
        return self._mask(idx)[None]


def build_squares(cfg: DataConfig, split: str) -> Squares:
    return Squares(split, side=cfg.image_size)


@pytest.fixture
def unregister() -> Iterator[None]:
    yield
    DATASETS.pop("squares", None)


def test_a_registered_dataset_trains_and_is_checked(
    unregister: None, micro_overrides: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tseg.train import train

    register(DatasetSpec("squares", "synthetic", build_squares, lazy("tseg.data.check.loadable:check_loadable"), doc="one coloured square per image"))  # fmt: skip

    cfg = build_config(None, [*micro_overrides, "data.dataset=squares"])
    assert isinstance(build_dataset(cfg.data, "train"), Squares)
    result = train(cfg, progress=False, evaluate_splits=("val",))
    assert Path(result["checkpoint"]).exists() and 0.0 <= result["val"]["miou"] <= 1.0

    assert main(["data", "check", "squares", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"squares at {tmp_path}: OK" in out
    assert re.search(r"train\s+8\s+8", out) and re.search(r"val\s+8\s+8", out)
    assert "squares" in names("synthetic") and "squares" in names(checked=True)
    assert "`squares` | synthetic | yes | yes | one coloured square per image" in markdown_table()


def test_the_loading_check_reports_bad_items(unregister: None, tmp_path: Path) -> None:
    from tseg.data.check import check_dataset

    class Broken(Squares):
        def masks(self, idx: int) -> np.ndarray:
            return np.zeros((2, 3, 3), dtype=bool) if idx == 1 else super().masks(idx)

        def expressions(self, idx: int) -> list[str]:
            return [] if idx == 2 else super().expressions(idx)

    def build(cfg: DataConfig, split: str) -> Squares:
        if split == "val":
            raise DatasetError("no val here")
        return Broken(split)

    register(DatasetSpec("squares", "synthetic", build, lazy("tseg.data.check.loadable:check_loadable")))  # fmt: skip
    report = check_dataset("squares", tmp_path)
    assert not report.ok and report.counts["train"] == {"images": 8, "expressions": 6}
    text = report.format()
    assert "train: bad masks: 1, e.g.\n    image 1: masks (2, 3, 3) bool" in text
    assert "train: no expressions: 1" in text and "val: no val here" in text


def test_an_unknown_dataset_fails_in_the_config_naming_the_key_and_the_names() -> None:
    with pytest.raises(ConfigError) as e:
        build_config(None, ["data.dataset=typo"])
    message = str(e.value)
    assert message.startswith("config key 'data.dataset' = 'typo': choose one of shapes, refcoco")
    assert all(name in message for name in DATASETS)
    with pytest.raises(DatasetError, match=r"'data.dataset' = 'typo': unknown dataset \(available: shapes, refcoco, "):  # fmt: skip
        get("typo")
    with pytest.raises(DatasetError, match="unknown dataset 'shapes'; expected one of refcoco,"):
        from tseg.data.check import check_dataset

        check_dataset("shapes", ".")  # registered, but without a check


def test_registry_names_kinds_and_masks() -> None:
    assert names("paper") == ("refcoco", "refcoco+", "refcocog", "grefcoco", "phrasecut", "voc")
    assert names("own") == ("imagefolder", "coco_captions", "coco", "webdataset", "hf")
    assert names("synthetic") == ("shapes",)
    assert names() == ("shapes", *names("paper"), *names("own"))
    assert [s.name for s in DATASETS.values() if s.weak] == [
        "imagefolder",
        "coco_captions",
        "webdataset",
    ]
    assert no_masks_reason(DataConfig(dataset="coco_captions"), "val").startswith(
        "data.dataset=coco_captions has no masks; evaluate the checkpoint on data with masks"
    )
    assert no_masks_reason(DataConfig(dataset="coco"), "val") is None
    with pytest.raises(ValueError, match="registered already"):
        register(DATASETS["shapes"])
    with pytest.raises(ValueError, match="kind 'mine' is not one of paper, own, synthetic"):
        DatasetSpec("x", "mine", build_squares)


def test_the_docs_table_is_the_registrys() -> None:
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- datasets:registry -->\n(.*?)<!-- /datasets -->", text, re.S)
    assert block, "docs/datasets.md lost its <!-- datasets:registry --> block"
    assert block.group(1).strip() == markdown_table().strip(), (
        "the table is out of date: paste tseg.data.registry.markdown_table() into docs/datasets.md"
    )
