"""``tseg data convert``: any dataset (a ``RefDataset``) to WebDataset shards, ImageFolder or COCO captions.

Only images and expressions are written (the weak formats hold no masks), in the dataset's
order. An image whose source file is a JPEG, PNG or WebP (a dataset with ``image_path``) is
copied byte for byte; any other (``shapes`` renders its images) is encoded as PNG, which is
lossless: reading the result gives the pixels ``ds.image(i)`` gave.

* ``webdataset``: ``OUT/<prefix>-000000.tar``, ... with ``shard_size`` samples each (the last may
  hold fewer), a sample ``<9-digit index>.png|jpg|...`` + ``.json`` (``{"expressions": [...]}``),
  and ``OUT/<prefix>-shards.json`` (the shards, their sample counts and the brace pattern for
  ``data.shards``). Each shard is written under a temporary name and renamed when complete, so
  an interrupted conversion leaves no partial shard that looks whole.
* ``imagefolder``: ``OUT/images/<index>.<ext>`` and ``OUT/metadata.jsonl`` (``file_name``,
  ``expressions``), the metadata written last and renamed into place.
* ``coco_captions``: ``OUT/<split>/<index>.<ext>`` and ``OUT/annotations/captions_<split>.json``
  (image ids from 1 in dataset order; one annotation per expression), the JSON written last.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from tseg.data.base import DatasetError, RefDataset
from tseg.data.own.weak import IMAGE_EXTENSIONS

__all__ = ["FORMATS", "convert", "convert_dataset", "image_bytes"]

FORMATS: tuple[str, ...] = ("webdataset", "imagefolder", "coco_captions")


def image_bytes(ds: RefDataset, idx: int) -> tuple[str, bytes]:
    """(suffix without the dot, encoded bytes) of image ``idx``: the source file or a PNG."""
    stored = getattr(ds, "image_bytes", None)  # a Hugging Face dataset's encoded cell
    if callable(stored):
        data = stored(idx)
        try:
            with Image.open(io.BytesIO(data)) as im:
                kind = (im.format or "").lower()
        except Exception:  # PIL raises several types for a bad header; ds.image names the row
            kind = ""
        suffix = {"jpeg": "jpg", "png": "png", "webp": "webp"}.get(kind)
        if suffix is not None:
            return suffix, data
    path_of = getattr(ds, "image_path", None)
    if callable(path_of):
        path = Path(path_of(idx))
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            try:
                return path.suffix.lower().lstrip("."), path.read_bytes()
            except OSError as e:
                raise DatasetError(f"{path}: cannot read ({e})") from None
    buf = io.BytesIO()
    Image.fromarray(ds.image(idx)).save(buf, format="PNG")
    return "png", buf.getvalue()


def _image_size(data: bytes, where: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.height, im.width
    except Exception as e:  # PIL raises several types for a bad header
        raise DatasetError(f"{where}: cannot read the image ({e})") from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _items(
    ds: RefDataset, desc: str, progress: bool
) -> Iterator[tuple[int, str, bytes, list[str]]]:
    for i in tqdm(range(len(ds)), desc=desc, disable=not progress, dynamic_ncols=True):
        exprs = ds.expressions(i)
        if not exprs:
            raise DatasetError(f"{type(ds).__name__} item {i} has no expressions")
        suffix, data = image_bytes(ds, i)
        yield i, suffix, data, exprs


def _to_webdataset(
    ds: RefDataset, out: Path, shard_size: int, prefix: str, progress: bool
) -> dict[str, Any]:
    from tseg.data.own.shards import require_webdataset

    require_webdataset()
    from webdataset import TarWriter

    shards: list[dict[str, Any]] = []
    writer: Any = None
    tmp: Path | None = None

    def close() -> None:
        nonlocal writer
        if writer is not None and tmp is not None:
            writer.close()
            os.replace(tmp, out / shards[-1]["file"])
            writer = None

    try:
        for i, suffix, data, exprs in _items(ds, "convert to webdataset", progress):
            if i % shard_size == 0:
                close()
                name = f"{prefix}-{len(shards):06d}.tar"
                shards.append({"file": name, "samples": 0})
                tmp = out / f".{name}.tmp"
                writer = TarWriter(str(tmp), encoder=False, mtime=0.0)
            payload = json.dumps({"expressions": exprs}, ensure_ascii=False).encode("utf-8")
            writer.write({"__key__": f"{i:09d}", suffix: data, "json": payload})
            shards[-1]["samples"] += 1
        close()
    finally:
        if writer is not None:  # interrupted: drop the partial shard
            writer.close()
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    last = len(shards) - 1
    pattern = str(
        out / (f"{prefix}-{{000000..{last:06d}}}.tar" if last else f"{prefix}-000000.tar")
    )
    index = {"pattern": pattern, "samples": len(ds), "shards": shards}
    _write_atomic(out / f"{prefix}-shards.json", json.dumps(index, indent=1).encode())
    return {"format": "webdataset", "out": str(out), "data.shards": pattern, **index}


def _to_imagefolder(ds: RefDataset, out: Path, progress: bool) -> dict[str, Any]:
    (out / "images").mkdir(exist_ok=True)
    rows = []
    for i, suffix, data, exprs in _items(ds, "convert to imagefolder", progress):
        name = f"images/{i:09d}.{suffix}"
        (out / name).write_bytes(data)
        rows.append(json.dumps({"file_name": name, "expressions": exprs}, ensure_ascii=False))
    _write_atomic(out / "metadata.jsonl", ("\n".join(rows) + "\n").encode("utf-8"))
    return {"format": "imagefolder", "out": str(out), "data.root": str(out), "images": len(ds)}


def _to_coco_captions(ds: RefDataset, out: Path, split: str, progress: bool) -> dict[str, Any]:
    (out / split).mkdir(exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    images, anns = [], []
    for i, suffix, data, exprs in _items(ds, "convert to coco_captions", progress):
        name = f"{i:09d}.{suffix}"
        (out / split / name).write_bytes(data)
        h, w = _image_size(data, name)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for text in exprs:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "caption": text})
    data = {
        "info": {"description": "written by tseg data convert"},
        "images": images,
        "annotations": anns,
    }
    path = out / "annotations" / f"captions_{split}.json"
    _write_atomic(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))
    return {
        "format": "coco_captions",
        "out": str(out),
        "data.root": str(out),
        "data.train_split": split,
        "images": len(ds),
        "captions": len(anns),
    }


def convert_dataset(
    source: str,
    out: str | os.PathLike[str],
    fmt: str = "webdataset",
    *,
    root: str | None = None,
    split: str = "train",
    settings: Sequence[str] = (),
    shard_size: int = 1000,
    progress: bool = True,
) -> tuple[int, dict[str, Any]]:
    """``tseg data convert``: a split of ``data.dataset=source`` (at ``root``, with more
    ``key=value`` config ``settings``) -> ``out`` in format ``fmt`` (see ``convert``).

    Returns:
        (images written, the ``data.*`` config keys that train on the result).

    Raises:
        DatasetError: ``source`` is not a registered dataset (``tseg.data.registry``), or what
            building it or ``convert`` raises.
    """
    from tseg.config import build_config
    from tseg.data import build_dataset
    from tseg.data.registry import get

    get(source)  # an unknown name: the registry's error, which lists the registered ones
    overrides = [f"data.dataset={source}", *settings]
    if root:
        overrides.append(f"{'data.shards' if source == 'webdataset' else 'data.root'}={root}")
    ds = build_dataset(build_config(None, overrides).data, split)
    done = convert(ds, out, fmt, shard_size=shard_size, split=split, progress=progress)
    return len(ds), {k: v for k, v in done.items() if k.startswith("data.")}


def convert(
    ds: RefDataset,
    out: str | os.PathLike[str],
    fmt: str = "webdataset",
    *,
    shard_size: int = 1000,
    split: str = "train",
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``ds``'s images and expressions to ``out`` in format ``fmt``.

    Args:
        ds: Any dataset (``build_dataset``'s result).
        out: Output folder (created; files of a previous conversion are overwritten).
        fmt: ``webdataset``, ``imagefolder`` or ``coco_captions``.
        shard_size: webdataset: samples per shard.
        split: The shard prefix (webdataset) or the split name in the file names (COCO).
        progress: Show a progress bar.

    Returns:
        What was written and the config keys that read it back (``data.shards`` / ``data.root``).

    Raises:
        DatasetError: Unknown format, bad shard size, or an item that cannot be read.
    """
    if fmt not in FORMATS:
        raise DatasetError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if shard_size < 1:
        raise DatasetError(f"--shard-size must be at least 1, got {shard_size}")
    if not split or "/" in split or split.startswith("."):
        raise DatasetError(f"invalid split name {split!r}")
    if len(ds) == 0:
        raise DatasetError("the dataset is empty: nothing to convert")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "webdataset":
        return _to_webdataset(ds, out, shard_size, split, progress)
    if fmt == "imagefolder":
        return _to_imagefolder(ds, out, progress)
    return _to_coco_captions(ds, out, split, progress)
