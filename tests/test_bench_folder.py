"""The folder benchmark on micro settings: a few tiny photos, a micro TSEG checkpoint through the
real `tseg segment`, micro CLIPSeg; checks the report's keys and that the rates are positive."""

from __future__ import annotations

import json

import pytest
from conftest import MICRO_MODEL

from benchmarks import folder_speed
from benchmarks.lib import provenance
from benchmarks.lib.clipseg import MICRO_CLIPSEG

pytest.importorskip("skimage.data", reason="scikit-image (dev extra) is not installed")


def micro_settings(**changes) -> folder_speed.Settings:
    base = {
        "images": 3,
        "threads": 1,
        "sizes": ((48, 36), (36, 48)),
        "rows": ("tseg-workers1", "clipseg"),
        "clipseg_batches": (2,),  # one batch size: no trial runs (see test_clipseg_batch_choice)
        "tseg_overrides": tuple(MICRO_MODEL),
        "clipseg": MICRO_CLIPSEG,
        "timeout_s": 120.0,
    }
    return folder_speed.Settings(**{**base, **changes})


def test_report_has_rows_and_positive_rates(tmp_path):
    report = folder_speed.run(micro_settings(), command="folder_speed.py --micro")
    for key in ("photos", "expressions", "rows", "best", "wall_time_s"):
        assert key in report, key
    assert provenance.check(report) == [] and report["command"] == "folder_speed.py --micro"
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert report["photos"]["count"] == 3 and report["photos"]["portrait"] >= 0
    assert len(report["expressions"]) == 16
    rows = report["rows"]
    assert set(rows) == {"tseg-workers1", "clipseg"}
    tseg = rows["tseg-workers1"]
    assert tseg["status"] == "ok", tseg
    assert (
        tseg["command"].startswith("tseg segment CKPT FOLDER ")
        or "tseg.cli segment" in tseg["command"]
    )
    assert tseg["command"].endswith("--out OUT --quiet --workers 1")
    assert tseg["written"] == tseg["images"] == 3 and tseg["workers"] == 1
    for row in (tseg, rows["clipseg"]):
        assert row["images_per_s"] > 0 and row["wall_s"] > 0
        assert row["images_per_s_excluding_startup"] > 0 and row["startup_s"] >= 0
    assert tseg["one_image_wall_s"] > 0
    clip = rows["clipseg"]
    assert clip["status"] == "ok" and clip["written"] == 3 and clip["workers"] == 1
    assert clip["batch_trials"] == {} and clip["batch"] == 2
    assert clip["images_note"] == "all 3 images"
    assert report["best"]["tseg_workers"] == 1 and report["best"]["clipseg_batch"] == clip["batch"]
    json.dumps(report)  # serialisable
    md = folder_speed.markdown(report)
    assert "`tseg-workers1`" in md and "`clipseg`" in md


def test_precision_choices_from_help():
    assert folder_speed.precision_choices("usage: tseg segment [--workers WORKERS]") is None
    got = folder_speed.precision_choices("  --precision {fp32,bf16,int8}\n   how to run")
    assert got == {"fp32", "bf16", "int8"}
    assert folder_speed.precision_choices("--precision PRECISION  fp32 | bf16") == {
        "fp32",
        "bf16",
        "int8",
    }


def test_photos_are_varied_jpegs(tmp_path):
    from PIL import Image

    info = folder_speed.make_photos(tmp_path, 6, ((64, 48), (48, 64)), seed=1)
    files = sorted(tmp_path.glob("*.jpg"))
    assert len(files) == 6 and info["count"] == 6 and len(info["sources"]) >= 8
    sizes = {Image.open(f).size for f in files}
    assert sizes <= {(64, 48), (48, 64)}
    assert len({f.name.split("_", 1)[1] for f in files}) == 6  # six different source photos


def test_rates_from_write_times():
    row = folder_speed.rates(5, 10.0, [4.0, 5.0, 6.0, 7.0, 8.0])
    assert row["images_per_s"] == 0.5 and row["images_per_s_excluding_startup"] == 1.0
    assert row["startup_s"] == 3.0 and row["after_last_result_s"] == 2.0
    # Batches of 4: the first group's four results are start-up plus one batch.
    row = folder_speed.rates(8, 5.0, [2.0, 2.1, 2.2, 2.3, 4.0, 4.1, 4.2, 4.3], batch=4)
    assert row["images_per_s_excluding_startup"] == 2.0 and row["startup_s"] == 0.3


def test_clipseg_batch_choice_and_subset(tmp_path, monkeypatch):
    """Batch sizes are tried on the first images; the fastest is timed on the folder, or, where
    the folder would take over the budget, the trial run on the first images is the row."""
    for i in range(10):
        (tmp_path / f"{i:04d}.jpg").write_bytes(b"")
    calls = []

    def fake(s, paths, exprs, out, batch, workers, tmp):
        calls.append((batch, len(paths)))
        steady = {1: 2.0, 4: 3.0, 8: 2.5}[batch]
        return {"status": "ok", "workers": workers, "batch": batch,
                **folder_speed.rates(len(paths), 1 + len(paths) / steady,
                                     [1 + k / steady for k in range(1, len(paths) + 1)])}  # fmt: skip

    monkeypatch.setattr(folder_speed, "clipseg_timed", fake)
    s = folder_speed.Settings(clipseg_batches=(1, 4, 8), clipseg_trial_images=4)
    row = folder_speed.clipseg_rows(s, tmp_path, ["a"], tmp_path, 2)
    assert calls == [(1, 4), (4, 4), (8, 4), (4, 10)]
    assert row["batch"] == 4 and row["images"] == 10 and row["images_note"] == "all 10 images"
    assert set(row["batch_trials"]) == {"1", "4", "8"} and "batch 4" in row["batch_choice"]
    calls.clear()
    row = folder_speed.clipseg_rows(
        folder_speed.Settings(clipseg_batches=(1, 4), clipseg_trial_images=4, clipseg_budget_s=2),
        tmp_path, ["a"], tmp_path, 2,
    )  # fmt: skip
    assert (
        calls == [(1, 4), (4, 4)] and row["images"] == 4 and "first 4 of 10" in row["images_note"]
    )
