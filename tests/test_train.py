"""The training loop's schedule: poly decay after a linear warm-up, applied every step."""

from __future__ import annotations

import json

import pytest

from tseg.config import build_config, to_dict
from tseg.train import poly_lr, train


def test_poly_schedule_with_linear_warm_up(micro_overrides):
    tc = build_config(
        None, [*micro_overrides, "train.lr=0.01", "train.warmup_steps=4", "train.steps=20"]
    ).train
    # Warm-up: lr (n + 1) / W for n < W, so the first step already moves.
    assert [poly_lr(n, tc) for n in range(4)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    # Then gamma0 (1 - n / N)^0.9 (section 4.2), from the step after the warm-up on.
    for n in (4, 10, 19):
        assert poly_lr(n, tc) == pytest.approx(0.01 * (1 - n / 20) ** 0.9)
    tc.warmup_steps = 0
    assert poly_lr(0, tc) == pytest.approx(0.01)


def test_each_step_runs_at_the_scheduled_rate(micro_overrides, tmp_path):
    over = ["train.lr=0.01", "train.warmup_steps=2", "train.steps=4", "train.log_every=1"]
    cfg = build_config(None, [*micro_overrides, *over, "train.text_lr_scale=0.5"])
    train(cfg, progress=False, evaluate_splits=())
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "lr" in r]
    assert [r["step"] for r in steps] == [0, 1, 2, 3]
    assert [r["lr"] for r in steps] == pytest.approx([poly_lr(n, cfg.train) for n in range(4)])


def test_choose_threshold_after_training_is_stored_with_the_checkpoint(micro_overrides):
    from tseg.eval.pairs import MASK_THRESHOLDS
    from tseg.inference import Segmenter

    cfg = build_config(None, [*micro_overrides, "eval.choose_threshold=true"])
    res = train(cfg, progress=False, evaluate_splits=("val",))
    chosen = res["threshold"]
    assert chosen["chosen_on"] == "val" and chosen["threshold"] in MASK_THRESHOLDS
    assert res["val"]["miou"] == pytest.approx(chosen["miou"], abs=1e-6)  # evaluated with it
    assert Segmenter.from_checkpoint(res["checkpoint"]).threshold == chosen["threshold"]


def test_train_leaves_the_callers_config_as_given(micro_overrides):
    cfg = build_config(None, [*micro_overrides, "eval.choose_threshold=true"])
    before = to_dict(cfg)
    train(cfg, progress=False, evaluate_splits=())
    assert to_dict(cfg) == before  # the chosen threshold went into the checkpoint, not here
