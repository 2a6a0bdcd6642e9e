"""The thread governor: threads follow the cores other processes leave idle."""

from __future__ import annotations

import json

import pytest
import torch

from tseg import threads
from tseg.threads import ThreadGovernor


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_choose_leaves_the_busy_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "START_THREADS", 4)
    g = ThreadGovernor()
    assert g.max_threads == 4
    assert [g.choose(x) for x in (0.0, 0.4, 0.6, 1.0, 2.2, 3.9, 7.0)] == [4, 4, 3, 3, 2, 1, 1]
    assert ThreadGovernor(max_threads=2).choose(0.0) == 2


def test_update_measures_others_and_sets_torch_threads(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "START_THREADS", 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    machine = iter([(0, 1000), (600, 1200), (620, 1400)])  # (busy, total) ticks of all CPUs
    own = iter([0, 0, 20])  # this process's ticks
    monkeypatch.setattr(threads, "_machine_ticks", lambda: next(machine))
    monkeypatch.setattr(threads, "_own_ticks", lambda: next(own))
    g = ThreadGovernor(interval=3600.0)
    assert g.update() == 2  # within the interval: not measured
    # 600 busy ticks of 200 on 2 CPUs, none ours: 6 cores' worth is clipped to leave 1 thread.
    assert g.update(force=True) == 1 and torch.get_num_threads() == 1
    # Then 20 busy ticks of 200, all ours: the machine is free again.
    assert g.update(force=True) == 2 and torch.get_num_threads() == 2


def test_without_proc_the_governor_changes_nothing(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, "_machine_ticks", lambda: None)
    torch.set_num_threads(1)
    g = ThreadGovernor(max_threads=2)
    assert g.update(force=True) == 2 and torch.get_num_threads() == 1


def test_real_proc_reading_is_a_plausible_core_count():
    g = ThreadGovernor()
    sum(i * i for i in range(200_000))  # some work of our own, which is not counted
    others = g.others_busy()
    if others is None:
        pytest.skip("no /proc on this system")
    assert 0.0 <= others <= (threads.os.cpu_count() or 1)


def test_training_logs_the_threads_it_chose(micro_overrides, tmp_path, restore_threads):
    from tseg.config import build_config
    from tseg.train import train

    cfg = build_config(None, [*micro_overrides, "train.threads=0", "train.device=cpu"])
    train(cfg, progress=False, evaluate_splits=())
    recs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    logged = [r["threads"] for r in recs if "threads" in r]
    assert logged and all(1 <= t <= threads.available_cores() for t in logged)
    cfg = build_config(
        None, [*micro_overrides, "train.threads=1", "train.out_dir=" + str(tmp_path / "r1")]
    )
    train(cfg, progress=False, evaluate_splits=())
    recs = [json.loads(x) for x in (tmp_path / "r1" / "log.jsonl").read_text().splitlines()]
    assert not any("threads" in r for r in recs)  # a fixed count: no governor


def test_the_governor_never_raises_the_count_above_the_start(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "START_THREADS", 3)  # e.g. OMP_NUM_THREADS=3
    g = ThreadGovernor()
    assert g.max_threads == 3 and g.choose(0.0) == 3 and g.choose(6.0) == 2


def test_segment_sizes_its_threads_too(micro_overrides, tmp_path, monkeypatch, restore_threads):
    from PIL import Image

    from tseg.checkpoint import save_checkpoint
    from tseg.config import build_config
    from tseg.data import build_dataset
    from tseg.inference import segment_files
    from tseg.train.build import build_model

    calls: list[bool] = []
    real = ThreadGovernor.update
    monkeypatch.setattr(
        ThreadGovernor, "update", lambda self, force=False: calls.append(force) or real(self, force)
    )
    cfg = build_config(None, micro_overrides)
    ckpt = save_checkpoint(
        build_model(cfg, build_dataset(cfg.data, "train")), cfg, tmp_path / "r", 1
    )
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 80, 0, 0)).save(tmp_path / f"im{i}.png")
    report = segment_files(ckpt, str(tmp_path / "im*.png"), ["red"], out=tmp_path / "o", workers=0)
    assert report.written == 3
    assert calls == [True, False, False]  # measured before the first image, then every 5 s


def test_a_negative_thread_count_is_refused_by_name():
    from tseg.config import build_config
    from tseg.errors import ConfigError

    with pytest.raises(ConfigError, match="train.threads"):
        build_config(None, ["train.threads=-1"])
