"""Images with text in the Hugging Face ImageFolder layout (``data.dataset=imagefolder``).

Expected files (``root`` is the dataset folder, ``data.root``)::

    <root>/[<split>/]metadata.jsonl      or metadata.csv, metadata.parquet; in any subfolder
    <root>/[<split>/]<any/sub/folder>/<image>.jpg|png|webp ...

As in ImageFolder, a split is a subfolder named after it (``train/``; ``validation/``,
``valid/``, ``val/`` or ``dev/`` for ``val``; ``test/`` or ``testing/``); a root without any
split folder is the training split. Every ``metadata.jsonl`` / ``metadata.csv`` /
``metadata.parquet`` below the split's folder is read (sorted by path, all of one format;
Parquet through ``pyarrow``, which the ``datasets`` library brings), and each row's
``file_name`` is relative to the folder of its metadata file. A row's text is, as
``tseg.data.own.weak`` reads it:

* ``expressions``: a list of strings (a list column in Parquet; in CSV, which has no list
  type, a JSON list in the cell:
  ``"[""red circle"", ""blue square""]"``; ImageFolder itself would read that as one string);
* or ``text`` / ``caption``: one string.

Rows naming the same image are merged (one caption per row is common): an item is an image
with the distinct expressions of all its rows, in the order the rows come. Items follow the
first row of each image. A row naming a missing image, or with no text, an empty list, a
non-string or an empty expression, is an error that names the file and line (a Parquet
file's row number) (``tseg data check imagefolder ROOT`` lists them all).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError
from tseg.data.files import join_inside, read_rgb
from tseg.data.own.weak import RecordError, WeakDataset, expressions_from_record, merge_expressions
from tseg.data.paths import require_root, split_name

__all__ = [
    "METADATA_NAMES",
    "SPLIT_FOLDERS",
    "ImageFolderDataset",
    "Row",
    "build",
    "find_metadata",
    "iter_rows",
    "parse_row",
    "split_folder",
]

METADATA_NAMES: tuple[str, ...] = ("metadata.jsonl", "metadata.csv", "metadata.parquet")

#: Folder names of each split, in the order they are looked for (ImageFolder's keywords).
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}


def split_folder(root: str | os.PathLike[str], split: str | None) -> Path:
    """The folder of ``split`` under ``root`` (``root`` itself for None or a split-less train).

    Raises:
        DatasetError: ``root`` is not a folder, or the split has no folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found (data.root of an imagefolder dataset)")
    if split is None:
        return root
    names = next((v for v in SPLIT_FOLDERS.values() if split in v), (split,))
    for name in dict.fromkeys((split, *names)):
        if (root / name).is_dir():
            return root / name
    any_split = any((root / n).is_dir() for v in SPLIT_FOLDERS.values() for n in v)
    if split in SPLIT_FOLDERS["train"] and not any_split:
        return root
    looked = ", ".join(f"{n}/" for n in dict.fromkeys((split, *names)))
    raise DatasetError(f"{root}: no folder for split {split!r} (looked for {looked})")


def find_metadata(folder: Path) -> list[Path]:
    """Every metadata file below ``folder``, sorted; all must be of one format.

    Raises:
        DatasetError: None found, or files of two formats.
    """
    found = sorted(p for name in METADATA_NAMES for p in folder.rglob(name) if p.is_file())
    if not found:
        raise DatasetError(
            f"{folder}: no metadata.jsonl, metadata.csv or metadata.parquet (Hugging Face "
            "ImageFolder layout: a metadata file beside the images, a 'file_name' column and "
            "the text in 'expressions', 'text' or 'caption')"
        )
    first = {p.suffix: p for p in reversed(found)}  # the first file of each format
    if len(first) > 1:
        a, b = sorted(first.values())[:2]
        raise DatasetError(f"{folder}: metadata files of two formats ({a} and {b}); use one format")
    return found


@dataclass(frozen=True)
class Row:
    """One metadata row: where it is (``file:line``), its folder, and its fields or its error."""

    where: str
    folder: Path
    record: dict[str, Any] | None
    error: RecordError | None = None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None


def iter_rows(path: Path) -> Iterator[Row]:
    """The rows of a ``metadata.jsonl`` or ``metadata.csv``; a malformed row carries its error.

    Raises:
        DatasetError: The file cannot be read, or a CSV has no ``file_name`` column.
    """
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    text = _read_text(path)
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield Row(
                    where,
                    path.parent,
                    None,
                    RecordError(f"{where}: not JSON ({e.msg})", "malformed record"),
                )
                continue
            if not isinstance(record, dict):
                error = RecordError(f"{where}: expected a JSON object", "malformed record")
                yield Row(where, path.parent, None, error)
                continue
            yield Row(where, path.parent, record)
        return
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or "file_name" not in reader.fieldnames:
        raise DatasetError(f"{path}: the header has no 'file_name' column: {reader.fieldnames}")
    for record in reader:
        where = f"{path}:{reader.line_num}"
        if None in record:  # more cells than header columns
            error = RecordError(f"{where}: more cells than columns", "malformed record")
            yield Row(where, path.parent, None, error)
            continue
        if "expressions" in record:
            try:
                record["expressions"] = json.loads(record["expressions"])
            except (json.JSONDecodeError, TypeError):
                error = RecordError(
                    f"{where}: 'expressions' must be a JSON list of strings in CSV, got "
                    f"{record['expressions']!r:.80}",
                    "malformed record",
                )
                yield Row(where, path.parent, None, error)
                continue
        yield Row(where, path.parent, record)


def _parquet_rows(path: Path) -> Iterator[Row]:
    """The rows of a ``metadata.parquet`` (``pyarrow``), named ``file: row N`` (from 1)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            f"{path}: reading metadata.parquet needs pyarrow: pip install 'tseg[hf]'"
        ) from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid (not Parquet) is a ValueError
        raise DatasetError(f"{path}: cannot read as Parquet ({e})") from None
    if "file_name" not in table.column_names:
        raise DatasetError(f"{path}: no 'file_name' column: {table.column_names}")
    for i, record in enumerate(table.to_pylist(), 1):
        yield Row(f"{path}: row {i}", path.parent, record)


def parse_row(row: Row) -> tuple[Path, list[str]]:
    """A row -> (image path, expressions); the image must exist.

    Raises:
        RecordError: The row's error, a missing or invalid ``file_name``, a missing image or bad
            text (the message names the file and line).
    """
    if row.error is not None:
        raise row.error
    assert row.record is not None
    if "file_name" not in row.record:
        raise RecordError(f"{row.where}: no 'file_name'", "malformed record")
    try:
        path = join_inside(row.folder, row.record["file_name"], where=row.where)
    except DatasetError as e:
        raise RecordError(str(e), "malformed record") from None
    exprs = expressions_from_record(row.record, row.where)
    if not path.is_file():
        raise RecordError(f"{row.where}: image {path} not found", "missing image")
    return path, exprs


class ImageFolderDataset(WeakDataset):
    """An ImageFolder split: one item per image, its expressions from the metadata rows.

    Args:
        root: The dataset folder.
        split: ``train``, ``val``, ``test`` or a folder name; None: ``root`` itself.

    Raises:
        DatasetError: A missing folder or metadata file, or a bad row (naming file and line).
    """

    name = "imagefolder"

    def __init__(self, root: str | os.PathLike[str], split: str | None = "train") -> None:
        self.root = Path(root)
        self.split = split
        self.folder = split_folder(root, split)
        self.source = self.folder
        self.metadata_files = find_metadata(self.folder)
        by_image: dict[Path, list[list[str]]] = {}
        self.num_rows = 0
        for meta in self.metadata_files:
            for row in iter_rows(meta):
                path, exprs = parse_row(row)
                by_image.setdefault(path, []).append(exprs)
                self.num_rows += 1
        if not by_image:
            raise DatasetError(f"{self.folder}: the metadata files hold no row")
        self._paths = list(by_image)
        self._exprs = [merge_expressions(groups) for groups in by_image.values()]

    def __len__(self) -> int:
        return len(self._paths)

    def image_path(self, idx: int) -> Path:
        """The image file of item ``idx``."""
        return self._paths[idx]

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 [H, W, 3]."""
        return read_rgb(self._paths[idx])

    def expressions(self, idx: int) -> list[str]:
        """The distinct expressions of every row naming image ``idx``."""
        return list(self._exprs[idx])

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.folder)!r}, images={len(self)})"


def build(cfg: DataConfig, split: str) -> ImageFolderDataset:
    """``data.dataset=imagefolder``: the split folder of ``data.root``."""
    require_root(cfg)
    return ImageFolderDataset(cfg.root, split_name(cfg, split))
