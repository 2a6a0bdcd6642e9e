"""Shared fixtures: a micro config so model tests take well under a second."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tseg.config import build_config

# The smallest model that still has every part (used with any dataset).
MICRO_MODEL = [
    "data.image_size=32",
    "model.image.embed_dim=32",
    "model.image.depth=1",
    "model.image.num_heads=2",
    "model.text.hidden_size=32",
    "model.text.num_layers=1",
    "model.text.num_heads=2",
    "model.text.intermediate_size=64",
    "model.embed_dim=32",
]

MICRO = [
    *MICRO_MODEL,
    "data.train_size=24",
    "data.val_size=6",
    "data.test_size=6",
    "train.batch_size=8",
    "train.steps=3",
    "train.log_every=1",
    "eval.batch_size=4",
    # A fixed team: the default (0) sizes it to the cores other processes leave idle
    # (tseg.threads), which can differ between two runs a test compares bit for bit.
    "train.threads=1",
]


def untrained_checkpoint(path: Path, overrides: tuple[str, ...] = ()) -> Path:
    """An untrained micro checkpoint at ``path`` (seed 0): its maps are arbitrary but
    deterministic."""
    from tseg.checkpoint import save_checkpoint
    from tseg.data import build_dataset
    from tseg.train import build_model

    cfg = build_config(None, [*MICRO, *overrides])
    torch.manual_seed(0)
    save_checkpoint(build_model(cfg, build_dataset(cfg.data, "train")), cfg, path, step=1)
    return path


@pytest.fixture
def micro_overrides(tmp_path):
    return [*MICRO, f"train.out_dir={tmp_path / 'run'}"]


@pytest.fixture
def micro_cfg(micro_overrides):
    return build_config(None, micro_overrides)


def torchrun_env(rank: int, world: int, port: int) -> None:
    """Set the environment torchrun gives rank ``rank`` of ``world`` (in a forked test process)."""
    os.environ.update(
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module: on busy cores torch's threads oversubscribe them and the
    CNN tests run several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
