"""``tseg data check voc``: Pascal VOC 2012 and the SBD-augmented training list."""

from __future__ import annotations

import os
from pathlib import Path

from tseg.data.base import DatasetError
from tseg.data.check.published import paper_report
from tseg.data.check.report import CheckOptions, CheckReport, compare, list_paths
from tseg.data.paper import voc

__all__ = ["check_voc"]

_GET_VOC = (
    "download VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/) "
    "and extract it; root is the VOCdevkit folder that contains VOC2012/"
)
_GET_SBD = (
    "SegmentationClassAug/ and train_aug.txt are the SBD annotations (Hariharan et al. 2011, "
    "http://home.bharathh.info/pubs/codes/SBD/download.html) converted to PNG, as distributed "
    "with DeepLab-style WSSS code; put them under {voc}"
)


def _check_voc(report: CheckReport, root: Path, splits: list[str], check_images: bool) -> None:
    voc_dir = root / "VOC2012"
    if not voc_dir.is_dir():
        report.add_missing(voc_dir, _GET_VOC, "folder")
        return
    jpeg_dir = voc_dir / "JPEGImages"
    if not jpeg_dir.is_dir():
        report.add_missing(jpeg_dir, _GET_VOC, "folder")
    ids_by_split: dict[str, list[str]] = {}
    for split in splits:
        list_file = voc.split_list_path(root, split)
        label_dir = voc.default_label_dir(root, split)
        hint = _GET_SBD.format(voc=voc_dir) if split == "train_aug" else _GET_VOC
        if not list_file.is_file():
            if split == "trainval":  # optional: no loader default needs it
                continue
            report.add_missing(list_file, hint)
            continue
        if not label_dir.is_dir() and label_dir not in report.missing:
            report.add_missing(label_dir, hint, "folder")
        try:
            ids = voc.read_id_list(list_file)
        except DatasetError as e:
            report.problems.append(str(e))
            continue
        ids_by_split[split] = ids
        report.counts[split] = {"images": len(ids)}
        compare(report, split, "VOC 2012 and SBD", hint)
        if not check_images:
            continue
        missing = [jpeg_dir / f"{i}.jpg" for i in ids if not (jpeg_dir / f"{i}.jpg").is_file()]
        if label_dir.is_dir():
            missing += [
                label_dir / f"{i}.png" for i in ids if not (label_dir / f"{i}.png").is_file()
            ]
            if ids and (label_dir / f"{ids[0]}.png").is_file():
                try:
                    voc.read_label_png(label_dir / f"{ids[0]}.png")
                except DatasetError as e:
                    report.problems.append(f"{e}\n    -> {hint}")
        if missing:
            report.missing.extend(missing)
            report.problems.append(
                f"{len(missing):,} files of split {split} are missing: {list_paths(missing)}"
                f"\n    -> {hint}"
            )
    train = set(ids_by_split.get("train_aug", [])) | set(ids_by_split.get("train", []))
    leak = sorted(train & set(ids_by_split.get("val", [])))
    if leak:
        report.problems.append(
            f"{len(leak):,} val images are also in a training list (e.g. {leak[0]}); "
            "train_aug must exclude the VOC val images"
        )


def check_voc(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check voc`` (``opts.splits``)."""
    root = Path(root)
    report = paper_report(name, root, name, _GET_VOC)
    if report.ok:
        chosen = list(voc.SPLITS) if opts.splits is None else opts.splits
        for s in chosen:
            if s not in voc.SPLITS:
                raise DatasetError(f"unknown VOC split {s!r}; valid: {', '.join(voc.SPLITS)}")
        _check_voc(report, root, chosen, opts.check_images)
    return report
