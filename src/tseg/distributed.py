"""Process-group helpers: one training code path for a single process and for torchrun's N.

``tseg train`` run directly is a single process and none of this does anything. Under
``torchrun`` (which sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT) ``init``
joins the process group: NCCL when training on GPUs, gloo on the CPU. Every helper below is a
no-op (or the identity) without a process group, so callers need no ``if distributed`` branches.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .sharding import ShardingError, env_world_size

# Rank 0 writes checkpoints alone while the others wait in their next collective, and an
# evaluation shard can be slow; NCCL's default 10-minute timeout is too tight for either.
TIMEOUT = timedelta(minutes=60)


def env_rank() -> int:
    """RANK as torchrun set it (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its node (LOCAL_RANK), which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """Rank 0 logs, shows progress and writes checkpoints."""
    return rank() == 0


def init(device: torch.device) -> bool:
    """Join the process group torchrun describes; True if this call created it.

    WORLD_SIZE is read (and checked) as sharded evaluation does (``tseg.sharding``); a bad
    launch environment raises its ShardingError, naming the variable.

    Nothing happens for a single process (WORLD_SIZE unset or 1) or when the caller already
    initialised a group (e.g. a test that spawns its own processes), which is then used as is.
    """
    if is_dist() or env_world_size() <= 1:
        return False
    if not dist.is_available():
        raise ShardingError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ShardingError(
            f"WORLD_SIZE={env_world_size()} but {', '.join(missing)} not set: "
            "launch with torchrun --nproc_per_node N tseg train ..."
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return True


def cleanup(created: bool) -> None:
    """Leave the process group if ``init`` created it."""
    if created and is_dist():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` for a single process."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """In-place sum / max / mean over ranks (returns ``t``)."""
    if not is_dist():
        return t
    if op == "mean":
        dist.all_reduce(t, dist.ReduceOp.SUM)
        return t.div_(world_size())
    dist.all_reduce(t, {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t


class _AllGather(torch.autograd.Function):
    """all_gather whose backward sends each rank the gradient of its own rows, summed over ranks.

    Every rank's loss depends on every rank's rows, so the gradient of rank r's rows is the sum
    of all ranks' gradients for them (torch.distributed.nn's version needs reduce_scatter or
    all_to_all, which gloo lacks; an all_reduce then a slice works on every backend).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)  # [W * n, ...]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, dist.ReduceOp.SUM)
        r, n = dist.get_rank(), ctx.rows
        return grad[r * n : (r + 1) * n]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """[n, ...] on each rank (same n) -> [W * n, ...] in rank order; gradients reach every rank."""
    if not is_dist():
        return x
    return _AllGather.apply(x)


def gather_rows(x: Tensor, width: int, index: Tensor) -> Tensor:
    """Pick rows of every rank's ``x`` with gradient: x [n_r, D] with n_r <= ``width`` may differ
    per rank; ``index`` [K] addresses row i of rank r as ``r * width + i`` -> [K, D].

    The rows travel in float32: gloo has no bfloat16, and they are few.
    """
    if not is_dist():
        return x[index]
    dtype = x.dtype
    padded = torch.zeros(width, *x.shape[1:], dtype=torch.float32, device=x.device)
    padded[: x.shape[0]] = x.float()
    return all_gather_with_grad(padded)[index.to(x.device)].to(dtype)  # [K, D]


def union_in_rank_order(local: list[str]) -> tuple[list[str], int, Tensor]:
    """Deduplicate every rank's strings: (union in first-seen rank order, width, index).

    ``width`` is the longest rank's list and ``index[k]`` is ``r * width + i`` for the first
    rank r (position i) holding string k, as ``gather_rows`` expects. The union equals what one
    process deduplicating the concatenation of all ranks' lists would get.
    """
    per_rank = all_gather_object(local)
    width = max(len(p) for p in per_rank)
    rows: dict[str, int] = {}
    for r, texts in enumerate(per_rank):
        for i, t in enumerate(texts):
            rows.setdefault(t, r * width + i)
    return list(rows), width, torch.tensor(list(rows.values()), dtype=torch.long)
