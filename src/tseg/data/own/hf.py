"""Hugging Face ``datasets`` as training data, and with a mask column as evaluation data (``data.dataset=hf``).

``data.root`` names the data, read through the ``datasets`` library (no parser of ours):

* a ``save_to_disk`` folder (``dataset_dict.json``: a DatasetDict, its splits; ``state.json``: one
  Dataset) -> ``datasets.load_from_disk``;
* a folder of data files, e.g. the Hub's ``data/<split>-00000-of-00001.parquet`` layout ->
  ``datasets.load_dataset(folder)``, which infers the splits from the file names;
* a parquet file or a glob (``shards/*.parquet``) -> ``load_dataset("parquet", data_files=...)``,
  one split;
* anything else is a dataset name, loaded from the local Hugging Face cache only: tseg sets the
  library's offline mode for the call, so nothing is downloaded (``datasets.load_dataset(name)``
  once, online, fills the cache).

Columns: the image is the ``Image`` feature (the one named ``image`` when there are several;
not the mask column); the text is ``data.text_column`` or the first of ``expressions``,
``sentences``, ``text``, ``caption`` present, a string (one expression) or a list of strings
(one expression per string). The mask column, read by evaluation only, is ``data.mask_column``
or one of ``mask``, ``masks``, ``segmentation`` when it is an ``Image`` (one mask for all of the
row's expressions, non-zero pixels are the object) or a list of ``Image`` (one per expression,
in order). One item per row. Split names follow ImageFolder's: ``val`` reads ``validation``,
``valid``, ``val`` or ``dev``; a single Dataset answers every split name.

Every text is read and checked when the dataset is built (a missing column names the columns
that exist; an empty text names the row); images are decoded when read (``image``), and one
that does not decode names the row and column.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError, normalize_expression
from tseg.data.files import read_rgb
from tseg.data.own.imagefolder import SPLIT_FOLDERS
from tseg.data.own.weak import RecordError, WeakDataset, clean_expressions
from tseg.data.paths import require_root, split_name

__all__ = [
    "MASK_COLUMNS",
    "TEXT_COLUMNS",
    "HfDataset",
    "build",
    "hf_columns",
    "load_hf_splits",
    "no_masks_reason",
    "pick_split",
    "read_cell",
    "require_datasets",
    "row_expressions",
    "stored_image",
]

#: Where the text is looked for, in order, when ``data.text_column`` is not set.
TEXT_COLUMNS: tuple[str, ...] = ("expressions", "sentences", "text", "caption")
#: Where masks are looked for when ``data.mask_column`` is not set.
MASK_COLUMNS: tuple[str, ...] = ("mask", "masks", "segmentation")


def require_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            "data.dataset=hf reads Hugging Face datasets with the 'datasets' library: "
            "pip install 'tseg[hf]'"
        ) from None
    return datasets


@contextmanager
def _offline(datasets: Any) -> Iterator[None]:
    """The library's offline mode for one call: a name is read from the local cache, or not."""
    # datasets reads HF_HUB_OFFLINE (3.x on), older releases HF_DATASETS_OFFLINE: both set.
    keys = [k for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if hasattr(datasets.config, k)]
    before = {k: getattr(datasets.config, k) for k in keys}
    for k in keys:
        setattr(datasets.config, k, True)
    try:
        yield
    finally:
        for k, v in before.items():
            setattr(datasets.config, k, v)


def load_hf_splits(root: str, streaming: bool = False) -> dict[str, Any]:
    """``root`` (module docstring) -> {split: ``datasets.Dataset``}; a single Dataset is ``""``.

    Args:
        root: What ``data.root`` names.
        streaming: Data files (parquet ...) as ``datasets.IterableDataset`` streamed from the
            files themselves, nothing converted into the cache; a ``save_to_disk`` folder or a
            cached name is memory-mapped anyway and stays a ``Dataset``.

    Raises:
        DatasetError: Not found (naming what was tried), or the library cannot read it.
    """
    datasets = require_datasets()
    path = Path(root)
    named = not (path.exists() or glob.has_magic(root) or _looks_like_a_path(root))
    try:
        saved = any((path / f).is_file() for f in ("dataset_dict.json", "state.json"))
        if path.is_dir() and saved:
            loaded = datasets.load_from_disk(str(path))
        elif path.is_dir():
            loaded = datasets.load_dataset(str(path), streaming=streaming)
        elif not named:
            if not glob.glob(root):
                raise DatasetError(f"{root}: no such file or folder (data.root of an hf dataset)")
            files = {"train": root}
            loaded = datasets.load_dataset("parquet", data_files=files, streaming=streaming)
            loaded = loaded["train"]
        else:
            with _offline(datasets):
                loaded = datasets.load_dataset(root)
    except DatasetError:
        raise
    except (ConnectionError, FileNotFoundError) as e:
        if not named:
            raise DatasetError(f"{root}: the datasets library finds no data: {_line(e)}") from None
        raise DatasetError(
            f"{root}: not a folder, a parquet file or glob, nor a dataset in the local Hugging "
            f"Face cache ({datasets.config.HF_DATASETS_CACHE}); tseg reads it offline: load it "
            f"once with datasets.load_dataset({root!r}), or save_to_disk and give the folder "
            f"({_line(e)})"
        ) from None
    except Exception as e:  # the library raises many types for a bad file
        raise DatasetError(f"{root}: the datasets library cannot read it: {_line(e)}") from None
    if isinstance(loaded, (datasets.Dataset, datasets.IterableDataset)):
        return {"": loaded}
    return dict(loaded.items())


def _looks_like_a_path(root: str) -> bool:
    """A path rather than a Hub name (``org/name``): absolute, relative with ``.``/``~``,
    deeper than one slash, or a file name."""
    return (
        os.path.isabs(root)
        or root.startswith((".", "~"))
        or root.count("/") > 1
        or root.endswith((".parquet", ".arrow"))
    )


def _line(e: Exception) -> str:
    """An exception as one short line (the library's messages span lines)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def pick_split(splits: dict[str, Any], split: str, root: str) -> tuple[str, Any]:
    """(the split's name in ``splits``, its dataset): ``split`` or one of its ImageFolder
    names; a single Dataset (key ``""``) answers every name.

    Raises:
        DatasetError: No such split (naming those there are).
    """
    if "" in splits:
        return split, splits[""]
    names = next((v for v in SPLIT_FOLDERS.values() if split in v), ())
    for name in dict.fromkeys((split, *names)):
        if name in splits:
            return name, splits[name]
    raise DatasetError(
        f"{root}: no split {split!r} (it holds {', '.join(splits)}): set data.train_split / "
        "data.val_split (--split) to one"
    )


def _is_image(feature: Any, datasets: Any) -> bool:
    return isinstance(feature, datasets.Image)


def _is_image_list(feature: Any, datasets: Any) -> bool:
    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and len(feature) == 1:
        inner = feature[0]
    return inner is not None and _is_image(inner, datasets)


def hf_columns(
    features: Any, where: str, text_column: str = "", mask_column: str = ""
) -> tuple[str, str, str | None]:
    """(image, text, mask or None) columns of ``features`` (module docstring for the rules).

    Raises:
        DatasetError: No ``Image`` column, no text column, or a named column that does not exist
            (naming the columns that do).
    """
    datasets = require_datasets()
    names = list(features)
    have = ", ".join(f"{n} ({type(features[n]).__name__})" for n in names)
    for key, column in (("data.text_column", text_column), ("data.mask_column", mask_column)):
        if column and column not in features:
            raise DatasetError(f"{where}: {key}={column!r} is not a column; the columns: {have}")
    mask = mask_column or next(
        (
            n
            for n in MASK_COLUMNS
            if n in features
            and (_is_image(features[n], datasets) or _is_image_list(features[n], datasets))
        ),
        None,
    )
    if mask and not (
        _is_image(features[mask], datasets) or _is_image_list(features[mask], datasets)
    ):
        raise DatasetError(
            f"{where}: mask column {mask!r} is {features[mask]}, not an Image or a list of Image"
        )
    images = [n for n in names if _is_image(features[n], datasets) and n != mask]
    if not images:
        raise DatasetError(f"{where}: no Image column (an image feature); the columns: {have}")
    image = "image" if "image" in images else images[0]
    text = text_column or next((n for n in TEXT_COLUMNS if n in features), "")
    if not text:
        raise DatasetError(
            f"{where}: no text column: expected one of {', '.join(TEXT_COLUMNS)} or set "
            f"data.text_column; the columns: {have}"
        )
    return image, text, mask


def stored_image(cell: Any, where: str) -> bytes:
    """An undecoded ``Image`` cell (``{"bytes", "path"}``) -> its encoded bytes.

    Raises:
        DatasetError: Neither bytes nor a readable file (naming ``where``).
    """
    if isinstance(cell, dict) and cell.get("bytes"):
        return cell["bytes"]
    path = cell.get("path") if isinstance(cell, dict) else None
    if path and os.path.isfile(path):
        return Path(path).read_bytes()
    if path:
        raise DatasetError(f"{where}: image file {path} not found")
    raise DatasetError(f"{where}: no image (neither bytes nor a path)")


def read_cell(cell: Any, where: str) -> np.ndarray:
    """An undecoded ``Image`` cell -> RGB uint8 [H, W, 3], decoded by tseg (``read_rgb``).

    Raises:
        DatasetError: No image, or one that does not decode (naming ``where``).
    """
    return read_rgb(io.BytesIO(stored_image(cell, where)), where=where)


def row_expressions(value: Any, where: str) -> list[str]:
    """A text cell (a string or a list of strings) -> its expressions.

    Raises:
        RecordError: Not text, an empty list or an empty string (naming ``where``).
    """
    if isinstance(value, str):
        return clean_expressions([value], where)
    if isinstance(value, (list, tuple)):
        return clean_expressions(list(value), where)
    raise RecordError(
        f"{where}: expected a string or a list of strings, got {value!r:.80}", "malformed record"
    )


class HfDataset(WeakDataset):
    """One split of a Hugging Face dataset: one item per row.

    Args:
        root: What ``data.root`` names (module docstring).
        split: The split (``train``, ``val`` ... as in ImageFolder).
        text_column, mask_column: The columns, if not found by name.

    Raises:
        DatasetError: See the module docstring.
    """

    name = "hf"

    def __init__(
        self, root: str, split: str = "train", text_column: str = "", mask_column: str = ""
    ) -> None:
        datasets = require_datasets()
        self.root = root
        self.split, ds = pick_split(load_hf_splits(root), split, root)
        self.source = f"{root} [{self.split}]"
        self.image_column, self.text_column, self.mask_column = hf_columns(
            ds.features, self.source, text_column, mask_column
        )
        # Decoded here, not by the library: our RGB conversion and one-line errors per row.
        undecoded = ds.cast_column(self.image_column, datasets.Image(decode=False))
        self._images = undecoded.select_columns([self.image_column])
        self._masks = None
        if self.mask_column is not None:
            self._masks = ds.select_columns([self.mask_column])
        self._texts = ds.select_columns([self.text_column])
        self._exprs: list[list[str]] = []
        for i, value in enumerate(self._texts[self.text_column]):
            self._exprs.append(
                row_expressions(value, f"{self.source} row {i}: '{self.text_column}'")
            )
        if not self._exprs:
            raise DatasetError(f"{self.source}: no rows")

    def __len__(self) -> int:
        return len(self._exprs)

    def image_bytes(self, idx: int) -> bytes:
        """The encoded image of row ``idx`` as stored."""
        where = f"{self.source} row {idx}: '{self.image_column}'"
        return stored_image(self._images[idx][self.image_column], where)

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 [H, W, 3].

        Raises:
            DatasetError: The cell does not decode (naming the row and column).
        """
        where = f"{self.source} row {idx}: '{self.image_column}'"
        return read_cell(self._images[idx][self.image_column], where)

    def expressions(self, idx: int) -> list[str]:
        """The row's expressions."""
        return list(self._exprs[idx])

    def masks(self, idx: int) -> np.ndarray:
        """Bool masks [K, H, W] aligned with ``expressions(idx)`` (non-zero mask pixels).

        Raises:
            DatasetError: No mask column, a list of masks of another length than the row's
                texts, or a mask of another size than the image.
        """
        if self._masks is None:
            raise DatasetError(
                f"{self.source}: no masks (no column {', '.join(MASK_COLUMNS)} of images; "
                "name one with data.mask_column): this split trains only, evaluate on a split "
                "or data with masks"
            )
        where = f"{self.source} row {idx}: '{self.mask_column}'"
        cell = self._masks[idx][self.mask_column]
        exprs = self._exprs[idx]
        row = {normalize_expression(e): k for k, e in enumerate(exprs)}
        if isinstance(cell, list):  # one mask per text of the row, in order
            texts = self._texts[idx][self.text_column]
            texts = [texts] if isinstance(texts, str) else list(texts)
            if len(cell) != len(texts):
                raise DatasetError(f"{where}: {len(cell)} masks for {len(texts)} texts")
            pairs = [(row[normalize_expression(t)], m) for t, m in zip(texts, cell)]
        else:  # one mask that every text of the row refers to
            pairs = [(k, cell) for k in range(len(exprs))]
        h, w = self.image(idx).shape[:2]
        out = np.zeros((len(exprs), h, w), dtype=bool)
        for k, im in pairs:
            m = np.asarray(im)
            if m.ndim == 3:
                m = m.max(axis=2)
            if m.shape != (h, w):
                raise DatasetError(
                    f"{where}: a mask is {m.shape[1]} x {m.shape[0]}, the image {w} x {h}"
                )
            out[k] |= m > 0  # repeated texts: the union of their masks
        return out

    def __repr__(self) -> str:
        return f"HfDataset({self.source!r}, rows={len(self)})"


def build(cfg: DataConfig, split: str) -> HfDataset:
    """``data.dataset=hf``: the split of what ``data.root`` names, with ``data.text_column`` and
    ``data.mask_column``."""
    require_root(cfg)
    return HfDataset(cfg.root, split_name(cfg, split), cfg.text_column, cfg.mask_column)


def no_masks_reason(cfg: DataConfig, split: str) -> str | None:
    """Why split ``split`` has no masks (it does not exist, or has no mask column), or None."""
    from tseg.data.registry import ELSEWHERE

    try:
        ds = HfDataset(cfg.root, split_name(cfg, split), cfg.text_column, cfg.mask_column)
    except DatasetError as e:
        if "no split" not in str(e):
            raise
        return f"data.dataset=hf: {e}; {ELSEWHERE}"
    if ds.mask_column is None:
        return f"data.dataset=hf: {ds.source} has no mask column; {ELSEWHERE}"
    return None
