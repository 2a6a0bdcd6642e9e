"""train.text_lr_scale: the text encoder's backbone trains slower, or not at all."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from tseg.config import build_config
from tseg.data import build_dataset
from tseg.engine import build_model, build_optimizer, train


def test_param_groups_carry_the_text_scale(micro_overrides):
    cfg = build_config(None, [*micro_overrides, "train.text_lr_scale=0.25"])
    model = build_model(cfg, build_dataset(cfg.data, "train"))
    opt = build_optimizer(model, cfg.train)
    text_ids = {id(p) for p in model.text_encoder.parameters()}
    for g in opt.param_groups:
        in_text = {id(p) in text_ids for p in g["params"]}
        assert len(in_text) == 1, "a group mixes text-encoder and other parameters"
        assert g["lr_scale"] == (0.25 if in_text.pop() else 1.0)


def test_frozen_text_encoder_is_unchanged_by_training(micro_overrides):
    cfg = build_config(None, [*micro_overrides, "train.text_lr_scale=0", "train.steps=3"])
    torch.manual_seed(cfg.train.seed)
    before = build_model(cfg, build_dataset(cfg.data, "train")).state_dict()
    res = train(cfg, progress=False, evaluate_splits=())
    after = load_file(str(Path(res["checkpoint"]) / "model.safetensors"))
    text = [k for k in after if k.startswith("text_encoder.") and after[k].is_floating_point()]
    rest = [k for k in after if k.startswith("image_encoder.") and after[k].is_floating_point()]
    assert text and rest
    assert all(torch.equal(before[k], after[k]) for k in text)
    assert any(not torch.equal(before[k], after[k]) for k in rest)
