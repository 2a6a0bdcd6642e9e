"""train.text_lr_scale: the text encoder's backbone trains slower, or not at all."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from tseg.config import build_config
from tseg.data import build_dataset
from tseg.train import build_model, build_optimizer, train


def test_param_groups_carry_the_text_scale(micro_overrides):
    cfg = build_config(None, [*micro_overrides, "train.text_lr_scale=0.25"])
    model = build_model(cfg, build_dataset(cfg.data, "train"))
    opt = build_optimizer(model, cfg.train)
    text = [id(p) for p in model.text_encoder.parameters() if p.requires_grad]
    text_ids = set(text)
    scaled = [id(p) for g in opt.param_groups if g["lr_scale"] == 0.25 for p in g["params"]]
    # Exactly the text encoder's trainable parameters carry the scale, each once: the test fails
    # if any of them is missing from the optimiser or sits in a group without the scale.
    assert text and len(scaled) == len(text) and set(scaled) == text_ids
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


def test_frozen_text_features_are_cached_exactly_and_dropout_is_off(micro_overrides):
    cfg = build_config(None, [*micro_overrides, "train.text_lr_scale=0"])
    torch.manual_seed(0)
    model = build_model(cfg, build_dataset(cfg.data, "train"))
    texts = ["red circle", "blue shapes", "the star left of the red circle"]
    model.eval()
    with torch.no_grad():
        reference = model.encode_text(texts)
    build_optimizer(model, cfg.train)  # text_lr_scale = 0 freezes the text backbone
    model.train()
    assert not model.text_encoder.training  # frozen: no dropout noise on its features
    calls = []
    model.text_encoder.register_forward_hook(lambda m, i, o: calls.append(len(o)))
    first = model.encode_text(texts)
    again = model.encode_text(texts[::-1] + ["green ring"])
    assert calls == [3, 1]  # only the new expression went through the backbone
    assert torch.allclose(first, reference, atol=1e-6)
    assert torch.allclose(again[:3], reference.flip(0), atol=1e-6)
    first.sum().backward()  # the projection still learns
    assert model.text_proj.weight.grad is not None
    assert all(p.grad is None for p in model.text_encoder.parameters())


def test_param_groups_carry_the_backbone_scale(micro_overrides):
    """train.backbone_lr_scale: the pretrained image backbone (here the micro ViT) gets the scale;
    projections, temperature and the text encoder keep theirs."""
    cfg = build_config(None, [*micro_overrides, "train.backbone_lr_scale=0.3"])
    model = build_model(cfg, build_dataset(cfg.data, "train"))
    opt = build_optimizer(model, cfg.train)
    backbone = {id(p) for p in model.image_encoder.vit.parameters()}
    for g in opt.param_groups:
        kinds = {id(p) in backbone for p in g["params"]}
        assert len(kinds) == 1, "a group mixes backbone and other parameters"
        assert g["lr_scale"] == (0.3 if kinds.pop() else 1.0)
    assert sum(len(g["params"]) for g in opt.param_groups if g["lr_scale"] == 0.3) == len(backbone)


def test_backbone_scale_zero_freezes_the_backbone(micro_overrides):
    """train.backbone_lr_scale=0: the backbone is out of the optimiser and gets no gradient,
    while the projections still learn."""
    cfg = build_config(None, [*micro_overrides, "train.backbone_lr_scale=0"])
    model = build_model(cfg, build_dataset(cfg.data, "train"))
    opt = build_optimizer(model, cfg.train)
    backbone = list(model.image_encoder.vit.parameters())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(p.requires_grad for p in backbone)
    assert not any(id(p) in in_opt for p in backbone)
    assert id(model.image_proj.weight) in in_opt
