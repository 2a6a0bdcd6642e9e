"""WebDataset tar shards of images with text (``data.dataset=webdataset``, ``data.shards``).

A shard is a tar file; the files of one sample share a key (the name up to the first dot of
the base name, as the ``webdataset`` library groups them) and lie next to each other::

    000000042.jpg    (or .jpeg, .png, .webp; the first of these the sample has is read)
    000000042.json   {"expressions": ["red circle", ...]}  (or "text" / "caption": one string)
    000000042.txt    one expression per line (read when there is no .json)

``data.shards`` names the shards as the ``webdataset`` library does: brace expansion
(``shards/train-{000000..000099}.tar``), several patterns joined by ``::``, and URLs or
``pipe:`` commands; a local pattern may also be a glob (``shards/*.tar``). A local pattern that
matches no file, or names files that do not exist, is an error naming them.

Two readers share ``decode_sample`` (the one place that turns a sample's files into an image and
its expressions):

* ``ShardDataset``: map-style random access (the ``RefDataset`` protocol) over local,
  uncompressed shards, indexed with the standard ``tarfile`` module; strict like the folder
  formats: a bad sample is an error naming shard and key. It is what ``build_dataset`` returns,
  so the existing training path (exactly resumable) runs on local shards; in shard order it
  keeps the order of the samples (``tseg data convert`` writes them in dataset order).
* ``tseg.data.stream.ShardStream``: the streaming reader for shards anywhere (the ``webdataset``
  library's tar iteration), split across processes and DataLoader workers; a bad sample there is
  skipped and counted (see that module).
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError
from tseg.data.files import read_rgb
from tseg.data.own.weak import (
    RecordError,
    WeakDataset,
    clean_expressions,
    expressions_from_record,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ShardDataset",
    "build",
    "decode_sample",
    "expand_shards",
    "is_remote",
    "read_shard",
    "require_webdataset",
    "sample_text",
]

#: Sample file suffixes holding the image, in the order they are looked for.
IMAGE_SUFFIXES: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")


def is_remote(url: str) -> bool:
    """True for a URL or ``pipe:`` command (not checked for existence here)."""
    return "://" in url or url.startswith("pipe:")


def require_webdataset() -> None:
    """Raise a ``DatasetError`` saying what to install when the ``webdataset`` library is missing."""
    try:
        import webdataset  # noqa: F401
    except ImportError:
        raise DatasetError(
            "WebDataset shards need the webdataset library: pip install 'tseg[data]'"
        ) from None


def expand_shards(spec: str) -> list[str]:
    """``data.shards`` -> the list of shards, in order.

    Expansion is the ``webdataset`` library's (``::`` between patterns, then braces); a local
    name with ``*``, ``?`` or ``[`` is then globbed (sorted).

    Raises:
        DatasetError: An empty spec, a local pattern matching no file, or local shards that do
            not exist (the message names the pattern and the first missing files).
    """
    require_webdataset()
    from webdataset.shardlists import expand_urls

    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(
            "config key 'data.shards' is empty: set it to the shard files, e.g. "
            "data.shards='shards/train-{000000..000009}.tar'"
        )
    out: list[str] = []
    missing: list[str] = []
    for name in expand_urls(spec):
        if is_remote(name):
            out.append(name)
        elif any(c in name for c in "*?["):
            matched = sorted(glob.glob(name))
            if not matched:
                missing.append(name)
            out.extend(matched)
        elif Path(name).is_file():
            out.append(name)
        else:
            missing.append(name)
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        what = "matches nothing" if not out else f"names {len(missing)} missing file(s)"
        raise DatasetError(f"data.shards {spec!r} {what}: {shown}")
    if not out:
        raise DatasetError(f"data.shards {spec!r} matches nothing")
    return out


def read_shard(url: str, errors: list[str]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The samples (key, {suffix: bytes}) of one shard, local or remote, via ``webdataset``.

    A shard that cannot be opened or read to its end is not raised: the reason is appended to
    ``errors`` and reading stops there (what follows a damaged tar header is unknown), so the
    samples before the damage are kept.
    """
    require_webdataset()
    from webdataset.tariterators import tarfile_samples

    def handler(exn: Exception) -> bool:
        reason = exn.args[0] if exn.args else exn
        errors.append(f"{url}: unreadable ({type(exn).__name__}: {reason})")
        return False

    for sample in tarfile_samples([{"url": url}], handler=handler):
        yield sample["__key__"], {k: v for k, v in sample.items() if not k.startswith("__")}


def sample_text(files: dict[str, bytes], where: str) -> list[str]:
    """A sample's expressions: ``json`` (``expressions`` / ``text`` / ``caption``), else ``txt``.

    Raises:
        RecordError: No text file, malformed JSON, or bad expressions (naming ``where``).
    """
    if "json" in files:
        try:
            record = json.loads(files["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RecordError(f"{where}.json: not valid JSON ({e})", "malformed record") from None
        if not isinstance(record, dict):
            raise RecordError(f"{where}.json: expected a JSON object", "malformed record")
        return expressions_from_record(record, f"{where}.json")
    if "txt" in files:
        try:
            lines = files["txt"].decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise RecordError(f"{where}.txt: not UTF-8 text", "malformed record") from None
        return clean_expressions([t for t in lines if t.strip()], f"{where}.txt")
    raise RecordError(f"{where}: no .json or .txt with the expressions", "no text")


def decode_sample(files: dict[str, bytes], where: str) -> tuple[np.ndarray, list[str]]:
    """A sample's files {suffix: bytes} -> (RGB image uint8 [H, W, 3], expressions).

    Raises:
        RecordError: No image, an unreadable image, or bad text (kinds as ``tseg data check``
            counts them).
    """
    exprs = sample_text(files, where)
    suffix = next((s for s in IMAGE_SUFFIXES if s in files), None)
    if suffix is None:
        raise RecordError(
            f"{where}: no image ({', '.join('.' + s for s in IMAGE_SUFFIXES)})", "missing image"
        )
    try:
        image = read_rgb(io.BytesIO(files[suffix]), where=f"{where}.{suffix}")
    except DatasetError as e:
        raise RecordError(str(e), "unreadable image") from None
    return image, exprs


@dataclass
class _Sample:
    shard: int
    key: str
    members: dict[str, tuple[int, int]] = field(default_factory=dict)  # suffix -> (offset, size)


def _split_name(name: str) -> tuple[str | None, str | None]:
    from webdataset.tariterators import base_plus_ext

    return base_plus_ext(name)


def index_shard(path: str, shard: int) -> Iterator[_Sample]:
    """The samples of one local uncompressed tar, grouped as the ``webdataset`` library groups.

    Raises:
        DatasetError: The file cannot be read as an uncompressed tar.
        RecordError: A sample has two files with the same suffix.
    """
    current: _Sample | None = None
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                base = info.name.rsplit("/", 1)[-1]
                if base.startswith("__") and base.endswith("__"):
                    continue  # metadata, as the library skips it
                key, suffix = _split_name(info.name)
                if key is None or suffix is None:
                    continue
                suffix = suffix.lower()
                if current is None or key != current.key:
                    if current is not None:
                        yield current
                    current = _Sample(shard, key)
                if suffix in current.members:
                    raise RecordError(f"{path}: {key}: two files .{suffix}", "malformed record")
                current.members[suffix] = (info.offset_data, info.size)
    except tarfile.ReadError as e:
        raise DatasetError(
            f"{path}: not an uncompressed tar ({e}); map-style reading needs local .tar files"
        ) from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    if current is not None:
        yield current


class ShardDataset(WeakDataset):
    """Map-style access to local WebDataset shards: one item per sample, in shard order.

    Args:
        shards: ``data.shards`` (see ``expand_shards``); every shard must be a local ``.tar``.

    Raises:
        DatasetError: No shard, a remote or compressed shard, or a bad sample (naming shard
            and key).
    """

    name = "webdataset"

    def __init__(self, shards: str) -> None:
        self.source = shards
        self.shards = expand_shards(shards)
        remote = [s for s in self.shards if is_remote(s)]
        if remote:
            raise DatasetError(
                f"data.shards: {remote[0]} is not a local file; map-style reading (what "
                "build_dataset returns) needs local .tar shards; stream remote shards with "
                "tseg.data.stream.ShardStream"
            )
        self._samples: list[_Sample] = []
        self._exprs: list[list[str]] = []
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()
        for i, path in enumerate(self.shards):
            for sample in index_shard(path, i):
                where = f"{path}: {sample.key}"
                text = {s: self._read(sample, s) for s in ("json", "txt") if s in sample.members}
                self._exprs.append(sample_text(text, where))
                if not any(s in sample.members for s in IMAGE_SUFFIXES):
                    raise RecordError(f"{where}: no image", "missing image")
                self._samples.append(sample)
        if not self._samples:
            raise DatasetError(f"data.shards {shards!r}: the shards hold no sample")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = {}  # open files stay with their process
        return state

    def _read(self, sample: _Sample, suffix: str) -> bytes:
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own files
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(sample.shard)
        if f is None:
            f = self._files[sample.shard] = open(self.shards[sample.shard], "rb")  # noqa: SIM115
        offset, size = sample.members[suffix]
        f.seek(offset)
        return f.read(size)

    def __len__(self) -> int:
        return len(self._samples)

    def key(self, idx: int) -> str:
        """``shard: key`` of item ``idx``."""
        s = self._samples[idx]
        return f"{self.shards[s.shard]}: {s.key}"

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 [H, W, 3]."""
        s = self._samples[idx]
        suffix = next(x for x in IMAGE_SUFFIXES if x in s.members)
        return read_rgb(io.BytesIO(self._read(s, suffix)), where=f"{self.key(idx)}.{suffix}")

    def expressions(self, idx: int) -> list[str]:
        """The sample's expressions."""
        return list(self._exprs[idx])

    def __repr__(self) -> str:
        return f"ShardDataset({self.source!r}, shards={len(self.shards)}, samples={len(self)})"


def build(cfg: DataConfig, split: str) -> ShardDataset:
    """``data.dataset=webdataset``: ``data.shards``, the training data (there is no other split).

    Raises:
        DatasetError: ``split`` is not the training split.
    """
    if split not in ("train", cfg.train_split):
        raise DatasetError(
            f"data.dataset=webdataset: data.shards holds the training data; there is no "
            f"split {split!r} (evaluate on data with masks, e.g. --dataset coco)"
        )
    return ShardDataset(cfg.shards)
