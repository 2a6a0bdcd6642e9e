"""Run state for exact resumption: optimiser moments and random-number state as tensors,
saved with every checkpoint (``save``) and restored by ``--resume`` (``resume``).

Everything is stored with safetensors (tensors) and JSON (the rest) beside the model weights, so
resuming never unpickles anything. Under torchrun each process has its own random state (its
own dropout masks); all of them are saved, ``rng.<kind>`` for rank 0 and ``rng.<kind>.<r>`` for
rank r, and each rank restores its own.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from .. import distributed
from ..checkpoint import read_meta, resolve, save_checkpoint
from ..config import Config
from ..errors import CheckpointError
from ..models.tseg import TSEG

OPT_PREFIX = "optimizer.state."


def rng_state() -> dict[str, Tensor]:
    """This process's torch RNG state, and the current GPU's once CUDA is in use."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def training_state(
    opt: torch.optim.Optimizer,
    rng_states: list[dict[str, Tensor]] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimiser, RNG (one state per rank, default this process's) and fp16 loss-scaler state
    -> (tensors for safetensors, JSON-able metadata)."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            name = f"{OPT_PREFIX}{idx}.{key}"
            if isinstance(value, Tensor):
                tensors[name] = value.detach().clone()
            elif value is not None:
                scalars[name] = value
    for r, states in enumerate(rng_states or [rng_state()]):
        for kind, value in states.items():
            tensors[f"rng.{kind}" if r == 0 else f"rng.{kind}.{r}"] = value
    meta: dict[str, Any] = {"param_groups": sd["param_groups"], "optimizer_scalars": scalars}
    if scaler is not None and scaler.is_enabled():
        meta["grad_scaler"] = scaler.state_dict()
    json.dumps(meta)  # fail here, not at load time, if something is not JSON
    return tensors, meta


def restore_training_state(
    opt: torch.optim.Optimizer,
    tensors: dict[str, Tensor],
    meta: dict[str, Any],
    rank: int = 0,
    scaler: torch.amp.GradScaler | None = None,
) -> bool:
    """Inverse of ``training_state``: load the optimiser and set rank ``rank``'s RNG state.

    Returns False when the checkpoint holds no RNG state for ``rank`` (it was saved by fewer
    processes); the caller then seeds that rank itself.
    """
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(OPT_PREFIX):
            idx, key = name[len(OPT_PREFIX) :].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("optimizer_scalars", {}).items():
        idx, key = name[len(OPT_PREFIX) :].split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = meta["param_groups"]
    for g in groups:  # JSON turned tuples into lists; torch expects tuples for betas
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
    if scaler is not None and scaler.is_enabled() and "grad_scaler" in meta:
        scaler.load_state_dict(meta["grad_scaler"])
    suffix = "" if rank == 0 else f".{rank}"
    if f"rng.torch{suffix}" not in tensors:
        return False
    torch.set_rng_state(tensors[f"rng.torch{suffix}"])
    if f"rng.cuda{suffix}" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"])
    return True


def layout(cfg: Config) -> dict[str, int]:
    """What a checkpoint's data position means: optimiser steps of this many samples."""
    tc = cfg.train
    return {
        "world_size": distributed.world_size(),
        "batch_size": tc.batch_size,
        "accum_steps": tc.accum_steps,
    }


def save(
    model: TSEG,
    cfg: Config,
    run_dir: Path,
    step: int,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """Every process calls this (each one's RNG state is saved); rank 0 writes the checkpoint.

    ``data`` is this process's stream position (``Run.data_state``, with ``data.stream``):
    every rank's is saved, in rank order, as the training state's "stream" (JSON)."""
    states = distributed.all_gather_object(rng_state())
    positions = distributed.all_gather_object(data) if data is not None else None
    if not distributed.is_main():
        return run_dir / f"ckpt-{step:07d}"
    tensors, meta = training_state(opt, states, scaler)
    meta["layout"] = layout(cfg)
    if positions is not None:
        meta["stream"] = positions
    return save_checkpoint(model, cfg, run_dir, step, extra=tensors, meta={"train_state": meta})


def resume(
    run_dir: Path,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    cfg: Config | None = None,
) -> int:
    """Load optimiser, loss-scaler and this rank's RNG state from the run's latest checkpoint (the
    model already holds its weights, see ``init_model_from``); returns the checkpoint's step."""
    ckpt = resolve(run_dir)
    meta = read_meta(ckpt)
    state_file = ckpt / "train_state.safetensors"
    if "train_state" not in meta or not state_file.is_file():
        raise CheckpointError(f"checkpoint '{ckpt}' has no training state to resume from")
    train_state = meta["train_state"]
    try:
        tensors = load_file(str(state_file))
    except (SafetensorError, OSError) as e:  # truncated by a full disk, or corrupt
        raise CheckpointError(
            f"'{state_file}' is not a readable safetensors file ({e}); resume from an earlier "
            "checkpoint by naming it in 'latest', or start again"
        ) from None
    try:
        restore_training_state(opt, tensors, train_state, distributed.rank(), scaler)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(
            f"'{state_file}' does not match this run's optimiser ({type(e).__name__}: {e})"
        ) from None
    if cfg is not None and distributed.is_main():
        now = layout(cfg)
        saved = {"world_size": 1, "accum_steps": 1, "batch_size": cfg.train.batch_size}
        saved.update(train_state.get("layout", {}))
        if saved != now:
            warnings.warn(
                f"resuming '{ckpt}', saved with {saved}, as {now}: weights, optimiser and "
                "learning-rate schedule continue, but the data order and random state are not "
                "an exact continuation",
                stacklevel=3,
            )
    return int(meta["step"])


def stream_position(run_dir: Path) -> dict[str, Any] | None:
    """This process's stream position (``data.stream``) in the run's latest checkpoint, as
    ``save`` stored it; None (with a warning) when the checkpoint has none.

    Raises:
        CheckpointError: The checkpoint was saved by another number of processes: each one's
            position names shards of its own share, so it cannot be mapped onto another split.
    """
    ckpt = resolve(run_dir)
    positions = read_meta(ckpt).get("train_state", {}).get("stream")
    if positions is None:
        warnings.warn(
            f"'{ckpt}' holds no stream position (saved without data.stream): the stream starts "
            "at the beginning of epoch 0, not an exact continuation",
            stacklevel=3,
        )
        return None
    world = distributed.world_size()
    if len(positions) != world:
        raise CheckpointError(
            f"'{ckpt}' holds the stream positions of {len(positions)} process(es), but this run "
            f"has {world}: resume a streamed run (data.stream) with the same number of processes"
        )
    return positions[distributed.rank()]
