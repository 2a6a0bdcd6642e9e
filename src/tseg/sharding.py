"""Sharded evaluation and segmentation across processes started by ``torchrun`` (issue #8).

``torchrun --nproc_per_node N tseg eval RUN`` (or ``tseg segment ...``) starts N copies of the
command with ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment.
Each copy joins one process group, takes a disjoint shard of the inputs (``Shard.take``) and
the per-item results are exchanged with ``all_gather_object`` (``Shard.gather``), so every rank
ends with the results of a single process, in the same order.

Without ``WORLD_SIZE`` > 1 everything here is a no-op: one shard holding all items.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import ShardingError

T = TypeVar("T")

# Variables torchrun (and torch.distributed's env:// rendezvous) sets for every process.
_ENV = ("RANK", "MASTER_ADDR", "MASTER_PORT")


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
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_keyed(self, items: list[tuple[int, T]]) -> list[T]:
        """Gather ``(index, value)`` pairs from every rank -> values sorted by index.

        Sorting by the item's index restores one process's order exactly, so sums and means
        over the gathered values are computed in the same order as without sharding.
        """
        merged = [kv for part in self.gather(items) for kv in part]
        return [v for _, v in sorted(merged, key=lambda kv: kv[0])]


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


def current_shard() -> Shard:
    """The shard of an already-initialised process group, else the single shard."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


@contextmanager
def shard_from_env(backend: str = "gloo") -> Iterator[Shard]:
    """This process's shard; joins the process group torchrun describes if not joined yet.

    Gloo is the default backend because only small Python objects (per-image IoU counts, file
    names) cross processes; it works whether the model runs on the CPU or a GPU. A group created
    here is destroyed on exit; one that already existed (a training script's) is left alone.
    """
    if (dist.is_available() and dist.is_initialized()) or env_world_size() == 1:
        yield current_shard()
        return
    if not dist.is_available():
        raise ShardingError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise ShardingError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: "
            "launch with torchrun --nproc_per_node N tseg ..."
        )
    dist.init_process_group(backend=backend, init_method="env://")
    try:
        yield current_shard()
    finally:
        dist.destroy_process_group()


def shard_device(device: torch.device, shard: Shard) -> torch.device:
    """With several ranks on one machine, rank k takes GPU ``LOCAL_RANK`` rather than GPU 0."""
    if device.type != "cuda" or shard.world_size == 1 or device.index is not None:
        return device
    local = int(os.environ.get("LOCAL_RANK", shard.rank))
    return torch.device("cuda", local % max(1, torch.cuda.device_count()))
