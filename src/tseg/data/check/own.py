"""``tseg data check`` for a user's own data: imagefolder, coco_captions, coco, webdataset, hf.

Each check reads everything the loader reads, but does not stop at the first problem: it
counts images and expressions per split and, per kind of problem (a missing metadata or
annotation file, rows naming missing images, unreadable images, empty or non-string
expressions, annotations naming unknown images), how many there are with the first few
examples (file and line, annotation, or shard and key). Each ``check_<format>(name, root,
options)`` is the registry's check of its format (``tseg.data.registry``) and returns the
``CheckReport`` of ``tseg.data.check``; ``report.ok`` is False when the loader would refuse the
data (or, for ``webdataset``, when every sample of a shard is bad).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tseg.data.base import DatasetError
from tseg.data.check.report import CheckOptions, CheckReport, Problems
from tseg.data.files import read_rgb
from tseg.data.own.coco import missing_image
from tseg.data.own.coco_layout import CocoSource
from tseg.data.own.weak import RecordError

__all__ = ["check_coco", "check_coco_captions", "check_hf", "check_imagefolder", "check_webdataset"]

_IMAGEFOLDER_HINT = (
    "an ImageFolder split holds images and a metadata.jsonl (or .csv, .parquet) with a 'file_name' "
    "column (relative to the metadata file) and 'expressions' (a list) or 'text' / 'caption'"
)


def _check_image(path: Any, where: str, problems: Problems, size: Any = None) -> None:
    try:
        read_rgb(path, size=size, where=where)
    except DatasetError as e:
        problems.add("unreadable image", str(e))


# --------------------------------------------------------------------------- imagefolder


def _check_imagefolder(
    report: CheckReport, root: Path, splits: list[str] | None, images: bool
) -> None:
    from tseg.data.own import imagefolder

    if splits is None:
        present = [s for s in imagefolder.SPLIT_FOLDERS if _split_dir(root, s) is not None]
        splits = present or ["train"]
    for split in splits:
        try:
            folder = imagefolder.split_folder(root, split)
            metas = imagefolder.find_metadata(folder)
        except DatasetError as e:
            report.problems.append(f"{e}\n    -> {_IMAGEFOLDER_HINT}")
            continue
        problems = Problems()
        by_image: dict[Path, int] = {}
        rows = 0
        for meta in metas:
            try:
                for row in imagefolder.iter_rows(meta):
                    rows += 1
                    try:
                        path, exprs = imagefolder.parse_row(row)
                    except RecordError as e:
                        problems.add(e.kind, str(e))
                        continue
                    by_image[path] = by_image.get(path, 0) + len(exprs)
            except DatasetError as e:
                report.problems.append(str(e))
        if images:
            for path in by_image:
                _check_image(path, str(path), problems)
        report.counts[split] = {
            "metadata files": len(metas),
            "rows": rows,
            "images": len(by_image),
            "expressions": sum(by_image.values()),
        }
        problems.report(report, split)


def _split_dir(root: Path, split: str) -> Path | None:
    from tseg.data.own.imagefolder import SPLIT_FOLDERS

    return next((root / n for n in SPLIT_FOLDERS[split] if (root / n).is_dir()), None)


# --------------------------------------------------------------------------- COCO


def _coco_files(
    report: CheckReport,
    root: Path,
    kind: str,
    splits: list[str] | None,
    image_dir: str | None,
    annotations: str | None,
) -> Iterator[CocoSource]:
    """The ``CocoSource`` of each split asked for (default: every split found, in any layout of
    ``tseg.data.own.coco_layout``); what is missing goes into the report."""
    from tseg.data.own.coco_layout import coco_source, coco_sources

    try:
        found = coco_sources(root, kind, annotations, image_dir) if splits is None else []
        if splits is None and not found:  # raises what is there and what is expected
            coco_source(root, kind, "<split>", annotations, image_dir)
    except DatasetError as e:
        report.problems.append(str(e))
        report.missing.append(root / "annotations" / f"{kind}_<split>.json")
        return
    yield from found
    for split in splits or []:
        try:
            yield coco_source(root, kind, split, annotations, image_dir)
        except DatasetError as e:
            report.problems.append(str(e))
            report.missing.append(root / "annotations" / f"{kind}_{split}.json")


def _check_coco_captions(
    report: CheckReport,
    root: Path,
    splits: list[str] | None,
    image_dir: str | None,
    images: bool,
    annotations: str | None = None,
) -> None:
    from tseg.data.own.coco_captions import read_captions

    for src in _coco_files(report, root, "captions", splits, image_dir, annotations):
        split, path = src.split, src.json_path
        try:
            by_id, captions, bad = read_captions(path, src.image_dirs)
        except DatasetError as e:
            report.problems.append(str(e))
            continue
        problems = Problems()
        for e in bad:
            problems.add(e.kind, str(e))
        for image_id in captions:
            im = by_id[image_id]
            if not im.path.is_file():
                problems.add("missing image", f"{path}: image id {image_id}: {missing_image(im)}")
            elif images:
                size = (im.height, im.width) if im.height is not None else None
                _check_image(im.path, str(im.path), problems, size)
        for image_id in sorted(set(by_id) - set(captions)):
            problems.add("image without a caption", f"{path}: image id {image_id}")
        report.counts[split] = {
            "images": len(captions),
            "expressions": sum(len(c) for c in captions.values()),
        }
        problems.report(report, split, as_warning=("image without a caption",))


def _check_coco(
    report: CheckReport,
    root: Path,
    splits: list[str] | None,
    image_dir: str | None,
    images: bool,
    annotations: str | None = None,
) -> None:
    from tseg.data.own.coco import index_images, load_coco_json
    from tseg.data.paper.refcoco import decode_segmentation

    for src in _coco_files(report, root, "instances", splits, image_dir, annotations):
        split, path = src.split, src.json_path
        try:
            data = load_coco_json(path, ("images", "annotations", "categories"))
            by_id = index_images(data["images"], path, src.image_dirs, True)
        except DatasetError as e:
            report.problems.append(str(e))
            continue
        names = {c.get("id"): c.get("name") for c in data["categories"] if isinstance(c, dict)}
        problems = Problems()
        used: dict[int, set[Any]] = {}
        for i, ann in enumerate(data["annotations"]):
            where = f"{path}: annotations[{i}]"
            if not isinstance(ann, dict):
                problems.add("malformed record", f"{where} is not an object")
                continue
            where += f" (id {ann.get('id')!r})"
            image_id, cat = ann.get("image_id"), ann.get("category_id")
            if not isinstance(image_id, int) or image_id not in by_id:
                problems.add("unknown image", f"{where}: image_id {image_id!r}")
                continue
            if not isinstance(cat, int) or cat not in names:
                problems.add("unknown category", f"{where}: category_id {cat!r}")
                continue
            used.setdefault(image_id, set()).add(cat)
            if images:
                im = by_id[image_id]
                try:
                    decode_segmentation(ann.get("segmentation"), im.height, im.width, where=where)
                except DatasetError as e:
                    problems.add("bad segmentation", str(e))
        for image_id in used:
            im = by_id[image_id]
            if not im.path.is_file():
                problems.add("missing image", f"{path}: image id {image_id}: {missing_image(im)}")
            elif images:
                _check_image(im.path, str(im.path), problems, (im.height, im.width))
        report.counts[split] = {
            "images": len(used),
            "categories": len(names),
            "expressions": sum(len(c) for c in used.values()),
            "instances": len(data["annotations"]),
        }
        problems.report(report, split)


# --------------------------------------------------------------------------- webdataset


def _check_webdataset(report: CheckReport, pattern: str, images: bool) -> None:
    from tseg.data.own.shards import (
        IMAGE_SUFFIXES,
        decode_sample,
        expand_shards,
        read_shard,
        sample_text,
    )

    try:
        urls = expand_shards(pattern)
    except DatasetError as e:
        report.problems.append(str(e))
        return
    problems = Problems()
    samples = expressions = 0
    for url in urls:
        errors: list[str] = []
        good = 0
        for key, files in read_shard(url, errors):
            samples += 1
            where = f"{url}: {key}"
            try:
                if images:
                    exprs = decode_sample(files, where)[1]
                else:
                    exprs = sample_text(files, where)
                    if not any(s in files for s in IMAGE_SUFFIXES):
                        raise RecordError(f"{where}: no image", "missing image")
            except RecordError as e:
                problems.add(e.kind, str(e))
                continue
            good += 1
            expressions += len(exprs)
        for e in errors:
            problems.add("unreadable shard", e)
        if good == 0:
            report.problems.append(f"{url}: no good sample (a stream epoch would fail on it alone)")
    report.counts["shards"] = {"shards": len(urls), "samples": samples, "expressions": expressions}
    # A stream skips a bad sample and counts it: here it is reported, as a warning.
    problems.report(report, "shards", as_warning=tuple(problems.counts))


# --------------------------------------------------------------------------- Hugging Face


def _check_hf(
    report: CheckReport, root: str, splits: list[str] | None, images: bool, text_column: str
) -> None:
    from tseg.data.own.hf import (
        hf_columns,
        load_hf_splits,
        pick_split,
        read_cell,
        require_datasets,
        row_expressions,
    )

    try:
        found = load_hf_splits(root)
    except DatasetError as e:
        report.problems.append(str(e))
        return
    names = [s or "train" for s in found] if splits is None else splits
    for split in names:
        try:
            split, ds = pick_split(found, split, root)
            where = f"{root} [{split}]"
            image_col, text_col, mask_col = hf_columns(ds.features, where, text_column)
        except DatasetError as e:
            report.problems.append(str(e))
            continue
        problems = Problems()
        expressions = 0
        for i, value in enumerate(ds.select_columns([text_col])[text_col]):
            try:
                expressions += len(row_expressions(value, f"{where} row {i}: '{text_col}'"))
            except RecordError as e:
                problems.add(e.kind, str(e))
        if images:
            undecoded = require_datasets().Image(decode=False)
            for i, cell in enumerate(ds.cast_column(image_col, undecoded)[image_col]):
                try:
                    read_cell(cell, f"{where} row {i}: '{image_col}'")
                except DatasetError as e:
                    problems.add("unreadable image", str(e))
        report.counts[split] = {"images": len(ds), "expressions": expressions}
        report.notes.append(
            f"{split}: columns image={image_col!r}, text={text_col!r}, "
            + (f"mask={mask_col!r}" if mask_col else "no mask column (training only)")
        )
        problems.report(report, split)


def _folder_report(
    name: str, root: str | os.PathLike[str], coco: bool = False
) -> tuple[CheckReport, Path, str | None]:
    """(report, dataset folder, COCO file or None): a ``coco`` / ``coco_captions`` root may be
    the COCO file itself; the report is not ``ok`` when the folder is missing."""
    report = CheckReport(name, Path(root))  # named as given, the file when it is one
    annotations = None
    if coco and Path(root).is_file():  # the COCO file itself
        annotations, root = str(root), str(Path(root).parent)
    if not Path(root).is_dir():
        report.add_missing(Path(root), "root is the dataset folder (data.root)", "folder")
    return report, Path(root), annotations


def check_imagefolder(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check imagefolder``: every split folder found (or ``opts.splits``)."""
    report, folder, _ = _folder_report(name, root)
    if report.ok:
        _check_imagefolder(report, folder, opts.splits, opts.check_images)
    return report


def check_coco_captions(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check coco_captions``: a folder in any COCO layout, or the file itself."""
    report, folder, annotations = _folder_report(name, root, coco=True)
    if report.ok:
        args = (opts.splits, opts.image_dir, opts.check_images, annotations)
        _check_coco_captions(report, folder, *args)
    return report


def check_coco(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check coco``: a folder in any COCO layout, or the file itself; with
    ``opts.check_images`` every segmentation is decoded too."""
    report, folder, annotations = _folder_report(name, root, coco=True)
    if report.ok:
        _check_coco(report, folder, opts.splits, opts.image_dir, opts.check_images, annotations)
    return report


def check_webdataset(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check webdataset PATTERN``: ``root`` is the shard pattern (``data.shards``)."""
    report = CheckReport(name, Path(root))
    _check_webdataset(report, str(root), opts.check_images)
    return report


def check_hf(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check hf ROOT``: what ``data.root`` names (a folder, a parquet glob or a
    cached dataset name, ``tseg.data.own.hf``), with ``opts.text_column``."""
    report = CheckReport(name, Path(root))
    _check_hf(report, str(root), opts.splits, opts.check_images, opts.text_column)
    return report
