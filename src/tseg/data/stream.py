"""Streaming shards into training batches, split across processes and workers, resumable.

``ShardStream`` is a torch ``IterableDataset`` that reads the shards of a ``ShardSource``, decodes
each sample, augments it as the map-style path does (``tseg.data.pipeline.weak_item``) and yields
collated batches. ``StreamLoader`` runs it in a ``DataLoader`` and keeps the ``StreamPosition``;
``StreamBatches`` runs it on from epoch to epoch for ``tseg train`` (``data.stream=true``,
``tseg.train.build.make_stream``). Two sources: ``ShardTexts``, WebDataset tar shards read
through the ``webdataset`` library (``tseg.data.own.shards.decode_sample``), and
``tseg.data.own.hf_stream.HfShards``, the shards of a Hugging Face dataset read through the
``datasets`` library; each also gives its text for the vocabulary. ``stream_source`` picks one
from the config. The definitions (docs/own_data.md):

Who reads what. In epoch ``e`` the shard list is permuted by ``(seed, e)`` (identity with
``shuffle=False``); process ``rank`` of ``world_size`` takes every ``world_size``-th shard of that
order from position ``rank``, and worker slot ``s`` of its ``slots`` (= DataLoader workers, 1
without workers) takes every ``slots``-th of those from ``s`` (``webdataset``'s split_by_node then
split_by_worker, on a known order). Each shard is read by exactly one slot of one process, so
every sample is seen exactly once per epoch. A slot reads its shards in order and the samples of
a shard in tar order, and batches them (``batch_size`` samples; a slot's last batch may be
smaller). The randomness of a sample's augmentation comes from ``(seed, epoch, shard index, index
in shard)``, so it does not depend on the split.

Order of batches. The DataLoader hands out the workers' batches round-robin over the workers
still running (torch's documented in-order behaviour), so a process's batch sequence is fixed
by the above; every slot ends with a report item (consumed by ``StreamLoader``, never yielded).

Exact resume. A process's position is ``StreamPosition``: the epoch, and per slot how far it has
been consumed (shard ordinal within the slot, samples into that shard), whether its report has
arrived, and which slot came last; plus the epoch's counts of good and skipped samples. It is
updated as each batch is handed to the caller, so a checkpoint saved after a training step holds
exactly the data consumed so far. Resuming from it, each slot re-opens its current shard, skips
the samples already consumed (read, not decoded), and the slots are given to the DataLoader's
workers in the round-robin order that continues where it stopped; the resumed run then sees
exactly the batches the uninterrupted run would have seen (tested). The number of slots must be
the same (``StreamPosition.slots``), and so must the shards, seed, batch size and world size.

Bad samples. A sample without an image or text, with an unreadable image, malformed JSON, an
empty expression list or a non-string expression is skipped and counted, and so is a shard that
cannot be opened or read to its end (the samples read before the damage are kept). At the end of
every epoch, skipped samples give one warning with their count and the first few reasons; an
epoch in which a process got no good sample at all raises a ``DatasetError`` naming the shards.

Longer than 400 lines because the position, the stream, the loader and the epoch runner are one
exact-resume protocol: each reads and updates the others' state (``StreamPosition``), and the
rules above are checked against all four at once; the sources' formats are in ``tseg.data.own``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tseg.data.base import DatasetError
from tseg.data.own.shards import decode_sample, expand_shards, read_shard, sample_text
from tseg.data.own.weak import FirstTexts, RecordError

__all__ = [
    "FirstTexts",
    "ShardSource",
    "ShardStream",
    "ShardTexts",
    "StreamBatches",
    "StreamLoader",
    "StreamPosition",
    "WeakTransform",
    "shard_order",
    "stream_source",
]

_MAX_REASONS = 5


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The shard indices of epoch ``epoch``: a permutation drawn from ``(seed, epoch)``."""
    if not shuffle:
        return list(range(num_shards))
    return np.random.default_rng([seed, 104729, epoch]).permutation(num_shards).tolist()


@dataclass
class StreamPosition:
    """How far one process has consumed its stream in the current epoch (see the module doc).

    Attributes:
        epoch: The epoch being read.
        slots: Worker slots of the process (DataLoader workers, or 1 without workers).
        shard: Per slot, the ordinal (within the slot's shards) of the shard being read.
        offset: Per slot, the samples of that shard consumed (good and skipped).
        done: Per slot, whether its end-of-slot report has arrived.
        last_slot: The slot of the last item consumed (-1: none yet this epoch).
        good: Samples handed to the caller this epoch.
        bad: Samples (or damaged shards) skipped this epoch.
        reasons: The first few reasons for skipping.
    """

    epoch: int = 0
    slots: int = 1
    shard: list[int] = field(default_factory=list)
    offset: list[int] = field(default_factory=list)
    done: list[bool] = field(default_factory=list)
    last_slot: int = -1
    good: int = 0
    bad: int = 0
    reasons: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"a stream has at least one slot, got {self.slots}")
        for name, fill in (("shard", 0), ("offset", 0), ("done", False)):
            if not getattr(self, name):
                setattr(self, name, [fill] * self.slots)
            if len(getattr(self, name)) != self.slots:
                raise ValueError(f"StreamPosition.{name} must have one entry per slot")

    def worker_slots(self) -> list[int]:
        """Slot played by each DataLoader worker: the round-robin continues after ``last_slot``,
        and finished slots (which yield nothing) come last so they do not disturb it."""
        cycle = [(self.last_slot + 1 + i) % self.slots for i in range(self.slots)]
        return [s for s in cycle if not self.done[s]] + [s for s in cycle if self.done[s]]

    def advance(self, meta: dict[str, Any]) -> None:
        """Account for one item (a batch or a slot's report) handed out by the stream."""
        s = meta["slot"]
        self.shard[s], self.offset[s] = meta["shard"], meta["offset"]
        self.bad += meta["bad"]
        self.good += len(meta.get("keys", ()))
        room = _MAX_REASONS - len(self.reasons)
        self.reasons.extend(meta.get("reasons", [])[: max(0, room)])
        if meta.get("report"):
            self.done[s] = True
        self.last_slot = s

    @property
    def finished(self) -> bool:
        """Every slot has reported: the epoch is over."""
        return all(self.done)

    def next_epoch(self) -> StreamPosition:
        """The position at the start of the following epoch."""
        return StreamPosition(epoch=self.epoch + 1, slots=self.slots)

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (for a checkpoint's metadata)."""
        return {
            "epoch": self.epoch,
            "slots": self.slots,
            "shard": list(self.shard),
            "offset": list(self.offset),
            "done": list(self.done),
            "last_slot": self.last_slot,
            "good": self.good,
            "bad": self.bad,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> StreamPosition:
        """Rebuild a position saved with ``state_dict``."""
        return cls(**state)


class ShardSource(Protocol):
    """Shards a ``ShardStream`` reads: named, each a sequence of samples read in a fixed order.

    ``read`` does not raise for a damaged shard: it appends the reason to ``errors`` and stops
    (the samples before the damage are kept); ``decode`` raises ``RecordError`` for a bad
    sample. ``too_few`` says how to make more shards (in the error for fewer than processes).
    """

    urls: list[str]
    too_few: str

    def read(self, index: int, start: int, errors: list[str]) -> Iterator[tuple[str, Any]]:
        """(key, sample) of shard ``index`` from its ``start``-th sample on."""
        ...

    def decode(self, sample: Any, where: str) -> tuple[np.ndarray, list[str]]:
        """A sample -> (RGB image uint8 [H, W, 3], expressions)."""
        ...


def stream_source(cfg: Any, split: str = "train") -> Any:
    """The ``ShardSource`` (with its texts) that ``data.stream`` reads: ``data.shards`` for
    webdataset, ``data.root``'s split for hf."""
    if cfg.dataset == "hf":
        from tseg.data.own.hf_stream import HfShards

        return HfShards(cfg.root, {"train": cfg.train_split}.get(split, split), cfg.text_column)
    return ShardTexts(expand_shards(cfg.shards))


class WeakTransform:
    """image, expressions, rng -> a weak training item (``tseg.data.pipeline.weak_item``)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def __call__(self, image: np.ndarray, exprs: list[str], rng: np.random.Generator) -> dict:
        from tseg.data.pipeline import weak_item

        return weak_item(image, exprs, self.cfg, rng)[0]


class ShardStream(IterableDataset):
    """One process's share of WebDataset shards as a stream of collated batches.

    Each yielded item is the collated batch (``collate(list of items)``) with a key "stream"
    holding where it came from (slot, position after it, sample keys, skipped samples), or a
    slot's final report (``"stream": {"report": True, ...}``). ``StreamLoader`` consumes these.

    Args:
        shards: ``data.shards`` (a pattern, see ``tseg.data.own.shards.expand_shards``), a list of
            tar shards, or a ``ShardSource``.
        transform: ``(image, expressions, rng) -> item`` (e.g. ``WeakTransform(cfg.data)``).
        collate: ``list of items -> batch`` (e.g. ``WeakCollate()``).
        batch_size: Samples per batch (of this process).
        seed: Seeds the shard order of each epoch and each sample's augmentation.
        rank, world_size: This process among the training processes.
        slots: Worker slots: the DataLoader's ``num_workers``, or 1 without workers.
        shuffle: Permute the shards every epoch (False: the listed order in every epoch).

    Raises:
        DatasetError: No shard matches, or fewer shards than processes.
    """

    def __init__(
        self,
        shards: str | Sequence[str] | ShardSource,
        transform: Callable[[np.ndarray, list[str], np.random.Generator], dict],
        collate: Callable[[list[dict]], dict],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        slots: int = 1,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(shards, str):
            shards = expand_shards(shards)
        self.source = shards if hasattr(shards, "read") else ShardTexts(list(shards))
        self.urls = list(self.source.urls)
        if not self.urls:
            raise DatasetError("the shard list is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if len(self.urls) < world_size:
            raise DatasetError(
                f"{len(self.urls)} shard(s) for {world_size} processes: a process would read "
                f"nothing; {self.source.too_few}"
            )
        if len(self.urls) < world_size * slots:
            warnings.warn(
                f"{len(self.urls)} shards for {world_size} processes x {slots} workers: some "
                "workers read nothing",
                stacklevel=2,
            )
        self.transform, self.collate = transform, collate
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size, self.slots = rank, world_size, slots
        self.shuffle = shuffle
        self.position = StreamPosition(slots=slots)

    def set_position(self, position: StreamPosition) -> None:
        """Read from ``position`` on (its epoch, its slots' offsets)."""
        if position.slots != self.slots:
            raise DatasetError(
                f"the stream position has {position.slots} worker slots but the stream has "
                f"{self.slots}: resume with the same data.num_workers"
            )
        self.position = position

    def slot_shards(self, epoch: int, slot: int) -> list[int]:
        """Indices (into ``urls``) of the shards slot ``slot`` of this process reads in ``epoch``."""
        order = shard_order(len(self.urls), self.seed, epoch, self.shuffle)
        return order[self.rank :: self.world_size][slot :: self.slots]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.slots:
            raise DatasetError(
                f"the stream was built for {self.slots} worker slot(s) but runs in {workers} "
                "DataLoader worker(s)"
            )
        slot = self.position.worker_slots()[worker]
        if self.position.done[slot]:
            return
        yield from self._read_slot(slot)

    def _read_slot(self, slot: int) -> Iterator[dict[str, Any]]:
        pos, epoch = self.position, self.position.epoch
        shards = self.slot_shards(epoch, slot)
        batch: list[dict] = []
        keys: list[str] = []
        reasons: list[str] = []
        bad = 0
        ordinal, offset = pos.shard[slot], pos.offset[slot]

        def meta(report: bool = False) -> dict[str, Any]:
            return {
                "slot": slot,
                "shard": ordinal,
                "offset": offset,
                "keys": list(keys),
                "bad": bad,
                "reasons": list(reasons),
                "report": report,
            }

        while ordinal < len(shards):
            index = shards[ordinal]
            url = self.urls[index]
            errors: list[str] = []
            # from the first sample not consumed before a resume (earlier ones are not decoded)
            for k, (key, sample) in enumerate(self.source.read(index, offset, errors), offset):
                offset = k + 1
                where = f"{url}: {key}"
                try:
                    image, exprs = self.source.decode(sample, where)
                except RecordError as e:
                    bad += 1
                    reasons.append(str(e))
                    continue
                rng = np.random.default_rng([self.seed, epoch, index, k])
                batch.append(self.transform(image, exprs, rng))
                keys.append(where)
                if len(batch) == self.batch_size:
                    yield {**self.collate(batch), "stream": meta()}
                    batch, keys, reasons, bad = [], [], [], 0
            if errors:  # a damaged shard counts once (a resumed run had not counted it yet)
                bad += 1
                reasons.extend(errors[:1])
            ordinal, offset = ordinal + 1, 0
        if batch:
            yield {**self.collate(batch), "stream": meta()}
            batch, keys, reasons, bad = [], [], [], 0
        yield {"stream": meta(report=True)}


class StreamLoader:
    """Runs a ``ShardStream`` in a DataLoader, one epoch at a time, keeping its position.

    Args:
        stream: The stream (its ``slots`` must equal ``num_workers``, or 1 with 0 workers).
        num_workers: DataLoader worker processes (0: read in this process).
        position: Where to start (default: the start of epoch 0).
    """

    def __init__(
        self, stream: ShardStream, num_workers: int = 0, position: StreamPosition | None = None
    ) -> None:
        if max(1, num_workers) != stream.slots:
            raise DatasetError(
                f"the stream has {stream.slots} worker slot(s), the loader {num_workers} workers"
            )
        self.stream = stream
        self.num_workers = num_workers
        self.position = position or StreamPosition(slots=stream.slots)
        stream.set_position(self.position)

    def epoch(self) -> Iterator[dict[str, Any]]:
        """The rest of the current epoch's batches, each with "keys" (``shard: key`` of its
        samples); then the position moves to the next epoch.

        Raises:
            DatasetError: The epoch gave this process no good sample.
        """
        self.stream.set_position(self.position)
        # Its own generator: otherwise starting an epoch would draw the workers' base seed from
        # torch's global RNG, and a run resumed mid-epoch (which starts its DataLoader at another
        # moment) would see other dropout masks than one never stopped. The samples' own
        # randomness does not come from torch (see ShardStream).
        loader = DataLoader(
            self.stream,
            batch_size=None,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.stream.seed),
        )
        for item in loader:
            meta = item.pop("stream")
            self.position.advance(meta)
            if not meta["report"]:
                yield {**item, "keys": meta["keys"]}
        pos = self.position
        if not pos.finished:  # pragma: no cover - a worker stopped without its report
            raise DatasetError(f"epoch {pos.epoch}: a DataLoader worker ended early")
        if pos.good == 0:
            shown = ", ".join(self.stream.urls[:3]) + (" ..." if len(self.stream.urls) > 3 else "")
            why = f"; skipped {pos.bad}, e.g. {pos.reasons[0]}" if pos.reasons else ""
            raise DatasetError(
                f"epoch {pos.epoch}: process {self.stream.rank} read no good sample from its "
                f"shards of {shown}{why}"
            )
        if pos.bad:
            warnings.warn(
                f"epoch {pos.epoch}: skipped {pos.bad} bad sample(s) of {pos.good + pos.bad} "
                f"(process {self.stream.rank}); first: {'; '.join(pos.reasons)}",
                stacklevel=2,
            )
        self.position = pos.next_epoch()
        self.stream.set_position(self.position)


class StreamBatches:
    """Endless ``(epoch, batch)`` over a ``StreamLoader``'s epochs: the streamed counterpart of
    ``tseg.train.build.batches``, what ``tseg train`` reads with ``data.stream=true``.

    A batch is exactly what the stream's collate made (for weak training ``WeakCollate``'s
    dict); the ``shard: key`` names of its samples are kept aside in ``keys``. ``state_dict``
    is the loader's position after the last batch handed out, so a checkpoint written after a
    training step resumes exactly after it.
    """

    def __init__(self, loader: StreamLoader) -> None:
        self.loader = loader
        self.keys: list[str] = []  # the samples of the last batch
        self._epoch: Iterator[dict[str, Any]] | None = None
        self._number = loader.position.epoch

    def __iter__(self) -> StreamBatches:
        return self

    def __next__(self) -> tuple[int, dict[str, Any]]:
        while True:
            if self._epoch is None:
                self._number = self.loader.position.epoch
                self._epoch = self.loader.epoch()
            try:
                batch = next(self._epoch)
            except StopIteration:  # the position has moved to the next epoch
                self._epoch = None
                continue
            self.keys = batch.pop("keys")
            return self._number, batch

    @property
    def position(self) -> StreamPosition:
        return self.loader.position

    def state_dict(self) -> dict[str, Any]:
        """The loader's position (plain JSON), see ``StreamPosition.state_dict``."""
        return self.loader.position.state_dict()


class ShardTexts(FirstTexts):
    """WebDataset tar shards as a ``ShardSource``, with their first texts (``FirstTexts``)."""

    too_few = "write more, smaller shards (tseg data convert --shard-size)"

    def __init__(self, urls: Sequence[str], limit: int = 20000) -> None:
        self.urls, self.limit = list(urls), limit

    def read(self, index: int, start: int, errors: list[str]) -> Iterator[tuple[str, Any]]:
        """(key, {suffix: bytes}) of tar shard ``index`` from sample ``start`` on (the ones
        before are read, a tar has no index, but not decoded)."""
        for k, item in enumerate(read_shard(self.urls[index], errors)):
            if k >= start:
                yield item

    def decode(self, sample: Any, where: str) -> tuple[np.ndarray, list[str]]:
        """``tseg.data.own.shards.decode_sample``."""
        return decode_sample(sample, where)

    def good_texts(self) -> Iterator[list[str]]:
        for url in self.urls:
            for key, files in read_shard(url, []):
                try:
                    yield sample_text(files, f"{url}: {key}")
                except RecordError:
                    continue
