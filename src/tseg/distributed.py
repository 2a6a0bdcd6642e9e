"""Beyond one process, in one module: torchrun's environment, the process group, rank -> device,
the shards of sharded evaluation, and the collectives training uses.

``tseg train | eval | segment`` run directly are a single process and nothing here does anything:
every helper is a no-op (or the identity) without a process group, so callers need no
``if distributed`` branches. Under ``torchrun`` (which sets WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT) ``join`` enters the process group the environment describes:
training with NCCL on GPUs and gloo on the CPU (``init``), evaluation and segmentation with gloo
(``shard_from_env``), since only small Python objects (per-image IoU counts, file names) cross
processes there. Each rank of an evaluation takes a disjoint ``Shard`` of the inputs and the
per-item results are exchanged (``Shard.gather``), so every rank ends with the results of a
single process, in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import ShardingError, TrainingError

T = TypeVar("T")

# Rank 0 writes checkpoints alone while the others wait in their next collective, and an
# evaluation shard can be slow; NCCL's default 10-minute timeout is too tight for either.
TIMEOUT = timedelta(minutes=60)

# Variables torchrun (and torch.distributed's env:// rendezvous) sets for every process.
_ENV = ("RANK", "MASTER_ADDR", "MASTER_PORT")


# --- the launch environment and this process's device ------------------------------------------


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        n = int(raw)
    except ValueError:
        raise ShardingError(f"environment variable WORLD_SIZE={raw!r} is not an integer") from None
    if n < 1:
        raise ShardingError(f"environment variable WORLD_SIZE={n} must be at least 1")
    return n


def env_rank() -> int:
    """RANK as torchrun set it (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its node (LOCAL_RANK), which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(name: str, local: int | None = None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda``; a GPU is ``cuda:<local>``, by default ``LOCAL_RANK``, so
    each torchrun process on a machine gets its own."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("config key 'train.device' = 'cuda' but no CUDA device is available")
    if name == "cuda":
        index = local_rank() if local is None else local
        return torch.device("cuda", index % torch.cuda.device_count())
    return torch.device(name)


# --- the process group -------------------------------------------------------------------------


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """Rank 0 logs, shows progress and writes checkpoints."""
    return rank() == 0


def join(backend: str) -> bool:
    """Join the process group torchrun describes; True if this call created it.

    Nothing happens for a single process (WORLD_SIZE unset or 1) or when the caller already
    initialised a group (e.g. a test that spawns its own processes), which is then used as is.
    A bad launch environment raises a ShardingError naming the variable.
    """
    if is_dist() or env_world_size() <= 1:
        return False
    if not dist.is_available():
        raise ShardingError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise ShardingError(
            f"WORLD_SIZE={env_world_size()} but {', '.join(missing)} not set: "
            "launch with torchrun --nproc_per_node N tseg ..."
        )
    dist.init_process_group(backend, timeout=TIMEOUT)
    return True


def init(device: torch.device) -> bool:
    """Join for training: NCCL when each process trains on its GPU, gloo on the CPU."""
    if device.type == "cuda":
        if is_dist() or env_world_size() <= 1:
            return False
        torch.cuda.set_device(device)
        return join("nccl")
    return join("gloo")


def cleanup(created: bool) -> None:
    """Leave the process group if ``init`` or ``join`` created it."""
    if created and is_dist():
        dist.destroy_process_group()


# --- shards of sharded evaluation and segmentation ---------------------------------------------


@dataclass(frozen=True)
class Shard:
    """This process's part of the work: items ``rank``, ``rank + world_size``, ...

    Round-robin (rather than contiguous blocks) keeps the shards within one item of each other
    in size and spreads slow (large) images that sit next to each other in a folder.
    """

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ShardingError(f"rank {self.rank} is not in a world of size {self.world_size}")

    @property
    def is_main(self) -> bool:
        """Rank 0 prints summaries and writes shared files."""
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's items, in their original order."""
        return list(items[self.rank :: self.world_size])

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), indexed by rank; the same list on every rank."""
        return all_gather_object(obj) if self.world_size > 1 else [obj]

    def gather_keyed(self, items: list[tuple[int, T]]) -> list[T]:
        """Gather ``(index, value)`` pairs from every rank -> values sorted by index.

        Sorting by the item's index restores one process's order exactly, so sums and means
        over the gathered values are computed in the same order as without sharding.
        """
        merged = [kv for part in self.gather(items) for kv in part]
        return [v for _, v in sorted(merged, key=lambda kv: kv[0])]


def current_shard() -> Shard:
    """The shard of an already-initialised process group, else the single shard."""
    return Shard(rank(), world_size())


@contextmanager
def shard_from_env() -> Iterator[Shard]:
    """This process's shard; joins (gloo) the process group torchrun describes if not joined
    yet. A group created here is destroyed on exit; one that already existed (a training
    script's) is left alone. Gloo works whether the model runs on the CPU or a GPU."""
    created = join("gloo")
    try:
        yield current_shard()
    finally:
        cleanup(created)


# --- collectives -------------------------------------------------------------------------------


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
