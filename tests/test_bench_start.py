"""benchmarks/start.py on a micro model: the rows it times, the report's keys and reusing --work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import MICRO_MODEL

pytest.importorskip("onnxruntime", reason="needs the [onnx] extra: pip install 'tseg[onnx]'")
pytest.importorskip("onnxscript", reason="needs the [onnx] extra: pip install 'tseg[onnx]'")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import start


def test_start_benchmark_on_a_micro_model(tmp_path: Path) -> None:
    s = start.Settings(
        runs=1,
        warmup=0,
        image_hw=(48, 64),
        models={"micro": (None, tuple(MICRO_MODEL))},
        check=False,
    )
    report = start.run(s, tmp_path, "test")
    rows = report["rows"]
    assert list(rows) == [
        "tseg --help",
        "micro onnx fp32",
        "micro onnx int8",
        "micro torch (checkpoint)",
    ]
    for k, r in rows.items():
        assert "error" not in r, (k, r)
        assert r["median_exit_s"] > 0 and len(r["exit_s"]) == 1
        if k != "tseg --help":  # the mask is written before the process exits
            assert 0 < r["median_first_mask_s"] <= r["median_exit_s"]
    assert set(report["meets_targets"]) == {"tseg --help", "micro onnx fp32", "micro onnx int8"}
    for key in ("commit", "machine", "load_average_before", "load_average_after", "settings"):
        assert key in report
    micro = report["models"]["micro"]
    assert set(micro["exports"]) == {"fp32", "int8"}
    assert (
        json.loads((Path(micro["exports"]["int8"]) / "tseg_onnx.json").read_text())["precision"]
        == "int8"
    )
    # A second run with the same --work folder reuses the checkpoint and exports.
    stamp = (tmp_path / "micro.json").stat().st_mtime_ns
    start.build_models(s, tmp_path)
    assert (tmp_path / "micro.json").stat().st_mtime_ns == stamp
    assert "| micro onnx int8 |" in start.table(report)
