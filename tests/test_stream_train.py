"""tseg train on streamed WebDataset shards (data.stream): the batches, exact resume, DDP."""

from __future__ import annotations

import io
import json
import socket
import tarfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import MICRO, torchrun_env
from helpers import one_vocabulary
from safetensors.torch import load_file

from tseg import distributed
from tseg.checkpoint import CheckpointError, read_meta, resolve
from tseg.config import ConfigError, build_config
from tseg.data.base import DatasetError
from tseg.data.convert import convert
from tseg.data.own.shards import expand_shards
from tseg.data.synthetic.shapes import ShapesDataset
from tseg.train import train
from tseg.train.build import build_run, make_loader
from tseg.train.objectives import with_global_negatives


def _shards(out: Path, size: int, shard_size: int) -> str:
    ds = ShapesDataset("train", size=size, image_size=32)
    return convert(ds, out, "webdataset", shard_size=shard_size, progress=False)["data.shards"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """24 shapes samples in 8 shards of 3."""
    return _shards(tmp_path_factory.mktemp("shards"), 24, 3)


def stream_overrides(shards: str) -> list[str]:
    return [*MICRO, "data.dataset=webdataset", f"data.shards={shards}", "data.stream=true"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(resolve(run) / "model.safetensors"))


def _train(overrides: list[str], resume: bool = False) -> None:
    train(build_config(None, overrides), progress=False, evaluate_splits=(), resume=resume)


def test_stream_needs_webdataset_and_weak_training(shards: str) -> None:
    with pytest.raises(ConfigError, match="'data.stream' streams WebDataset.*'shapes'"):
        build_config(None, ["data.stream=true"])
    with pytest.raises(ConfigError, match="'data.stream' trains on image-level text only"):
        build_config(None, [*stream_overrides(shards), "train.mode=full"])
    with pytest.raises(ConfigError, match="train.mode = 'box'"):
        build_config(None, [*stream_overrides(shards), "train.mode=box"])
    assert build_config(None, stream_overrides(shards)).data.stream


def test_streamed_batches_are_the_weak_collates(shards: str, tmp_path: Path) -> None:
    """The same keys, dtypes and per-image shapes as the map-style loader's, and targets that
    mark each image's own expressions."""
    cfg = build_config(None, [*stream_overrides(shards), f"train.out_dir={tmp_path}"])
    run = build_run(cfg, torch.device("cpu"))
    epoch, batch = next(run.stream)
    mapped = build_config(None, [*MICRO, "data.dataset=webdataset", f"data.shards={shards}"])
    from tseg.data import build_dataset

    loader, _, _ = make_loader(mapped, build_dataset(mapped.data, "train"), 0)
    expected = next(iter(loader))
    assert epoch == 0 and set(batch) == set(expected) == {"images", "texts", "targets"}
    assert batch["images"].shape == expected["images"].shape == (8, 3, 32, 32)
    assert batch["images"].dtype == expected["images"].dtype
    assert batch["targets"].shape == (8, len(batch["texts"]))
    assert batch["targets"].dtype == expected["targets"].dtype
    assert all(isinstance(t, str) for t in batch["texts"])
    assert len(run.stream.keys) == 8 and run.collate is None  # one process: local negatives
    assert run.data_state() == run.stream.state_dict()
    assert run.data_state()["good"] == 8


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_resume_gives_the_same_weights(
    shards: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """Steps 7, stopped after 4: mid-epoch with 0 workers (3 batches an epoch), at the end of
    epoch 0 before its workers reported with 2 (4 batches an epoch); BERT dropout is on."""
    one_vocabulary(monkeypatch)
    common = [
        *stream_overrides(shards),
        f"data.num_workers={workers}",
        "train.steps=7",
        "train.save_every=4",
        "train.log_every=100",
    ]
    _train([*common, f"train.out_dir={tmp_path / 'a'}"])
    _train([*common, "train.steps=4", f"train.out_dir={tmp_path / 'b'}"])
    saved = read_meta(resolve(tmp_path / "b"))["train_state"]["stream"]
    assert len(saved) == 1 and saved[0]["slots"] == max(1, workers)
    assert saved[0]["good"] == (8 if workers == 0 else 24)  # into epoch 1 / still in epoch 0
    _train([*common, f"train.out_dir={tmp_path / 'b'}"], resume=True)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    final = read_meta(resolve(tmp_path / "a"))["train_state"]["stream"][0]
    assert final == read_meta(resolve(tmp_path / "b"))["train_state"]["stream"][0]
    # Another number of workers cannot continue the position.
    with pytest.raises(DatasetError, match="resume with the same data.num_workers"):
        _train(
            [*common, f"data.num_workers={2 - workers}", f"train.out_dir={tmp_path / 'b'}"],
            resume=True,
        )


def test_a_map_style_checkpoint_resumes_streamed_with_a_warning(
    shards: str, tmp_path: Path
) -> None:
    mapped = [*MICRO, "data.dataset=webdataset", f"data.shards={shards}", "train.steps=1"]
    _train([*mapped, f"train.out_dir={tmp_path}"])
    with pytest.warns(UserWarning, match="holds no stream position"):
        _train([*mapped, "data.stream=true", "train.steps=2", f"train.out_dir={tmp_path}"], True)


# ----------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: Path, shards: str) -> None:
    """One forked process (torchrun's environment, gloo): two epochs of the training stream
    through build_run, then a streamed run, stopped and resumed, against one never stopped."""
    torch.set_num_threads(1)  # before any torch op: OpenMP's pool did not survive the fork
    torchrun_env(rank, world, port)
    common = [*stream_overrides(shards), "train.batch_size=4", "train.threads=1"]
    device = torch.device("cpu")
    created = distributed.init(device)
    try:
        run = build_run(build_config(None, [*common, f"train.out_dir={out / 'x'}"]), device)
        seen: dict[int, list[str]] = {0: [], 1: []}
        formats = set()
        while True:
            epoch, batch = next(run.stream)
            if epoch == 2:
                break
            seen[epoch].extend(run.stream.keys)
            formats.add(tuple(sorted(batch)))
        assert run.collate is not None  # global negatives: the batches keep "own"
        (out / f"keys{rank}.json").write_text(
            json.dumps({"seen": seen, "formats": sorted(formats)})
        )
        # Global negatives on one batch of each process (a collective: both call it once).
        batch = with_global_negatives(batch, run.collate)
        assert batch["targets"].shape == (len(batch["images"]), len(batch["gather_index"]))
        # Ranks read 3 and 2 shards (5, 5, 5, 5, 4 samples): their epochs end at other steps.
        _train([*common, "train.steps=8", f"train.out_dir={out / 'whole'}"])
        _train([*common, "train.steps=3", f"train.out_dir={out / 'parts'}"])
        _train([*common, "train.steps=8", f"train.out_dir={out / 'parts'}"], resume=True)
    finally:
        distributed.cleanup(created)


def test_two_processes_see_every_sample_once_per_epoch_and_resume_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = _shards(tmp_path / "shards", 24, 5)  # 5 shards: 3 for one process, 2 for the other
    one_vocabulary(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in test_distributed: forked children and OpenMP
    try:
        mp.start_processes(
            _rank_main,
            args=(2, _free_port(), tmp_path, shards),
            nprocs=2,
            join=True,
            start_method="fork",
        )
    finally:
        torch.set_num_threads(threads)
    names = [s for s in expand_shards(shards) for _ in range(5)][:24]  # sample i's shard
    everything = sorted(f"{s}: {i:09d}" for i, s in enumerate(names))
    ranks = [json.loads((tmp_path / f"keys{r}.json").read_text()) for r in (0, 1)]
    for epoch in ("0", "1"):
        seen = [k for r in ranks for k in r["seen"][epoch]]
        assert sorted(seen) == everything, epoch
    assert ranks[0]["seen"]["0"] != ranks[0]["seen"]["1"]  # a new shard order each epoch
    assert all(r["formats"] == [["images", "own", "targets", "texts"]] for r in ranks)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "parts")
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(x) for x in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    # The log counts both processes' images: rank 0's epoch is batches of 4, 4, 4, 2 (14
    # samples), rank 1's 4, 4, 2 (10), so the sums differ from twice rank 0's (8, 16, 24, ...).
    per_rank = [[4, 4, 4, 2] * 2, [4, 4, 2] * 3]
    expected = [sum(sum(b[: s + 1]) for b in per_rank) for s in range(8)]
    assert [r["images"] for r in log if "loss" in r] == expected == [8, 16, 22, 28, 36, 42, 50, 56]
    positions = read_meta(resolve(tmp_path / "parts"))["train_state"]["stream"]
    assert len(positions) == 2 and positions[0] != positions[1]
    # Another number of processes cannot continue the positions (the layout warns first).
    with (
        pytest.warns(UserWarning, match="not an exact continuation"),
        pytest.raises(CheckpointError, match="stream positions of 2 process"),
    ):
        _train(
            [*stream_overrides(shards), "train.steps=9", f"train.out_dir={tmp_path / 'parts'}"],
            True,
        )


def _bad_epoch_main(rank: int, world: int, port: int, out: Path, shards: str) -> None:
    """One forked process training on shards of which its own are all bad, or not: whatever
    it raises is written down (join would only say that a process failed)."""
    torch.set_num_threads(1)
    torchrun_env(rank, world, port)
    device = torch.device("cpu")
    created = distributed.init(device)
    try:
        _train([*stream_overrides(shards), "train.threads=1", "train.steps=3",
                f"train.out_dir={out / 'run'}"])  # fmt: skip
    except DatasetError as e:
        (out / f"error{rank}.txt").write_text(str(e))
    finally:
        distributed.cleanup(created)


def test_an_epoch_without_good_samples_on_one_process_stops_every_process(
    tmp_path: Path,
) -> None:
    """Under torchrun, one process's stream gives no good sample: both processes raise its
    error (the other one waited forever in its next collective)."""
    good = _shards(tmp_path / "good", 3, 3)
    bad = tmp_path / "bad" / "train-000000.tar"
    bad.parent.mkdir()
    with tarfile.open(bad, "w") as tar:  # one sample whose text is not JSON
        for name, data in (("k.png", b"x"), ("k.json", b"{not json")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mp.start_processes(
            _bad_epoch_main,
            args=(2, _free_port(), tmp_path, f"{expand_shards(good)[0]}::{bad}"),
            nprocs=2,
            join=True,
            start_method="fork",
        )
    finally:
        torch.set_num_threads(threads)
    errors = [(tmp_path / f"error{r}.txt").read_text() for r in (0, 1)]
    assert errors[0] == errors[1] and "read no good sample" in errors[0]
    assert "not valid JSON" in errors[0]
