"""``tseg data check phrasecut``: the refer files of each split, the image list and the images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tseg.data.base import DatasetError
from tseg.data.check.published import paper_report
from tseg.data.check.report import CheckOptions, CheckReport, compare, list_paths
from tseg.data.files import load_json
from tseg.data.paper import phrasecut

__all__ = ["check_phrasecut"]

_GET_PHRASECUT = (
    "clone https://github.com/ChenyunWu/PhraseCutDataset and run 'python download_dataset.py' "
    "(-s val for one split); it fills data/VGPhraseCut_v0/, the folder to use as root"
)


def _check_phrasecut(
    report: CheckReport,
    root: Path,
    image_dir: Path,
    splits: list[str],
    check_images: bool,
    strict_polygons: bool,
) -> None:
    info_file = phrasecut.image_info_path(root)
    info: dict[int, dict[str, Any]] = {}
    if not info_file.is_file():
        report.add_missing(info_file, _GET_PHRASECUT)
    else:
        try:
            data = load_json(info_file)
            if not isinstance(data, list):
                raise DatasetError(f"{info_file}: expected a list of images")
            info = {
                d["image_id"]: d
                for d in data
                if isinstance(d, dict) and isinstance(d.get("image_id"), int)
            }
        except DatasetError as e:
            report.problems.append(f"{e}\n    -> {_GET_PHRASECUT}")
    if not image_dir.is_dir():
        report.add_missing(image_dir, _GET_PHRASECUT, "folder")

    for split in splits:
        path = phrasecut.refer_path(root, split)
        if not path.is_file():
            report.add_missing(path, _GET_PHRASECUT)
            continue
        try:
            data = load_json(path)
            if not isinstance(data, list):
                raise DatasetError(f"{path}: expected a list of tasks")
            image_ids: set[int] = set()
            short, short_tasks = 0, []
            for i, raw in enumerate(data):
                image_id, task = phrasecut.PhraseCutDataset._parse_task(raw, i, path)
                image_ids.add(image_id)
                n = phrasecut.short_polygons(task.polygons)
                if n:
                    short += n
                    short_tasks.append(task.task_id)
        except DatasetError as e:
            report.problems.append(f"{e}\n    -> re-download it: {_GET_PHRASECUT}")
            continue
        report.counts[split] = {"tasks": len(data), "images": len(image_ids)}
        compare(report, split, "the PhraseCut README", _GET_PHRASECUT)
        if short:
            # The loader's rule (data.phrasecut_strict_polygons): refused when strict.
            text = (
                f"{path}: {short:,} polygons of {len(short_tasks):,} tasks have fewer than "
                f"{phrasecut.MIN_POLYGON_POINTS} points (e.g. task {short_tasks[0]!r})"
            )
            if strict_polygons:
                report.problems.append(
                    f"{text}; the loader refuses them\n    -> set "
                    "data.phrasecut_strict_polygons=false to rasterise them as the official "
                    "tools do (fewer than 2 points skipped, 2 drawn as a line)"
                )
            else:
                report.warnings.append(
                    f"{text}; rasterised as the official tools do "
                    "(data.phrasecut_strict_polygons=false)"
                )
        if info:
            absent = sorted(image_ids - set(info))
            if absent:
                report.problems.append(
                    f"{info_file}: {len(absent):,} images of {path.name} are not listed "
                    f"(e.g. image_id {absent[0]}); use the image_data_split.json of the same release"
                )
            other = [i for i in image_ids if i in info and info[i].get("split") != split]
            if other:
                report.warnings.append(
                    f"{info_file}: {len(other):,} images of {path.name} have another split there"
                )
        if check_images and image_dir.is_dir():
            missing = [image_dir / f"{i}.jpg" for i in sorted(image_ids)]
            missing = [p for p in missing if not p.is_file()]
            if missing:
                report.missing.extend(missing)
                report.problems.append(
                    f"{len(missing):,} images of split {split} are missing: "
                    f"{list_paths(missing)}\n    -> {_GET_PHRASECUT}"
                )


def check_phrasecut(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check phrasecut`` (``opts.splits``, ``opts.strict_polygons``)."""
    root = Path(root)
    report = paper_report(name, root, name, _GET_PHRASECUT)
    if report.ok:
        img = phrasecut.default_image_dir(root) if opts.image_dir is None else Path(opts.image_dir)
        chosen = list(phrasecut.SPLITS) if opts.splits is None else opts.splits
        for s in chosen:
            phrasecut.parse_splits(s)
        _check_phrasecut(report, root, img, chosen, opts.check_images, opts.strict_polygons)
    return report
