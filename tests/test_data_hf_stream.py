"""Streaming a Hugging Face dataset (data.dataset=hf data.stream=true): shards, bad rows, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import MICRO_MODEL
from safetensors.torch import load_file

datasets = pytest.importorskip("datasets", reason="data.dataset=hf needs the datasets library")

from builders.hf import hf_cache, picture, table  # noqa: E402, F401  (the fixture is autouse)
from helpers import one_vocabulary  # noqa: E402

from tseg.checkpoint import read_meta, resolve  # noqa: E402
from tseg.config import build_config  # noqa: E402
from tseg.data.own.hf_stream import HfShards  # noqa: E402
from tseg.data.pipeline import WeakCollate  # noqa: E402
from tseg.data.stream import ShardStream, StreamLoader, WeakTransform  # noqa: E402
from tseg.train import train  # noqa: E402

CFG = build_config(None, ["data.image_size=32"]).data


def hub(root: Path, files: list[tuple[int, int]]) -> Path:
    """Parquet files in the Hub's layout, file j holding rows [a, b)."""
    (root / "data").mkdir(parents=True)
    for j, (a, b) in enumerate(files):
        name = f"train-{j:05d}-of-{len(files):05d}.parquet"
        table(b - a, a, text="caption").to_parquet(str(root / "data" / name))
    return root


def loader(source: HfShards, slots: int = 1, position=None) -> StreamLoader:
    stream = ShardStream(source, WeakTransform(CFG), WeakCollate(), 2, seed=1, slots=slots)
    return StreamLoader(stream, num_workers=0 if slots == 1 else slots, position=position)


def test_parquet_files_are_shards_and_every_row_comes_once_per_epoch(tmp_path: Path) -> None:
    source = HfShards(str(hub(tmp_path / "hub", [(0, 3), (3, 5)])))
    assert len(source.urls) == 2 and source.urls[1].endswith("[train] shard 1 of 2")
    assert len(source) == 5 and source.expressions(4) == ["caption 4"]  # the vocabulary's text
    run = loader(source)
    keys = [k for batch in run.epoch() for k in batch["keys"]]
    assert sorted(keys) == sorted(
        f"{source.urls[j]}: row {k}" for j, n in ((0, 3), (1, 2)) for k in range(n)
    )
    assert run.position.epoch == 1


def test_bad_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "d"
    datasets.Dataset.from_dict(
        {
            "image": [picture(0), {"bytes": b"not an image", "path": None}, picture(2)],
            "text": [["a thing"], ["broken"], []],
        },
        features=datasets.Features(
            {"image": datasets.Image(), "text": datasets.Sequence(datasets.Value("string"))}
        ),
    ).save_to_disk(root)
    source = HfShards(str(root))
    assert len(source.urls) == 3  # a saved dataset: row ranges, here one row each
    run = loader(source)
    with pytest.warns(UserWarning, match=r"skipped 2 bad sample\(s\) of 3") as w:
        assert [b["keys"] for b in run.epoch()] == [[f"{source.urls[0]}: row 0"]]
    message = str(w[0].message)
    assert "row 0: 'image': cannot read the image" in message
    assert "'text': the expression list is empty" in message


def test_a_resumed_stream_continues_exactly(tmp_path: Path) -> None:
    """Two workers, stopped after 3 batches: the resumed loader gives the rest of the epoch
    exactly, pixels included (each row's augmentation is seeded by its place)."""
    table(11).save_to_disk(tmp_path / "d")
    source = HfShards(str(tmp_path / "d"))
    whole = [(b["keys"], b["images"]) for b in loader(source, slots=2).epoch()]
    first = loader(source, slots=2)
    got = []
    for b in first.epoch():
        got.append((b["keys"], b["images"]))
        if len(got) == 3:
            break
    resumed = loader(source, slots=2, position=first.position)
    got += [(b["keys"], b["images"]) for b in resumed.epoch()]
    assert [k for k, _ in got] == [k for k, _ in whole]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, whole))


def test_tseg_train_streams_hf_and_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 parquet files, 5 steps of 2 rows, stopped after 2: the same weights."""
    one_vocabulary(monkeypatch)
    root = hub(tmp_path / "hub", [(0, 4), (4, 7), (7, 9)])
    common = [*MICRO_MODEL, "data.dataset=hf", f"data.root={root}", "data.stream=true",
              "train.batch_size=2", "train.log_every=100", "train.save_every=2"]  # fmt: skip
    cfg = build_config(None, [*common, "train.steps=5", f"train.out_dir={tmp_path / 'a'}"])
    train(cfg, progress=False, evaluate_splits=())
    part = [*common, f"train.out_dir={tmp_path / 'b'}"]
    train(build_config(None, [*part, "train.steps=2"]), progress=False, evaluate_splits=())
    saved = read_meta(resolve(tmp_path / "b"))["train_state"]["stream"][0]
    assert saved["good"] == 4  # 2 steps of 2 rows
    cfg = build_config(None, [*part, "train.steps=5"])
    train(cfg, progress=False, evaluate_splits=(), resume=True)
    a = load_file(str(resolve(tmp_path / "a") / "model.safetensors"))
    b = load_file(str(resolve(tmp_path / "b") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
