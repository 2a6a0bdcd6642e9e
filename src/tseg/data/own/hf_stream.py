"""A Hugging Face dataset as the shards of a training stream (``data.dataset=hf data.stream=true``).

``HfShards`` is a ``tseg.data.stream.ShardSource``: ``ShardStream`` reads it as it reads tar
shards, with the same split across processes and workers and the same exact resume (a shard
ordinal and the samples consumed in it, ``StreamPosition``). The shards are the ``datasets``
library's: data files (parquet in the Hub's ``data/<split>-*.parquet`` layout, a glob) are
streamed from the files themselves (``load_dataset(..., streaming=True)``, one shard per file,
nothing converted into the cache); a ``save_to_disk`` folder or a cached name is memory-mapped and
cut into ``min(rows, ROW_SHARDS)`` contiguous row ranges (``Dataset.to_iterable_dataset``). A
shard is read with ``IterableDataset.shard`` and, after a resume, ``skip``; its samples come in
stored order. A row whose text is empty or whose image does not decode is skipped and counted as
a bad WebDataset sample is; a file that cannot be read stops its shard there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tseg.data.base import DatasetError
from tseg.data.own.hf import (
    hf_columns,
    load_hf_splits,
    pick_split,
    read_cell,
    require_datasets,
    row_expressions,
)
from tseg.data.own.weak import FirstTexts, RecordError

__all__ = ["ROW_SHARDS", "HfShards"]

#: Shards of a memory-mapped dataset (row ranges): enough for 8 processes x 8 workers.
ROW_SHARDS = 64


class HfShards(FirstTexts):
    """One split of a Hugging Face dataset as stream shards, and its first ``limit`` texts
    (``tseg.data.own.weak.FirstTexts``).

    Args:
        root: What ``data.root`` names (``tseg.data.own.hf``).
        split: The split (ImageFolder's names: ``val`` reads ``validation`` ...).
        text_column: ``data.text_column`` ("" = found by name).
        limit: Rows whose expressions ``expressions`` gives (the vocabulary's text).

    Raises:
        DatasetError: As ``tseg.data.own.hf.HfDataset`` (no such split, a missing column).
    """

    too_few = "write the data as more parquet files, or give a save_to_disk folder"

    def __init__(
        self, root: str, split: str = "train", text_column: str = "", limit: int = 20000
    ) -> None:
        datasets = require_datasets()
        self.split, ds = pick_split(load_hf_splits(root, streaming=True), split, root)
        self.source = f"{root} [{self.split}]"
        if ds.features is None:
            raise DatasetError(f"{self.source}: the datasets library knows no columns of it")
        self.image_column, self.text_column, _ = hf_columns(ds.features, self.source, text_column)
        ds = ds.select_columns([self.image_column, self.text_column])
        if isinstance(ds, datasets.Dataset):  # memory-mapped: row ranges
            ds = ds.to_iterable_dataset(num_shards=max(1, min(len(ds), ROW_SHARDS)))
        # Decoded here, not by the library: our RGB conversion and one-line errors per row.
        self._ds = ds.cast_column(self.image_column, datasets.Image(decode=False))
        n = self._ds.n_shards
        self.urls = [f"{self.source} shard {i} of {n}" for i in range(n)]
        self.limit = limit

    def read(self, index: int, start: int, errors: list[str]) -> Iterator[tuple[str, Any]]:
        """("row K", row) of shard ``index`` from its row ``start`` on; a file that cannot be
        read appends the reason to ``errors`` and ends the shard."""
        shard = self._ds.shard(num_shards=self._ds.n_shards, index=index)
        rows = iter(shard.skip(start) if start else shard)
        k = start
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as e:  # the library and pyarrow raise many types for a bad file
                errors.append(f"{self.urls[index]}: unreadable ({type(e).__name__}: {e})")
                return
            yield f"row {k}", row
            k += 1

    def decode(self, sample: dict[str, Any], where: str) -> tuple[np.ndarray, list[str]]:
        """A row -> (RGB image uint8 [H, W, 3], expressions).

        Raises:
            RecordError: An empty or non-string text, no image, or one that does not decode.
        """
        exprs = row_expressions(sample[self.text_column], f"{where}: '{self.text_column}'")
        try:
            return read_cell(sample[self.image_column], f"{where}: '{self.image_column}'"), exprs
        except DatasetError as e:
            raise RecordError(str(e), "unreadable image") from None

    def good_texts(self) -> Iterator[list[str]]:
        for row in self._ds.select_columns([self.text_column]):
            try:
                yield row_expressions(row[self.text_column], self.source)
            except RecordError:
                continue  # skipped, as the stream skips it
