"""Sharded ``tseg eval`` / ``tseg segment`` over 2 CPU processes (gloo) equal one process."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import torchrun_env, untrained_checkpoint
from PIL import Image

from tseg.cli import main
from tseg.distributed import Shard, ShardingError

TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained micro checkpoint; val holds 10 images, i.e. 3 batches of 4."""
    return untrained_checkpoint(tmp_path_factory.mktemp("shard") / "run", ("data.val_size=10",))


@contextlib.contextmanager
def one_thread():
    """The ranks run single-threaded; so does the baseline, so float sums match bit for bit."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def test_shards_are_disjoint_cover_everything_and_keep_order() -> None:
    items = list(range(11))
    parts = [Shard(r, 3).take(items) for r in range(3)]
    assert sorted(sum(parts, [])) == items and parts[1] == [1, 4, 7, 10]
    assert Shard().take(items) == items and Shard().is_main and not Shard(1, 2).is_main
    assert Shard().gather_keyed([(2, "c"), (0, "a"), (1, "b")]) == ["a", "b", "c"]
    with pytest.raises(ShardingError, match="rank 2 is not in a world of size 2"):
        Shard(2, 2)


def test_torchrun_eval_equals_one_process(run, capsys) -> None:
    args = ["eval", str(run), "--split", "val", "--presence", "--device", "cpu"]
    with one_thread():
        assert main(args) == 0
    single = json.loads(capsys.readouterr().out)
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*launch, "-m", "tseg.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = json.loads(proc.stdout)  # rank 0 alone prints: one JSON document
    assert sharded["ranks"] == 2
    assert sharded["val"] == single["val"] and single["val"]["pairs"] > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, argv: list[str], logs: Path) -> None:
    """One forked rank with torchrun's environment; its stdout/stderr go to files."""
    torchrun_env(rank, 2, port)
    torch.set_num_threads(1)
    with (
        open(logs / f"out{rank}", "w") as out,
        open(logs / f"err{rank}", "w") as err,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        rc = main(argv)
    sys.exit(rc)


def tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_sharded_segment_writes_the_files_of_one_process(run, tmp_path, capsys) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = ["a.png", "b.png", "c.jpg", "d.png", "sub/a.png"]  # sub/a.png -> folder a_1
    for k, name in enumerate(names):
        size = (20 + 7 * k, 40 - 3 * k, 3)
        Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(photos / name)
    (photos / "bad.png").write_bytes(b"not an image")
    pattern = str(photos / "**" / "*.*g")

    def argv(out: Path) -> list[str]:
        return ["segment", str(run), pattern, "red circle", "--out", str(out), "--workers", "1"]

    with one_thread():
        assert main([*argv(tmp_path / "one"), "--device", "cpu"]) == 2  # bad.png fails
    capsys.readouterr()
    logs = tmp_path / "logs"
    logs.mkdir()
    ctx = mp.get_context("fork")  # no re-import: the ranks start in well under a second
    port = free_port()
    ranks = [
        ctx.Process(target=_rank, args=(r, port, [*argv(tmp_path / "two"), "--quiet"], logs))
        for r in range(2)
    ]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=120)
    for p in ranks:
        if p.is_alive():  # a rank stuck at the rendezvous must not outlive the test
            p.kill()
    errs = [(logs / f"err{r}").read_text() for r in range(2)]
    assert [p.exitcode for p in ranks] == [2, 2], errs  # every rank knows a file failed
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert sorted({k.split("/")[0] for k in two}) == ["a", "a_1", "b", "c", "d", "index.json"]
    assert two == one  # no file missing, none extra, same bytes (the index of inputs included)
    assert sum("bad.png' could not be read" in e for e in errs) == 1  # its rank reports it
    outs = [(logs / f"out{r}").read_text() for r in range(2)]
    assert "wrote 5 results" in outs[0] and "1 of 6 could not be read" in outs[0]
    assert outs[1] == ""  # rank 1 prints no summary


def test_incomplete_torchrun_environment_is_named(run, monkeypatch, capsys) -> None:
    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT not set" in err and "torchrun" in err
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert main(["eval", str(run)]) == 2
    assert "WORLD_SIZE='two' is not an integer" in capsys.readouterr().err
