"""Training state for exact resumption: optimiser moments and random-number state as tensors.

Everything is stored with safetensors (tensors) and JSON (the rest) beside the model weights, so
resuming never unpickles anything.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor

OPT_PREFIX = "optimizer.state."


def training_state(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimiser state and torch's RNG state -> (tensors for safetensors, JSON-able metadata)."""
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
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"param_groups": sd["param_groups"], "optimizer_scalars": scalars}
    json.dumps(meta)  # fail here, not at load time, if something is not JSON
    return tensors, meta


def restore_training_state(
    opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of ``training_state``: load the optimiser and set torch's RNG state."""
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
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
