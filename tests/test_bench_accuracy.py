"""The accuracy benchmark's planning: one training per distinct config, and its --shard flag."""

from __future__ import annotations

import pytest

from benchmarks import accuracy


def test_identical_rows_train_once(tmp_path):
    accuracy.BASE[:] = accuracy.PRESET_BASE["offline"]
    jobs = accuracy.plan(False, 3, "offline", tmp_path)
    keys = {accuracy.row_key(accuracy.to_dict(accuracy.job_config(j, 400))) for j in jobs}
    # 15 main rows, 6 disjoint rows (GAP, SPA) and 11 ablation rows; the MPA seed-0 row is also
    # the baseline of all 4 ablations.
    assert (len(jobs), len(keys)) == (32, 28)
    assert sum(j.no_target for j in jobs) == 15 and sum(j.table == "disjoint" for j in jobs) == 6


@pytest.mark.parametrize("text", ["2/2", "x", "1", "-1/2"])
def test_bad_shard_is_named(text):
    with pytest.raises(SystemExit, match="--shard"):
        accuracy.shard_index(text)


def test_rows_and_report_on_a_micro_model(tmp_path, monkeypatch):
    """One main row (with unseen and no-target evaluation) and one disjoint row of a micro
    model, then the report: the oracle row, the GRES table and the disjoint table."""
    from conftest import MICRO

    monkeypatch.setattr(accuracy, "DONE", {})
    monkeypatch.setattr(accuracy, "STATE", [])
    accuracy.BASE[:] = [o for o in MICRO if not o.startswith("train.steps")]
    main = accuracy.run_one(["model.head=mpa"], 0, tmp_path / "m", 2, unseen=True, no_target=True)
    nt = main["no_target"]
    assert nt["no_target_pairs"] > 0 and nt["target_pairs"] > 0
    assert 0 <= nt["giou"] <= 1 and 0 <= nt["giou_gated"] <= 1 and nt["presence_threshold"] >= 0
    assert main["test"]["pointm"] is None or 0 <= main["test"]["pointm"] <= 1
    disjoint = accuracy.run_one(
        accuracy.DISJOINT_ROWS["SPA (weak, disjoint)"], 0, tmp_path / "d", 2, unseen=False
    )
    assert "no_target" not in disjoint and "unseen" not in disjoint
    report = {
        "mode": "quick",
        "preset": "offline",
        "seeds": 1,
        "budget": "micro",
        "commit": "0" * 40,
        "machine": {"cpu": "test"},
        "wall_time_s": 1.0,
        "main": {"MPA / TSEG (weak)": {"runs": [main]}},
        "disjoint": {"SPA (weak, disjoint)": {"runs": [disjoint]}},
        "oracle": accuracy.oracle(2),
    }
    for table in ("main", "disjoint"):
        for row in report[table].values():
            row["summary"] = accuracy.summarise(row["runs"])
    assert report["oracle"]["grid"] == "4x4" and 0 < report["oracle"]["miou"] <= 1
    md = accuracy.markdown(report)
    assert "oracle: ground truth through the patch grid (4x4 at 32 px" in md
    assert "| MPA / TSEG (weak) |" in md and "N-acc" in md and "SPA (weak, disjoint)" in md
