"""The pseudo-mask folder: a manifest plus shards of COCO instances JSON with RLE masks.

    <folder>/manifest.json        format, teacher (checkpoint, weights sha256), the data it was
                                  made for (``identity``), options (refinement, threshold, ...),
                                  images, shard size, shards, complete, statistics
    <folder>/shard-00000.json     images [first, first + shard_size): a COCO instances file
                                  (pycocotools.coco.COCO reads it) whose categories are the
                                  shard's expressions; each annotation is a kept pair with its
                                  foreground ``segmentation`` (compressed RLE), ``ignore`` (RLE
                                  of the pixels the student leaves out), ``score`` (the
                                  teacher's confidence) and ``expression``. Every image of the
                                  shard is listed (with ``expressions``: all of its own), also
                                  one whose pairs were all dropped.

A shard is written to a temporary name and renamed, so a file under its final name is whole; a
killed run resumes at the first missing shard (``tseg.selftrain.pseudo``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..coco_masks import decode, instances, write_json_atomic
from ..config import DataConfig
from ..errors import DatasetError

FORMAT = "tseg-pseudo-masks/1"
MANIFEST = "manifest.json"

# The data keys that decide which images a split holds and what their expressions are; the
# others (augmentation, workers, sizes of other splits) do not change the training images.
_IDENTITY_SKIP = {
    "expressions_per_image",
    "hflip",
    "scale_min",
    "scale_max",
    "num_workers",
    "pseudo_masks",
    "train_fraction",
    "stream",
    "val_split",
    "val_size",
    "test_size",
    "shapes_absent",
}


def identity(cfg: DataConfig, split: str) -> dict[str, Any]:
    """What names the images of ``split`` of ``cfg``'s dataset (and their expressions)."""
    out = {k: v for k, v in asdict(cfg).items() if k not in _IDENTITY_SKIP}
    out["split"] = split
    return out


def shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:05d}.json"


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{what} '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{what} '{path}' is not readable JSON: {e}") from None


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first key whose value differs between two flat dicts, as "key = a vs b"."""
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"{k} = {a.get(k)!r} there, {b.get(k)!r} here"
    return None


class PseudoMasks:
    """A finished pseudo-mask folder, read into memory (masks stay RLE until asked for).

    Raises:
        DatasetError: no manifest, another format, an unfinished run, or a bad shard.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DatasetError(
                f"pseudo-mask folder '{self.folder}' does not exist (make it with tseg "
                "pseudo-label RUN --out FOLDER)"
            )
        m = read_json(self.folder / MANIFEST, "pseudo-mask manifest")
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise DatasetError(
                f"'{self.folder / MANIFEST}' is not a tseg pseudo-mask manifest ({FORMAT})"
            )
        if not m.get("complete"):
            done = sum(shard_path(self.folder, k).is_file() for k in range(m.get("shards", 0)))
            raise DatasetError(
                f"pseudo-labelling into '{self.folder}' did not finish ({done} of "
                f"{m.get('shards')} shards): run the same tseg pseudo-label command again to "
                "continue it"
            )
        self.manifest = m
        # image index -> (its own expressions, [(expression, fg RLE, ignore RLE, score)])
        self.images: dict[int, tuple[list[str], list[tuple[str, dict, dict | None, float]]]] = {}
        for k in range(m["shards"]):
            path = shard_path(self.folder, k)
            shard = read_json(path, "pseudo-mask shard")
            try:
                for im in shard["images"]:
                    self.images[int(im["id"])] = (list(im["expressions"]), [])
                for a in shard["annotations"]:
                    self.images[int(a["image_id"])][1].append(
                        (a["expression"], a["segmentation"], a.get("ignore"), float(a["score"]))
                    )
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError(f"pseudo-mask shard '{path}' is malformed: {e!r}") from None

    def __len__(self) -> int:
        return len(self.images)


#: The annotation fields of ``export_coco``'s file: standard COCO, the score and expression.
_EXPORTED = ("segmentation", "area", "bbox", "iscrowd", "score", "expression")


def export_coco(folder: str | Path, path: Path) -> int:
    """A finished pseudo-mask folder as one COCO instances file (``tseg.coco_masks``): every
    shard's images (``file_name`` the dataset's image file where it has one, else its index)
    and kept pairs, renumbered, the expressions as the categories, without the ignore masks
    (a tseg extension). Returns the number of masks written.

    Raises:
        DatasetError: As ``PseudoMasks`` (no folder, an unfinished run, a bad shard).
    """
    masks = PseudoMasks(folder)  # checks the manifest and every shard
    images, pairs = [], []
    for k in range(masks.manifest["shards"]):
        shard = read_json(shard_path(masks.folder, k), "pseudo-mask shard")
        own: dict[int, list[dict[str, Any]]] = {}
        for a in shard["annotations"]:
            own.setdefault(a["image_id"], []).append({f: a[f] for f in _EXPORTED if f in a})
        for im in shard["images"]:
            images.append({f: im[f] for f in ("id", "file_name", "height", "width")})
            pairs.append(own.get(im["id"], []))
    info = {
        "description": "tseg pseudo masks: categories are the expressions",
        "pseudo_masks": str(masks.folder),
        "threshold": masks.manifest.get("threshold", {}).get("threshold"),
    }
    data = instances(images, pairs, info)
    write_json_atomic(path, data)
    return len(data["annotations"])


class PseudoMaskDataset:
    """The student's training set: ``base``'s images with the pseudo masks in place of its own.

    ``expressions(i)`` are the kept pairs' expressions of image i (an image with none is skipped
    by the training set), ``masks(i)`` their foreground and ``ignore(i)`` the pixels the loss
    leaves out. ``base.masks`` is never called: the student sees no ground truth.

    Raises:
        DatasetError: the folder was made for other data (names the first difference), other
            images, or other expressions.
    """

    def __init__(self, base: Any, cfg: DataConfig, split: str = "train") -> None:
        self.base = base
        self.store = PseudoMasks(cfg.pseudo_masks)
        where = f"pseudo masks '{self.store.folder}'"
        made_for = self.store.manifest["data"]
        diff = first_difference(made_for, identity(cfg, split))
        if diff is not None:
            raise DatasetError(f"{where} were made for other data: {diff}")
        n = self.store.manifest["images"]
        if n > len(base):
            raise DatasetError(f"{where} cover {n} images; the dataset has only {len(base)}")
        for i in range(n):
            if i not in self.store.images:
                raise DatasetError(f"{where} have no entry for image {i}")
            own = self.store.images[i][0]
            if own != base.expressions(i):
                raise DatasetError(
                    f"{where}: image {i} had the expressions {own[:3]!r}... when they were made, "
                    f"the dataset's image {i} has {base.expressions(i)[:3]!r}...: other images"
                )
        self.n = n

    def __len__(self) -> int:
        return self.n

    def image(self, idx: int) -> np.ndarray:
        return self.base.image(idx)

    def expressions(self, idx: int) -> list[str]:
        return [p[0] for p in self.store.images[idx][1]]

    def _decoded(self, idx: int, which: int) -> np.ndarray:
        pairs = self.store.images[idx][1]
        image = self.base.image(idx)
        h, w = image.shape[:2]
        out = np.zeros((len(pairs), h, w), dtype=bool)
        for j, p in enumerate(pairs):
            if p[which] is None:
                continue
            m = decode(p[which])
            if m.shape != (h, w):
                raise DatasetError(
                    f"pseudo masks '{self.store.folder}': image {idx}'s mask is {m.shape[0]} x "
                    f"{m.shape[1]}, the image {h} x {w}"
                )
            out[j] = m
        return out

    def masks(self, idx: int) -> np.ndarray:
        """Bool [K, H, W]: the pseudo foreground of each kept expression."""
        return self._decoded(idx, 1)

    def ignore(self, idx: int) -> np.ndarray:
        """Bool [K, H, W]: pixels whose pseudo label is uncertain."""
        return self._decoded(idx, 2)

    def scores(self, idx: int) -> list[float]:
        return [p[3] for p in self.store.images[idx][1]]
