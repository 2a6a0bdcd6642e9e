"""benchmarks/shared_cpu.py's reading of a run's log and its report (the runs themselves are
whole trainings, timed only by the benchmark)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import shared_cpu as shared


def test_step_seconds_and_report(tmp_path):
    log = tmp_path / "log.jsonl"
    recs = [{"event": "start"}] + [
        {"step": i, "time_s": 0.5 * i + (0.1 if i == 1 else 0.0), "threads": 2 if i < 3 else 1}
        for i in range(6)
    ]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    deltas, threads = shared.step_seconds(log, skip=2)
    assert deltas == pytest.approx([0.5, 0.5, 0.5]) and sorted(set(threads)) == [1, 2]
    row = {
        "alone": {"seconds_per_step": 0.2, "finished": True, "threads_logged": [2]},
        "python": {"seconds_per_step": 0.3, "finished": True, "threads_logged": [1]},
        "slowdown": {"python": 1.5},
    }
    r = {
        "commit": "x",
        "command": "c",
        "machine": {"cpu": "cpu", "cores": 2, "load_average_before": [0, 0, 0]},
        "load_average_after": [0, 0, 0],
        "steps": 6,
        "skip": 2,
        "cap_s": 10,
        "competitors": ["python"],
        "policies": {"tseg default": row},
        "targets": {"python": {"value": 1.5, "goal": "<= 2.5", "met": True}},
    }
    md = shared.markdown(r)
    assert "| tseg default | 0.2 | 0.3 (1.50x) | [2] / [1] |" in md and "(met)" in md
