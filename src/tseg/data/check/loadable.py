"""``tseg data check`` for any registered dataset, by loading it: the check a new dataset gets
without writing one (docs/extending.md).

``check_loadable`` builds each split through the registry (``data.root`` = the folder given)
and reads every item as training and evaluation would: the image (uint8 RGB), the expressions
(a list of non-empty strings) and, unless the dataset is weak, the masks (boolean, one per
expression, of the image's size). It counts images and expressions per split; a split that
does not build, and each kind of bad item (with its count and first few images), is a problem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError
from tseg.data.check.report import CheckOptions, CheckReport, Problems
from tseg.data.registry import get

__all__ = ["check_loadable"]


def _item_problem(ds: Any, i: int, exprs: Any, weak: bool, images: bool) -> tuple[str, str] | None:
    """(kind, message) of what is wrong with item ``i`` (its expressions ``exprs``), or None."""
    if not isinstance(exprs, list) or not exprs:
        return "no expressions", f"image {i}: expressions() gave {exprs!r}"
    if not all(isinstance(e, str) and e.strip() for e in exprs):
        return "bad expression", f"image {i}: an expression is empty or not a string: {exprs!r}"
    if not images:
        return None
    image = ds.image(i)
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
        return "bad image", f"image {i}: not a uint8 [H, W, 3] array"
    if image.shape[2] != 3:
        return "bad image", f"image {i}: {image.shape[2]} channels, not 3"
    if weak:
        return None
    masks = ds.masks(i)
    want = (len(exprs), *image.shape[:2])
    if not isinstance(masks, np.ndarray) or masks.dtype != np.bool_ or masks.shape != want:
        got = getattr(masks, "shape", type(masks).__name__), getattr(masks, "dtype", "")
        return "bad masks", f"image {i}: masks {got[0]} {got[1]}, expected bool {want}"
    return None


def _check_split(report: CheckReport, ds: Any, split: str, weak: bool, images: bool) -> None:
    problems = Problems()
    expressions = 0
    for i in range(len(ds)):
        try:
            exprs = ds.expressions(i)
            problem = _item_problem(ds, i, exprs, weak, images)
            expressions += len(exprs) if problem is None else 0
        except DatasetError as e:
            problem = "unreadable item", f"image {i}: {e}"
        if problem is not None:
            problems.add(*problem)
    report.counts[split] = {"images": len(ds), "expressions": expressions}
    problems.report(report, split)


def check_loadable(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """Check dataset ``name`` at ``root`` by building its splits (``opts.splits``, default
    train and val) and reading every item (images and masks too with ``opts.check_images``)."""
    spec = get(name)
    report = CheckReport(name, Path(root))
    cfg = DataConfig(
        dataset=name, root=str(root), image_dir=opts.image_dir or "", text_column=opts.text_column
    )
    for split in opts.splits or ["train", "val"]:
        try:
            ds = spec.build(cfg, split)
        except DatasetError as e:
            report.problems.append(f"{split}: {e}")
            continue
        _check_split(report, ds, split, spec.weak, opts.check_images)
    return report
