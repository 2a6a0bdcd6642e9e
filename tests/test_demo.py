"""`tseg demo`: trains its recipe, evaluates val and test, writes overlays; --seed reaches training."""

from __future__ import annotations

import json

import yaml

from tseg.cli import main


def test_demo_runs_end_to_end_with_a_seed(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "--steps", "2", "--seed", "3", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val", "test", "wall_time_s"} <= set(metrics)
    assert metrics["val"]["pairs"] > 0 and 0 <= metrics["test"]["miou"] <= 1
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 3
    assert len(list((out / "overlays").glob("test_*.png"))) == 8
    assert "val  mIoU" in capsys.readouterr().out
