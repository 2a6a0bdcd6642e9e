"""Safe readers for the files of untrusted datasets: JSON, images, and paths inside a root.

Dataset annotations come from the internet, so nothing read here may escape the dataset root
or let a malformed file through as anything but a ``DatasetError`` naming it:

* ``load_json`` reads JSON and turns every failure into a ``DatasetError``.
* ``join_inside`` joins a relative path taken from an annotation file onto a root and
  refuses absolute paths and ``..`` components.
* ``read_rgb`` reads an image as uint8 RGB.

Pickles are read by ``tseg.data.safe_pickle``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from tseg.data.base import DatasetError

__all__ = ["join_inside", "load_json", "read_rgb"]


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, turning every failure into a ``DatasetError``.

    NaN and infinities are refused: no dataset format here uses them and they would
    otherwise slip into coordinates.
    """
    source = Path(path)

    def no_constant(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    try:
        with open(source, "rb") as f:
            return json.load(f, parse_constant=no_constant)
    except FileNotFoundError:
        raise DatasetError(f"{source}: file not found") from None
    except OSError as e:
        raise DatasetError(f"{source}: cannot read ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{source}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except (ValueError, RecursionError) as e:
        raise DatasetError(f"{source}: malformed JSON ({e})") from None


def join_inside(root: Path, relative: object, *, where: str) -> Path:
    """Join a relative path read from an annotation file onto ``root``.

    The check is lexical (no symlink resolution) so that dataset folders that are
    symlinks to shared storage keep working.

    Args:
        root: The folder the path must stay in.
        relative: The path as read from the annotation (must be a non-empty str).
        where: What the path came from, for the error message.

    Raises:
        DatasetError: ``relative`` is not a string, is absolute, or has a ``..`` part.
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise DatasetError(f"{where}: invalid file name {relative!r}")
    parts = relative.replace("\\", "/").split("/")
    if relative.startswith(("/", "\\")) or os.path.isabs(relative) or ".." in parts:
        raise DatasetError(f"{where}: file name {relative!r} escapes the folder {root}")
    return root.joinpath(*[p for p in parts if p not in ("", ".")])


def read_rgb(
    path: Path | BinaryIO, *, size: tuple[int, int] | None = None, where: str | None = None
) -> np.ndarray:
    """Read an image file as a uint8 RGB array [H, W, 3].

    EXIF orientation is deliberately not applied: the annotations of every dataset
    here are in the stored pixel grid.

    Args:
        path: Image file, or an open binary file (e.g. the bytes of a tar member).
        size: Expected (height, width), checked when given.
        where: What errors call the image (default: ``path``).

    Raises:
        DatasetError: The file is missing, not an image, or not of the expected size.
    """
    name = path if where is None else where
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"{name}: image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{name}: cannot read the image ({e})") from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if size is not None and arr.shape[:2] != tuple(size):
        raise DatasetError(
            f"{name}: image is {arr.shape[0]}x{arr.shape[1]} (HxW) but the annotation "
            f"says {size[0]}x{size[1]}"
        )
    return arr
