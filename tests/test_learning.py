"""Weak training learns: after a short run, val mIoU is clearly above the same model untrained.

This is the slowest test (about two minutes on 2 CPU cores): the from-scratch tiny model needs
several hundred steps to leave the label prior (see the `tiny` preset's comment).
"""

import torch

from tseg.config import build_config
from tseg.data import build_dataset
from tseg.engine import build_model, evaluate, train

OVERRIDES = [
    "model.head=mpa",
    "train.steps=1500",
    "data.train_size=2000",
    "data.val_size=100",
    "train.log_every=500",
]


def test_weak_training_beats_untrained(tmp_path):
    cfg = build_config(None, [*OVERRIDES, f"train.out_dir={tmp_path}"])
    torch.manual_seed(cfg.train.seed)
    untrained = build_model(cfg, build_dataset(cfg.data, "train"))
    before = evaluate(untrained, build_dataset(cfg.data, "val"), torch.device("cpu"))["miou"]
    after = train(cfg, progress=False)["val"]["miou"]
    print(f"val mIoU untrained {before:.3f} -> trained {after:.3f}")
    assert after > before + 0.04 and after > 1.5 * before
