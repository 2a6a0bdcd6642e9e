"""Check a dataset folder before training: layout, counts, and what to fix (``tseg data check``).

``check_dataset(name, root)`` looks for every file a loader needs, counts images,
annotations and expressions per split, compares them with the published numbers, and
returns a ``CheckReport`` whose ``format()`` tells a new user which file is missing or
wrong, where it should be and where to get it. It never raises for a broken dataset
(only for an unknown dataset name); every problem ends up in the report.

One rule for every dataset: a count that differs from the published one is a problem
(``tseg data check`` exits 1), never only a warning. The difference means an incomplete
download or files of another release, and either way the results will not be comparable
with the papers'; a check run before a long training must say so in its exit status, which
is what scripts read. The published numbers are therefore the ones the files hold.

Each registered dataset with a check (``tseg.data.registry``) points at its check function:
the paper's datasets in ``refcoco`` (RefCOCO*, gRefCOCO), ``phrasecut`` and ``voc`` with their
published counts in ``published``, a user's own formats in ``own``; the report and its wording
in ``report``. ``check_dataset`` dispatches on the registry.
"""

from __future__ import annotations

import os

from tseg.data.base import DatasetError
from tseg.data.check.published import EXPECTED
from tseg.data.check.report import CheckOptions, CheckReport
from tseg.data.paths import resolve_under
from tseg.data.registry import DATASETS
from tseg.data.registry import names as registry_names

__all__ = ["EXPECTED", "CheckOptions", "CheckReport", "check_dataset"]


def check_dataset(
    name: str,
    root: str | os.PathLike[str],
    *,
    split_by: str | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    splits: list[str] | None = None,
    check_images: bool = True,
    strict_polygons: bool = True,
    text_column: str = "",
) -> CheckReport:
    """Check the files of dataset ``name`` under ``root``: the registry's check of ``name``.

    Args:
        name: A registered dataset with a check: ``refcoco``, ``refcoco+``, ``refcocog``,
            ``grefcoco``, ``phrasecut``, ``voc``; a user's own ``imagefolder``,
            ``coco_captions``, ``coco``, ``webdataset``, ``hf`` (``tseg.data.check.own``); or one
            registered later (``tseg.data.registry``).
        root: The folder a loader is given (``refer`` data folder, the folder holding
            ``grefcoco/`` and ``images/``, ``VGPhraseCut_v0``, or the ``VOCdevkit`` folder
            containing ``VOC2012/``); the shard pattern for ``webdataset``.
        split_by: RefCOCO* only: ``unc``, ``umd`` or ``google`` (default per dataset).
        image_dir: RefCOCO* / gRefCOCO / PhraseCut / COCO image folder if not the default
            (relative: to ``root``).
        splits: PhraseCut / VOC / own data: splits to check (default: all).
        check_images: Also check that every image (and VOC label) file exists.
        strict_polygons: PhraseCut only: the loader's ``data.phrasecut_strict_polygons``;
            polygons of fewer than 3 points are problems when True, warnings when False.
        text_column: hf only: ``data.text_column`` ("" = found by name).

    Returns:
        The report; ``report.ok`` is False when something must be fixed.

    Raises:
        DatasetError: Unknown dataset name or splitBy (nothing else).
    """
    # relative to the dataset folder, as the loaders resolve data.image_dir
    image_dir = resolve_under(root, image_dir) if image_dir else None
    spec = DATASETS.get(name)
    if spec is None or spec.check is None:
        names = ", ".join(registry_names(checked=True))
        raise DatasetError(f"unknown dataset {name!r}; expected one of {names}")
    opts = CheckOptions(split_by, image_dir, splits, check_images, strict_polygons, text_column)
    return spec.check(name, root, opts)
