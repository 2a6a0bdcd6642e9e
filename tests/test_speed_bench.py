"""The speed benchmark's functions on micro models: the report's keys, the vision-once CLIPSeg
path against the documented one, and the training-step timers."""

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO, MICRO_MODEL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import speed

MICRO_CLIPSEG = speed.MICRO_CLIPSEG

MICRO_TRAIN = [*MICRO, "data.train_size=16", "model.image.patch_size=8"]


def micro_settings() -> "speed.Settings":
    return speed.Settings(
        threads=1,
        repeats=1,
        warmup=0,
        counts=(1, 3),
        clipseg_counts=(1, 3),
        image_hw=(40, 56),
        tseg_overrides=tuple(MICRO_MODEL),
        clipseg=MICRO_CLIPSEG,
        batch_images=2,
        batch_count=2,
        overhead_count=3,
        train={"micro": (tuple(MICRO_TRAIN), 4, 2, 1)},
        memory=False,
        matmul_n=64,
    )


def test_report_has_every_section_and_target(tmp_path):
    report = speed.run(micro_settings())
    for key in (
        "machine",
        "single_image",
        "batch",
        "overhead",
        "tseg_stages",
        "limit",
        "gflops",
        "training",
        "targets",
    ):
        assert key in report, key
    rows = report["single_image"]
    assert set(rows) == {"tseg", "tseg_warm_text", "clipseg_documented", "clipseg_vision_once"}
    for name, row in rows.items():
        assert set(row) == {"1", "3"}, name
        assert row["1"]["median_s"] > 0 and row["1"]["runs"] >= 1
    assert report["limit"]["tseg_image_encoder_gflops"] > 0
    assert report["limit"]["matmul_gflops_per_s"] > 0
    t = report["training"]["micro"]
    assert t["images_per_s"] > 0 and t["steps"] == 2
    # The step is split into parts that add up to it; the encoders' parts were measured.
    assert sum(t["share"].values()) == pytest.approx(1.0, abs=1e-6)
    assert t["share"]["encoders_forward"] > 0 and t["share"]["encoders_backward"] > 0
    assert 0 < t["share_outside_encoders"] < 1
    assert {"tseg_vs_documented_clipseg_L1", "train_micro_share_outside_encoders"} <= set(
        report["targets"]
    )
    md = speed.markdown(report)
    assert "| Target | value | goal | met |" in md and "CLIPSeg" in md


def test_vision_once_gives_the_documented_logits():
    spec = MICRO_CLIPSEG
    model = speed.build_clipseg(spec)
    texts = speed.phrases(3)
    proc = speed.clipseg_processor(speed.clip_tokenizer(speed.phrases(64)), spec["size"])
    image = speed.make_image((40, 56))
    inputs = proc(text=texts, images=[image] * 3, padding=True, return_tensors="pt")
    with torch.inference_mode():
        want = model(**inputs).logits
    once = speed.ClipsegVisionOnce(model, proc)
    got = once.logits(inputs["pixel_values"][:1], inputs["input_ids"], inputs["attention_mask"])
    assert got.shape == want.shape == (3, 64, 64)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    masks = once([image, image], texts)
    assert len(masks) == 2 and masks[0].shape == (3, 40, 56) and masks[0].dtype == bool
    assert np.array_equal(masks[0], speed.ClipsegDocumented(model, proc)([image], texts)[0])


def test_clip_tokenizer_gives_one_token_per_word():
    tok = speed.clip_tokenizer(speed.phrases(64))
    ids = tok(["the red car on the left"])["input_ids"][0]
    assert len(ids) == 6 + 2  # words plus start and end tokens, as CLIP's vocabulary gives
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id


def test_time_call_skips_warmup_for_calls_longer_than_half_the_budget():
    calls = []
    t = speed.time_call(lambda: calls.append(1), repeats=3, warmup=2, max_s=1.0, expected_s=0.9)
    assert t["warmup"] == 0 and len(calls) == t["runs"] == 3


def test_memory_probe_entry_point_reports_a_peak(capsys):
    # What memory_in_subprocess runs in a fresh interpreter, called here in-process: the settings
    # survive the trip through JSON and the probe prints one JSON line.
    s = micro_settings()
    arg = json.dumps({"settings": asdict(s), "kind": "clipseg_vision_once", "count": 3})
    assert speed.main(["--memory-probe", arg]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["peak_mb"] >= out["setup_mb"] >= out["imports_mb"] > 0
    assert speed.settings_from_dict(json.loads(json.dumps(asdict(s)))) == s


def test_paper_rows_are_from_scratch():
    # Timing needs random weights only: no row may name a hub file to load.
    from tseg.config import build_config

    settings = speed.Settings()
    for overrides in [settings.tseg_overrides, *(t[0] for t in settings.train.values())]:
        cfg = build_config(None, list(overrides))
        assert cfg.model.image.weights in ("", "none") and cfg.model.text.name == "bert"
