"""Where a COCO file and its images are: the official layout, the annotation tools' exports, or one file.

``coco_source(root, kind, split)`` answers, for ``data.dataset=coco`` (``kind="instances"``) and
``coco_captions`` (``kind="captions"``), which JSON file holds ``split`` and in which folders an
image's ``file_name`` is looked up (the first folder holding it wins). Looked for in this order:

=================  ==============================================  ================================
layout             annotation file                                 ``file_name`` looked up in
=================  ==============================================  ================================
``data.annotations``  that file (any split)                        its folder
COCO, CVAT 1.0     ``annotations/<kind>_<split>.json``             ``<split>/``, ``images/<split>/``,
                   (CVAT: ``instances_default.json``)              ``images/``
Roboflow           ``<split>/_annotations.coco.json``              ``<split>/`` (``val``: ``valid/``)
labelme2coco       ``annotations.json`` (any split)                the root, ``JPEGImages/``
Label Studio       ``result.json`` (any split)                     the root, ``images/``
=================  ==============================================  ================================

``data.image_dir``, when set, is looked in after those places. The tool layouts hold instances
(the tools export no captions). A layout that holds one file (labelme2coco, Label Studio, CVAT's
``default`` subset alone, ``data.annotations``) answers every split name with it; the other layouts' splits are their
file or folder names. Relative ``data.annotations`` and ``data.image_dir`` are relative to
``data.root`` (``tseg.data.paths.resolve_under``), as every folder key of ``data`` is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tseg.data.base import DatasetError

__all__ = ["CocoSource", "coco_source", "coco_sources"]

#: Roboflow's split folders (its export names validation ``valid``).
ROBOFLOW_FILE = "_annotations.coco.json"
_ROBOFLOW_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "valid": ("valid", "val", "validation"),
    "test": ("test",),
}
#: Layouts of one file: (file under root, image folders under root, tool).
_SINGLE_FILES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("annotations.json", ("", "JPEGImages"), "labelme2coco"),
    ("result.json", ("", "images"), "Label Studio"),
)
_EXPECTED = (
    "annotations/{kind}_<split>.json with <split>/ or images/ (COCO, CVAT 'COCO 1.0'), "
    "<split>/_annotations.coco.json (Roboflow), annotations.json + JPEGImages/ (labelme2coco), "
    "result.json + images/ (Label Studio), or data.annotations=FILE (--annotations FILE)"
)


@dataclass(frozen=True)
class CocoSource:
    """One split of a COCO dataset: its file, where its images are looked up, and its layout."""

    split: str
    json_path: Path
    image_dirs: tuple[Path, ...]
    layout: str


def _with_image_dir(dirs: list[Path], image_dir: str | None) -> tuple[Path, ...]:
    return tuple(dict.fromkeys([*dirs, *([Path(image_dir)] if image_dir else [])]))


def _official(root: Path, kind: str, split: str, image_dir: str | None) -> CocoSource:
    path = root / "annotations" / f"{kind}_{split}.json"
    dirs = [root / split, root / "images" / split, root / "images"]
    layout = "CVAT" if split == "default" else "COCO"
    return CocoSource(split, path, _with_image_dir(dirs, image_dir), layout)


def coco_sources(
    root: str | os.PathLike[str],
    kind: str,
    annotations: str | None = None,
    image_dir: str | None = None,
) -> list[CocoSource]:
    """Every split found under ``root`` (or the one file ``annotations``), in the order above.

    Raises:
        DatasetError: Nothing found: one message says what ``root`` holds and what is expected.
    """
    root = Path(root)
    if annotations:
        path = Path(annotations)
        if path.is_dir():
            raise DatasetError(f"{path}: a folder; data.annotations names a COCO JSON file")
        return [CocoSource(path.stem, path, _with_image_dir([path.parent], image_dir), "file")]
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found (data.root of a COCO dataset)")
    found = sorted((root / "annotations").glob(f"{kind}_*.json"))
    out = [_official(root, kind, p.stem.removeprefix(f"{kind}_"), image_dir) for p in found]
    if kind != "instances" or out:
        return out
    for name in sorted(_ROBOFLOW_SPLITS):
        folder = next((root / n for n in _ROBOFLOW_SPLITS[name] if (root / n).is_dir()), None)
        if folder is not None and (folder / ROBOFLOW_FILE).is_file():
            dirs = _with_image_dir([folder], image_dir)
            out.append(CocoSource(folder.name, folder / ROBOFLOW_FILE, dirs, "Roboflow"))
    if out:
        return out
    for file, dirs, tool in _SINGLE_FILES:
        if (root / file).is_file():
            places = _with_image_dir([root / d for d in dirs], image_dir)
            return [CocoSource(Path(file).stem, root / file, places, tool)]
    return out


def _found(root: Path) -> str:
    """What ``root`` holds, shortly: its JSON files (two levels) and folders."""
    if not root.is_dir():
        return "nothing (no such folder)"
    jsons = sorted(str(p.relative_to(root)) for p in [*root.glob("*.json"), *root.glob("*/*.json")])
    dirs = sorted(f"{p.name}/" for p in root.iterdir() if p.is_dir())
    shown = (jsons[:6] + (["..."] if len(jsons) > 6 else [])) + dirs[:6]
    return ", ".join(shown) if shown else "nothing"


def coco_source(
    root: str | os.PathLike[str],
    kind: str,
    split: str,
    annotations: str | None = None,
    image_dir: str | None = None,
) -> CocoSource:
    """The file and image folders of ``split`` (module docstring for the layouts).

    Raises:
        DatasetError: No layout holds ``split``: the message names the file looked for, the
            splits that exist or what the folder holds, and the layouts expected.
    """
    root = Path(root)
    official = _official(root, kind, split, image_dir)
    if not annotations and official.json_path.is_file():
        return official
    sources = coco_sources(root, kind, annotations, image_dir)
    # One file (CVAT's "default" subset: a task without subsets) answers every split name.
    if len(sources) == 1 and sources[0].layout in ("file", "CVAT", "labelme2coco", "Label Studio"):
        return sources[0]
    for src in sources:
        if (
            src.split == split
            or src.layout == "Roboflow"
            and _roboflow_name(split) == _roboflow_name(src.split)
        ):
            return src
    if sources:
        names = ", ".join(s.split for s in sources)
        raise DatasetError(
            f"{official.json_path}: file not found; {root} holds the splits {names} "
            f"({sources[0].layout} layout): set data.train_split / data.val_split (--split) to one"
        )
    raise DatasetError(
        f"{official.json_path}: file not found; {root} holds {_found(root)}; expected "
        + _EXPECTED.format(kind=kind)
    )


def _roboflow_name(split: str) -> str:
    return next((k for k, v in _ROBOFLOW_SPLITS.items() if split in v), split)
