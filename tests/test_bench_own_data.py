"""The own-data loader benchmark runs at a tiny size and writes its JSON (figures are not checked)."""

from __future__ import annotations

import json
import sys

import torch
from conftest import MICRO_MODEL

from benchmarks import own_data_speed


def test_runs_tiny_and_writes_json(tmp_path, monkeypatch) -> None:
    out = tmp_path / "speed.json"
    argv = ["own_data_speed.py", "--images", "4", "--epochs", "1", "--workers", "0",
            "--shard-size", "2", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    own_data_speed.main()
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"imagefolder/workers=0", "webdataset/workers=0"}
    assert all(r["images"] == 4 for r in data["results"].values())
    assert data["command"].endswith("--out " + str(out)) and len(data["load_average_before"]) == 3


def test_step_time_on_a_micro_model() -> None:
    row = own_data_speed.step_time(MICRO_MODEL, torch.device("cpu"), steps=1, warmup=0)
    assert row["device"] == "cpu" and row["step_s"] > 0 and row["images_per_s_needed"] > 0
