"""benchmarks/ort_threads.py on a micro model: every configuration timed, and its table."""

import pytest
from conftest import MICRO_MODEL

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from benchmarks import ort_threads  # noqa: E402


def test_every_configuration_is_timed_and_tabled():
    overrides = (*MICRO_MODEL, "model.text.name=bert", "model.image.weights=none")
    s = ort_threads.measure([1], 1, 2, overrides, (40, 56))
    names = [ort_threads.row_name(*c) for c in ort_threads.configurations([1])]
    assert list(s["rows"]) == names and len(names) == 4
    assert all(v["median_ms"] > 0 for v in s["rows"].values())
    r = {
        "commit": "x" * 40,
        "command": "c",
        "machine": {"cpu": "cpu", "cores": 2},
        "load_average_before": [0, 0, 0],
        "load_average_after": [0, 0, 0],
        "speed": s,
    }
    md = ort_threads.markdown(r)
    off = s["rows"][names[1]]["median_ms"]
    on = s["rows"][names[0]]["median_ms"]
    assert f"| {names[1]} | {off} ({on / off:.2f}x) |" in md
