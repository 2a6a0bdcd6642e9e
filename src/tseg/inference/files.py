"""The files of ``tseg segment``: the expressions (or zero-shot class names) read, the image files
collected and named, and the images decoded ahead of the model, in DataLoader workers (torch)
or a process pool (the ONNX path, without torch). This module imports no torch at the top.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..inputs import MAX_PIXELS, load_image

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_expressions(expressions: list[str], file: str | None) -> list[str]:
    """The given expressions, then the non-empty lines of ``file``."""
    out = list(expressions)
    if file:
        p = Path(file)
        if p.is_dir():
            raise InputError(f"expressions file '{p}' is a folder, not a text file")
        if not p.is_file():
            raise InputError(f"expressions file '{p}' does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(
                f"expressions file '{p}' is not UTF-8 text (byte {e.start}: {e.reason})"
            ) from None
        out += [line.strip() for line in text.splitlines() if line.strip()]
    return out


#: Class lists that ship in the package, by the name ``--classes`` takes (from any folder).
PACKAGED_CLASSES = {"voc": "voc_synonyms.yaml"}


def read_classes(spec: str) -> dict[str, list[str]]:
    """A packaged list by name (``voc``: the 20 VOC classes with their synonyms), a YAML file
    (class -> list of names) or comma-separated class names -> {class: names}."""
    if spec.strip() in PACKAGED_CLASSES and not Path(spec).exists():
        from importlib.resources import files

        spec = str(files("tseg") / "resources" / PACKAGED_CLASSES[spec.strip()])
    p = Path(spec)
    if p.suffix.lower() in (".yaml", ".yml") or p.is_file():
        import yaml

        from ..data.zeroshot import load_class_names

        if not p.is_file():
            raise InputError(f"classes file '{p}' does not exist")
        try:
            keys = list((yaml.safe_load(p.read_text(encoding="utf-8")) or {}).keys())
        except UnicodeDecodeError:
            raise InputError(f"classes file '{p}' is not UTF-8 text") from None
        except yaml.YAMLError as e:
            from ..config import yaml_problem

            raise InputError(f"classes file '{p}' is not valid YAML: {yaml_problem(e)}") from None
        except AttributeError:
            raise InputError(
                f"classes file '{p}' is not a YAML mapping of class -> names"
            ) from None
        return load_class_names(p, classes=keys)
    names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise InputError("--classes is empty: give names like 'cat,dog' or a YAML file")
    return {c: [c] for c in names}


def collect_images(spec: str) -> list[Path]:
    """A file, a folder (its images, sorted) or a glob pattern -> image paths."""
    p = Path(spec)
    if p.is_dir():
        paths = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise InputError(f"folder '{p}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return paths
    if p.is_file():
        return [p]
    if any(c in spec for c in "*?["):
        paths = sorted(Path(q) for q in glob.glob(spec, recursive=True) if Path(q).is_file())
        if not paths:
            raise InputError(f"pattern '{spec}' matches no file")
        return paths
    raise InputError(f"image '{p}' does not exist")


def output_stems(paths: list[Path]) -> list[str]:
    """Output folder names: two images with the same name in different folders get a, a_1."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        n = seen.get(path.stem, 0)
        seen[path.stem] = n + 1
        stems.append(path.stem if n == 0 else f"{path.stem}_{n}")
    return stems


def _decode(path: Path, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    """One file -> (uint8 RGB [H, W, 3], None), or (None, its ``InputError`` message)."""
    try:
        return load_image(path, max_pixels), None
    except InputError as e:
        return None, str(e)


class ImageFiles:
    """Image files decoded by DataLoader workers: item i -> (i, uint8 RGB [H, W, 3] or None, error).

    A file that cannot be used yields its ``InputError`` message (which names the file) instead
    of raising, so one bad file does not stop the others. (A map-style dataset for torch's
    DataLoader, which needs only ``__len__`` and ``__getitem__``: this module imports no torch.)
    """

    def __init__(self, paths: list[Path], max_pixels: int = MAX_PIXELS) -> None:
        self.paths, self.max_pixels = list(paths), max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        return (i, *_decode(self.paths[i], self.max_pixels))


def _first(batch: list):
    """collate_fn for batch_size 1: keep the decoded uint8 array as is (images differ in size)."""
    return batch[0]


def default_workers() -> int:
    """Decoding processes for ``tseg segment``: up to 4, never more than the CPUs."""
    return min(4, os.cpu_count() or 1)


def image_loader(paths: list[Path], max_pixels: int = MAX_PIXELS, workers: int = 0) -> DataLoader:
    """Decode ``paths`` in order with ``workers`` (>= 0) processes (0: in this process)."""
    from torch.utils.data import DataLoader

    return DataLoader(
        ImageFiles(paths, max_pixels),
        batch_size=1,
        shuffle=False,
        # One image gains nothing from a worker process: the model waits for it either way.
        num_workers=min(workers, len(paths)) if len(paths) > 1 else 0,
        collate_fn=_first,
    )


class decoded_images:
    """``with decoded_images(paths, max_pixels, workers) as items``: (i, array or None, error)
    for each path in order, as ``image_loader`` gives them, without torch.

    Several images and ``workers`` > 0: that many processes (a ``concurrent.futures`` pool)
    decode up to twice as many images ahead of the consumer. Their processes are started on
    entering, so a caller that starts threads afterwards (ONNX Runtime) forks none. One image,
    or ``workers`` = 0: decoded in this process when asked for, with no process started.
    """

    def __init__(self, paths: list[Path], max_pixels: int, workers: int) -> None:
        self.paths, self.max_pixels = list(paths), max_pixels
        self.workers = min(workers, len(self.paths)) if len(self.paths) > 1 else 0
        self.pool: Any = None

    def __enter__(self) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        if not self.workers:
            return ((i, *_decode(p, self.max_pixels)) for i, p in enumerate(self.paths))
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork where there is one (Linux): a worker starts in milliseconds and the parent has
        # no thread yet; elsewhere the platform's default.
        method = "fork" if sys.platform.startswith("linux") else None
        self.pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context(method))
        ahead = 2 * self.workers
        pending = [self.pool.submit(_decode, p, self.max_pixels) for p in self.paths[:ahead]]
        return self._results(pending, ahead)

    def _results(self, pending: list, ahead: int) -> Iterator[tuple[int, Any, Any]]:
        for i in range(len(self.paths)):
            array, error = pending[i].result()
            pending[i] = None  # drop the decoded array once consumed
            if i + ahead < len(self.paths):
                pending.append(self.pool.submit(_decode, self.paths[i + ahead], self.max_pixels))
            yield i, array, error

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
