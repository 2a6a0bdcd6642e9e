"""WebDataset shards: pattern expansion, the map-style reader, and the stream (split, resume, bad samples)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from builders.shards import png, text, write_tar
from PIL import Image

from tseg.config import build_config
from tseg.data import build_dataset
from tseg.data.base import DatasetError
from tseg.data.convert import convert
from tseg.data.own.shards import ShardDataset, expand_shards
from tseg.data.pipeline import WeakCollate
from tseg.data.stream import (
    ShardStream,
    ShardTexts,
    StreamBatches,
    StreamLoader,
    StreamPosition,
    WeakTransform,
)
from tseg.data.synthetic.shapes import ShapesDataset

CFG = build_config(None, ["data.image_size=32"]).data


@pytest.fixture(scope="module")
def shapes_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """14 shapes samples in 5 shards of 3 (the last of 2)."""
    out = tmp_path_factory.mktemp("shards")
    ds = ShapesDataset("train", size=14, image_size=32)
    return convert(ds, out, "webdataset", shard_size=3, progress=False)["data.shards"]


def stream(
    shards: str, rank: int = 0, world: int = 1, slots: int = 1, batch: int = 2
) -> ShardStream:
    return ShardStream(
        shards,
        WeakTransform(CFG),
        WeakCollate(),
        batch,
        seed=3,
        rank=rank,
        world_size=world,
        slots=slots,
    )


# ----------------------------------------------------------------------- patterns


def test_brace_glob_and_missing_patterns(shapes_shards: str) -> None:
    assert len(expand_shards(shapes_shards)) == 5
    folder = Path(expand_shards(shapes_shards)[0]).parent
    assert expand_shards(str(folder / "*.tar")) == expand_shards(shapes_shards)
    two = f"{folder}/train-000000.tar::{folder}/train-000004.tar"
    assert [Path(s).name for s in expand_shards(two)] == ["train-000000.tar", "train-000004.tar"]
    with pytest.raises(
        DatasetError, match=r"matches nothing: .*nothing-\{0\.\.1\}|matches nothing"
    ):
        expand_shards(str(folder / "nothing-{0..1}.tar"))
    with pytest.raises(DatasetError, match=r"matches nothing"):
        expand_shards(str(folder / "*.tgz"))
    with pytest.raises(DatasetError, match=r"names 1 missing file\(s\): .*train-000009\.tar"):
        expand_shards(str(folder / "train-{000003..000009..6}.tar"))
    with pytest.raises(DatasetError, match="'data.shards' is empty"):
        expand_shards("")


# ----------------------------------------------------------------------- map-style


def test_map_style_reader_keeps_order_and_pixels(shapes_shards: str) -> None:
    ds = ShapesDataset("train", size=14, image_size=32)
    cfg = build_config(None, ["data.dataset=webdataset", f"data.shards={shapes_shards}"])
    shards = build_dataset(cfg.data, "train")
    assert isinstance(shards, ShardDataset) and len(shards) == 14
    for i in (0, 5, 13):
        assert np.array_equal(shards.image(i), ds.image(i))
        assert shards.expressions(i) == ds.expressions(i)
    with pytest.raises(DatasetError, match="no split 'val'"):
        build_dataset(cfg.data, "val")


def test_txt_expressions_and_strict_errors(tmp_path: Path) -> None:
    tar = write_tar(
        tmp_path / "a.tar",
        [
            {"__key__": "k1", "jpg": _jpeg(), "txt": b"red circle\n\nblue square\n"},
            {"__key__": "k2", "png": png(), "json": json.dumps({"caption": "a cap"}).encode()},
        ],
    )
    ds = ShardDataset(str(tar))
    assert ds.expressions(0) == ["red circle", "blue square"] and ds.expressions(1) == ["a cap"]
    assert ds.image(0).shape == (8, 8, 3)
    write_tar(tmp_path / "b.tar", [{"__key__": "k3", "png": png(), "json": text([])}])
    with pytest.raises(DatasetError, match=r"b\.tar: k3\.json: 'expressions': the expression list"):
        ShardDataset(str(tmp_path / "b.tar"))
    write_tar(tmp_path / "c.tar", [{"__key__": "k4", "png": png(), "json": text(["ok", 7])}])
    with pytest.raises(DatasetError, match=r"c\.tar: k4\.json: 'expressions': expression 1 is not"):
        ShardDataset(str(tmp_path / "c.tar"))


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 99, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


# ----------------------------------------------------------------------- the stream


def epoch_keys(loader: StreamLoader) -> list[list[str]]:
    return [batch_keys for batch_keys, _ in epoch_batches(loader)]


def epoch_batches(loader: StreamLoader) -> list[tuple[list[str], torch.Tensor]]:
    return [(b["keys"], b["images"]) for b in loader.epoch()]


def test_two_ranks_two_workers_see_every_sample_once_per_epoch(shapes_shards: str) -> None:
    everything = sorted(
        f"{s}: {i:09d}" for i, s in enumerate(np.repeat(expand_shards(shapes_shards), 3)[:14])
    )
    loaders = [StreamLoader(stream(shapes_shards, r, 2, slots=2), num_workers=2) for r in (0, 1)]
    orders = []
    for epoch in (0, 1):
        seen = [k for loader in loaders for keys in epoch_keys(loader) for k in keys]
        assert sorted(seen) == everything, f"epoch {epoch}"
        orders.append(seen)
        assert all(loader.position.epoch == epoch + 1 for loader in loaders)
    assert orders[0] != orders[1]  # the shard order is drawn per epoch


def test_augmentation_does_not_depend_on_the_split(shapes_shards: str) -> None:
    alone = dict(
        (k, img)
        for keys, imgs in epoch_batches(StreamLoader(stream(shapes_shards)))
        for k, img in zip(keys, imgs)
    )
    split = StreamLoader(stream(shapes_shards, 1, 2, slots=2), num_workers=2)
    for keys, imgs in epoch_batches(split):
        for k, img in zip(keys, imgs):
            assert torch.equal(img, alone[k])


@pytest.mark.parametrize("stop", [1, 3, 4])
def test_resume_sees_exactly_the_uninterrupted_batches(shapes_shards: str, stop: int) -> None:
    full = StreamLoader(stream(shapes_shards, slots=2), num_workers=2)
    expected = epoch_batches(full) + epoch_batches(full)  # two epochs
    first = StreamLoader(stream(shapes_shards, slots=2), num_workers=2)
    got = []
    for b in first.epoch():
        got.append((b["keys"], b["images"]))
        if len(got) == stop:
            break
    state = json.loads(json.dumps(first.position.state_dict()))  # as a checkpoint stores it
    resumed = StreamLoader(
        stream(shapes_shards, slots=2),
        num_workers=2,
        position=StreamPosition.from_state_dict(state),
    )
    got += epoch_batches(resumed) + epoch_batches(resumed)
    assert [k for k, _ in got] == [k for k, _ in expected]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, expected))


def test_a_bad_member_is_skipped_and_counted(tmp_path: Path) -> None:
    good = [{"__key__": f"g{i}", "png": png(i), "json": text([f"thing {i}"])} for i in range(4)]
    bad = [
        {"__key__": "corrupt", "png": b"\x89PNG not really", "json": text(["x"])},
        {"__key__": "empty", "png": png(), "json": text([])},
        {"__key__": "nonstring", "png": png(), "json": text([3])},
    ]
    tar = write_tar(tmp_path / "s.tar", good[:2] + bad + good[2:])
    loader = StreamLoader(stream(str(tar), batch=3))
    with pytest.warns(
        UserWarning, match=r"skipped 3 bad sample\(s\) of 7.*corrupt\.png: cannot read"
    ):
        batches = list(loader.epoch())
    assert [k.rsplit(": ", 1)[1] for b in batches for k in b["keys"]] == ["g0", "g1", "g2", "g3"]


def test_a_truncated_shard_keeps_what_it_read(tmp_path: Path) -> None:
    samples = [{"__key__": f"g{i}", "png": png(i), "json": text([f"t {i}"])} for i in range(5)]
    tar = write_tar(tmp_path / "t.tar", samples)
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2 + 100])
    loader = StreamLoader(stream(str(tar), batch=1))
    with pytest.warns(UserWarning, match=r"t\.tar: unreadable"):
        batches = list(loader.epoch())
    assert 1 <= len(batches) < 5


def test_an_epoch_without_a_good_sample_is_an_error(tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "s.tar", [{"__key__": "k", "png": png(), "json": text([])}])
    with pytest.raises(DatasetError, match=r"epoch 0: process 0 read no good sample .*s\.tar"):
        list(StreamLoader(stream(str(tar))).epoch())
    missing = tmp_path / "gone.tar"
    write_tar(missing, [])
    missing.unlink()
    with pytest.raises(DatasetError, match="no good sample.*gone.tar: unreadable"):
        list(StreamLoader(stream([str(missing)])).epoch())


def test_too_few_shards_for_the_processes(shapes_shards: str) -> None:
    one = expand_shards(shapes_shards)[:1]
    with pytest.raises(DatasetError, match="1 shard\\(s\\) for 2 processes"):
        stream(one, 0, 2)
    with pytest.raises(DatasetError, match="resume with the same data.num_workers"):
        stream(shapes_shards).set_position(StreamPosition(slots=2))


def test_resume_after_one_worker_has_finished(tmp_path: Path) -> None:
    """Uneven shards: one worker's slot ends early; a resume after its end continues the
    round-robin over the slot still running, and the finished one stays finished."""
    big = write_tar(
        tmp_path / "big.tar",
        [{"__key__": f"b{i}", "png": png(i), "json": text([f"big {i}"])} for i in range(6)],
    )
    small = write_tar(
        tmp_path / "small.tar", [{"__key__": "s0", "png": png(), "json": text(["s"])}]
    )
    shards = [str(big), str(small)]

    def make() -> ShardStream:
        return ShardStream(
            shards, WeakTransform(CFG), WeakCollate(), 1, seed=0, slots=2, shuffle=False
        )

    expected = [b["keys"] for b in StreamLoader(make(), num_workers=2).epoch()]
    first = StreamLoader(make(), num_workers=2)
    got = []
    for b in first.epoch():
        got.append(b["keys"])
        if len(got) == 4:
            break
    assert first.position.done == [False, True]  # small.tar's slot has reported
    resumed = StreamLoader(make(), num_workers=2, position=first.position)
    got += [b["keys"] for b in resumed.epoch()]
    assert got == expected and len(got) == 7


def test_stream_batches_run_on_over_epochs_and_shard_texts_skip_bad_samples(
    tmp_path: Path,
) -> None:
    """StreamBatches (what tseg train reads with data.stream): (epoch, collated batch) across
    epochs, the keys aside; ShardTexts: the text of good samples in listed order, capped."""
    samples = [{"__key__": f"g{i}", "png": png(i), "json": text([f"thing {i}"])} for i in range(3)]
    bad = {"__key__": "bad", "png": png(), "json": b"{not json"}
    tar = write_tar(tmp_path / "s.tar", [samples[0], bad, *samples[1:]])
    batches = StreamBatches(StreamLoader(stream(str(tar), batch=2)))
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        got = [next(batches) for _ in range(3)]
    assert [e for e, _ in got] == [0, 0, 1]
    assert all(set(b) == {"images", "texts", "targets"} for _, b in got)
    assert batches.keys == [f"{tar}: g0", f"{tar}: g1"] and batches.position.epoch == 1
    texts = ShardTexts([str(tar)])
    assert len(texts) == 3 and texts.expressions(2) == ["thing 2"]
    assert len(ShardTexts([str(tar)], limit=2)) == 2
