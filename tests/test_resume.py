"""Interrupted training resumes exactly; signals save a checkpoint; non-finite loss stops."""

import os
import signal
import threading

import pytest
import torch
from safetensors.torch import load_file

from tseg.checkpoint import CheckpointError, resolve
from tseg.config import build_config
from tseg.errors import TrainingError, TrainingInterrupted
from tseg.train import train


def _weights(run):
    return load_file(str(resolve(run) / "model.safetensors"))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(micro_overrides, tmp_path):
    # 24 images, batch 8: 3 batches per epoch, so step 4 stops mid-epoch. BERT dropout is on,
    # so the RNG state must be restored too.
    common = [*micro_overrides, "train.steps=7", "train.save_every=4", "train.log_every=100"]
    full = build_config(None, [*common, f"train.out_dir={tmp_path / 'a'}"])
    train(full, progress=False, evaluate_splits=())

    part = build_config(None, [*common, "train.steps=4", f"train.out_dir={tmp_path / 'b'}"])
    train(part, progress=False, evaluate_splits=())
    rest = build_config(None, [*common, f"train.out_dir={tmp_path / 'b'}"])
    train(rest, progress=False, evaluate_splits=(), resume=True)

    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_errors(micro_overrides, tmp_path):
    cfg = build_config(None, [*micro_overrides, f"train.out_dir={tmp_path / 'none'}"])
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(cfg, progress=False, evaluate_splits=(), resume=True)
    done = build_config(
        None, [*micro_overrides, "train.steps=2", f"train.out_dir={tmp_path / 'd'}"]
    )
    train(done, progress=False, evaluate_splits=())
    # At train.steps, --resume only finishes the run (test_bad_inputs_config_checkpoint);
    # beyond it, an error.
    fewer = build_config(
        None, [*micro_overrides, "train.steps=1", f"train.out_dir={tmp_path / 'd'}"]
    )
    with pytest.raises(TrainingError, match="already at step 2, beyond train.steps = 1"):
        train(fewer, progress=False, evaluate_splits=(), resume=True)


def test_sigterm_saves_a_checkpoint_then_stops(micro_overrides, tmp_path):
    cfg = build_config(None, [*micro_overrides, "train.steps=100000", f"train.out_dir={tmp_path}"])
    timer = threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(TrainingInterrupted, match="--resume"):
            train(cfg, progress=False, evaluate_splits=())
    finally:
        timer.cancel()
    ckpt = resolve(tmp_path)
    assert (ckpt / "train_state.safetensors").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_non_finite_loss_stops_and_keeps_last_checkpoint(micro_overrides, tmp_path, monkeypatch):
    cfg = build_config(
        None, [*micro_overrides, "train.steps=6", "train.save_every=2", f"train.out_dir={tmp_path}"]
    )
    from dataclasses import replace

    from tseg.train.objectives import OBJECTIVES

    real = OBJECTIVES["weak"].loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        if calls["n"] == 4:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setitem(OBJECTIVES, "weak", replace(OBJECTIVES["weak"], loss=poisoned))
    with pytest.raises(TrainingError, match="non-finite loss"):
        train(cfg, progress=False, evaluate_splits=())
    assert resolve(tmp_path).name == "ckpt-0000002"
