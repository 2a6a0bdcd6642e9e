"""The accuracy benchmark's planning: one training per distinct config, and its --shard flag."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import accuracy  # noqa: E402


def test_identical_rows_train_once(tmp_path):
    accuracy.BASE[:] = accuracy.PRESET_BASE["offline"]
    jobs = accuracy.plan(False, 3, "offline", tmp_path)
    keys = {accuracy.row_key(accuracy.to_dict(accuracy.job_config(j, 400))) for j in jobs}
    # 15 main rows + 17 ablation rows; the MPA seed-0 row is also the baseline of all 4 ablations.
    assert (len(jobs), len(keys)) == (32, 28)


@pytest.mark.parametrize("text", ["2/2", "x", "1", "-1/2"])
def test_bad_shard_is_named(text):
    with pytest.raises(SystemExit, match="--shard"):
        accuracy.shard_index(text)
