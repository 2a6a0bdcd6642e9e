"""``tseg data check`` for RefCOCO, RefCOCO+, RefCOCOg and gRefCOCO: the refs, the COCO instances
and the COCO images they point to."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tseg.data.base import DatasetError
from tseg.data.check.published import paper_report
from tseg.data.check.report import CheckOptions, CheckReport, compare, list_paths
from tseg.data.files import join_inside, load_json
from tseg.data.paper import grefcoco, refcoco
from tseg.data.safe_pickle import load_pickle

__all__ = ["check_grefcoco", "check_refcoco"]

_GET_REFER = (
    "download {zip} (the 'refer' toolkit, https://github.com/lichengunc/refer, data/README.md: "
    "http://bvisionweb1.cs.unc.edu/licheng/referit/data/{zip}) and unzip it into {root}"
)
_GET_COCO = (
    "download COCO train2014 (http://images.cocodataset.org/zips/train2014.zip) and unzip it "
    "so that {dir}/COCO_train2014_000000000009.jpg exists (or pass image_dir=...)"
)
_GET_GREFCOCO = (
    "download gRefCOCO (the OneDrive / Google Drive links in the README of "
    "https://github.com/henghuiding/gRefCOCO) and put grefs(unc).json and instances.json in "
    "{dir}; root is the folder holding grefcoco/ and images/"
)


def _check_refcoco(
    report: CheckReport,
    dataset: str,
    root: Path,
    split_by: str,
    image_dir: Path,
    check_images: bool,
) -> None:
    zip_name = {"refcoco": "refcoco.zip", "refcoco+": "refcoco+.zip", "refcocog": "refcocog.zip"}
    get_refer = _GET_REFER.format(zip=zip_name[dataset], root=root)
    refs_file = refcoco.refs_path(root, dataset, split_by)
    inst_file = refcoco.instances_path(root, dataset)
    for path in (refs_file, inst_file):
        if not path.is_file():
            report.add_missing(path, get_refer)
    if not image_dir.is_dir():
        report.add_missing(image_dir, _GET_COCO.format(dir=image_dir), "folder")
    if not refs_file.is_file():
        return

    try:
        refs = load_pickle(refs_file)
        if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
            raise DatasetError(f"{refs_file}: expected a list of ref dicts")
        for r in refs:
            for key, kind in (
                ("split", str),
                ("image_id", int),
                ("ann_id", int),
                ("sentences", list),
            ):
                if not isinstance(r.get(key), kind) or isinstance(r.get(key), bool):
                    raise DatasetError(
                        f"{refs_file}: ref {r.get('ref_id')!r}: field '{key}' is missing or not "
                        f"a {kind.__name__}"
                    )
    except DatasetError as e:
        report.problems.append(f"{e}\n    -> re-download it: {get_refer}")
        return

    valid = refcoco.VALID_SPLITS[(dataset, split_by)]
    by_split: dict[str, list[dict[str, Any]]] = {}
    for ref in refs:
        by_split.setdefault(str(ref["split"]), []).append(ref)
    for split in [s for s in valid if s in by_split] + sorted(set(by_split) - set(valid)):
        group = by_split[split]
        sentences = sum(len(r["sentences"]) for r in group)
        report.counts[split] = {
            "refs": len(group),
            "images": len({r["image_id"] for r in group}),
            "sentences": sentences,
        }
        if split not in valid:
            report.warnings.append(
                f"{refs_file}: {len(group):,} refs have unexpected split {split!r}"
            )
    for split in valid:
        if split not in by_split:
            report.problems.append(f"{refs_file}: no ref of split {split!r}")
        compare(report, split, "the refer release", get_refer)

    if not inst_file.is_file():
        return
    try:
        inst = load_json(inst_file)
        if not isinstance(inst, dict) or not all(
            isinstance(inst.get(k), list) for k in ("images", "annotations")
        ):
            raise DatasetError(
                f"{inst_file}: expected an object with lists 'images', 'annotations'"
            )
    except DatasetError as e:
        report.problems.append(f"{e}\n    -> re-download it: {get_refer}")
        return
    images = {
        im["id"]: im
        for im in inst["images"]
        if isinstance(im, dict) and isinstance(im.get("id"), int)
    }
    ann_ids = {
        a["id"] for a in inst["annotations"] if isinstance(a, dict) and isinstance(a.get("id"), int)
    }
    no_ann = [r["ann_id"] for r in refs if r["ann_id"] not in ann_ids]
    no_img = sorted({r["image_id"] for r in refs if r["image_id"] not in images})
    if no_ann:
        report.problems.append(
            f"{inst_file}: {len(no_ann):,} refs point to missing annotations (e.g. ann_id "
            f"{no_ann[0]}); refs and instances.json must come from the same zip"
        )
    if no_img:
        report.problems.append(
            f"{inst_file}: {len(no_img):,} images used by refs are missing (e.g. id {no_img[0]})"
        )
    if check_images and image_dir.is_dir():
        ids = {r["image_id"] for r in refs} - set(no_img)
        _check_coco_images(report, images, ids, image_dir, inst_file)


def _check_coco_images(
    report: CheckReport,
    images: dict[int, dict[str, Any]],
    ids: set[int],
    image_dir: Path,
    inst_file: Path,
) -> None:
    """Report the COCO image files of ``ids`` (entries of ``images``) missing in image_dir."""
    missing: list[Path] = []
    for image_id in sorted(ids):
        try:
            path = join_inside(image_dir, images[image_id].get("file_name"), where=str(inst_file))
        except DatasetError as e:
            report.problems.append(str(e))
            continue
        if not path.is_file():
            missing.append(path)
    if missing:
        report.missing.extend(missing)
        report.problems.append(
            f"{len(missing):,} image files are missing: {list_paths(missing)}\n"
            f"    -> {_GET_COCO.format(dir=image_dir)}"
        )


# --------------------------------------------------------------------------- gRefCOCO


def _check_grefcoco(report: CheckReport, root: Path, image_dir: Path, check_images: bool) -> None:
    refs_file, inst_file = grefcoco.grefs_path(root), grefcoco.instances_path(root)
    get = _GET_GREFCOCO.format(dir=refs_file.parent)
    for path in (refs_file, inst_file):
        if not path.is_file():
            report.add_missing(path, get)
    if not image_dir.is_dir():
        report.add_missing(image_dir, _GET_COCO.format(dir=image_dir), "folder")
    if not refs_file.is_file():
        return
    try:
        data = load_json(refs_file)
        if not isinstance(data, list):
            raise DatasetError(f"{refs_file}: expected a list of refs")
        refs = [grefcoco.parse_ref(raw, i, refs_file) for i, raw in enumerate(data)]
    except DatasetError as e:
        report.problems.append(f"{e}\n    -> re-download it: {get}")
        return
    by_split: dict[str, list[tuple[dict[str, Any], tuple[int, ...]]]] = {}
    for ref, targets in refs:
        by_split.setdefault(ref["split"], []).append((ref, targets))
    known = [s for s in grefcoco.SPLITS if s in by_split]
    for split in known + sorted(set(by_split) - set(grefcoco.SPLITS)):
        group = by_split[split]
        report.counts[split] = {
            "refs": len(group),
            "no-target refs": sum(1 for _, t in group if not t),
            "images": len({r["image_id"] for r, _ in group}),
            "sentences": sum(len(r["sentences"]) for r, _ in group),
        }
        if split not in grefcoco.SPLITS:
            report.warnings.append(f"{refs_file}: {len(group):,} refs have unknown split {split!r}")
    for split in ("train", "val"):
        if split not in by_split:
            report.problems.append(f"{refs_file}: no ref of split {split!r}")

    if not inst_file.is_file():
        return
    try:
        inst = refcoco.load_instances(inst_file)
    except DatasetError as e:
        report.problems.append(f"{e}\n    -> re-download it: {get}")
        return
    images = {
        im["id"]: im
        for im in inst["images"]
        if isinstance(im, dict) and isinstance(im.get("id"), int)
    }
    ann_image = {
        a["id"]: a.get("image_id")
        for a in inst["annotations"]
        if isinstance(a, dict) and isinstance(a.get("id"), int)
    }
    no_ann = [(r["ref_id"], a) for r, t in refs for a in t if a not in ann_image]
    wrong = [
        (r["ref_id"], a)
        for r, t in refs
        for a in t
        if a in ann_image and ann_image[a] != r["image_id"]
    ]
    no_img = sorted({r["image_id"] for r, _ in refs if r["image_id"] not in images})
    if no_ann:
        report.problems.append(
            f"{inst_file}: {len(no_ann):,} targets are missing annotations (e.g. ref_id "
            f"{no_ann[0][0]}, ann_id {no_ann[0][1]}); both files must come from the same release"
        )
    if wrong:
        report.problems.append(
            f"{inst_file}: {len(wrong):,} targets belong to another image than their ref "
            f"(e.g. ref_id {wrong[0][0]}, ann_id {wrong[0][1]})"
        )
    if no_img:
        report.problems.append(
            f"{inst_file}: {len(no_img):,} images used by refs are missing (e.g. id {no_img[0]})"
        )
    if check_images and image_dir.is_dir():
        ids = {r["image_id"] for r, _ in refs} - set(no_img)
        _check_coco_images(report, images, ids, image_dir, inst_file)


def check_refcoco(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check`` for refcoco, refcoco+ and refcocog (``opts.split_by``)."""
    root = Path(root)
    split_by = refcoco.check_dataset_args(name, opts.split_by, None)
    report = paper_report(
        f"{name} ({split_by})",
        root,
        f"{name}/{split_by}",
        "root is the 'refer' data folder holding refcoco/, refcoco+/, refcocog/, images/",
    )
    if report.ok:
        img = refcoco.default_image_dir(root) if opts.image_dir is None else Path(opts.image_dir)
        _check_refcoco(report, name, root, split_by, img, opts.check_images)
    return report


def check_grefcoco(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check grefcoco``."""
    root = Path(root)
    get = _GET_GREFCOCO.format(dir=grefcoco.grefs_path(root).parent)
    report = paper_report(name, root, name, get)
    if report.ok:
        img = refcoco.default_image_dir(root) if opts.image_dir is None else Path(opts.image_dir)
        _check_grefcoco(report, root, img, opts.check_images)
    return report
