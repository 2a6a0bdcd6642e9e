"""Check a dataset folder before training: layout, counts, and what to fix.

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

Published numbers:

* RefCOCO / RefCOCO+ (unc), RefCOCOg (umd and google), RefCOCO (google): refs and
  images per split from the TFDS ``ref_coco`` catalogue; RefCOCO (unc) sentences from
  the UNC release (120,624 / 10,834 / 5,657 / 5,095).
* Pascal VOC 2012: 1,464 train, 1,449 val, 2,913 trainval images; 10,582 train_aug
  (SBD-augmented) images.
* gRefCOCO: no per-split numbers are published in its repository, so counts are shown
  without a comparison; the release has train and val (testA / testB came later).
* PhraseCut: the README of the official repository (train 310,816 phrases / 71,746
  images, val 20,316 / 2,971, test 14,354 / 2,545, miniv 821 / 100). Its val figures are
  the whole validation set (the splits add up to its totals, 345,486 / 77,262), but
  ``refer_val.json`` leaves out the 100 ``miniv`` images (as the README says, and as the
  official ``prepare_VGPhraseCut_v0.py`` splits them), so ``val`` is compared with
  20,316 - 821 = 19,495 phrases on 2,971 - 100 = 2,871 images.

Longer than 400 lines because each dataset's check lists, in its own words, every file it
looks for and where to get it; splitting it per dataset would scatter one report's code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tseg.data import grefcoco, phrasecut, refcoco, voc
from tseg.data.base import DatasetError
from tseg.data.files import join_inside, load_json
from tseg.data.paths import resolve_under
from tseg.data.registry import DATASETS
from tseg.data.registry import names as registry_names
from tseg.data.safe_pickle import load_pickle

__all__ = [
    "EXPECTED",
    "CheckOptions",
    "CheckReport",
    "check_dataset",
    "check_grefcoco",
    "check_phrasecut",
    "check_refcoco",
    "check_voc",
]

#: Published counts: {dataset key: {split: {quantity: count}}}.
EXPECTED: dict[str, dict[str, dict[str, int]]] = {
    "refcoco/unc": {
        "train": {"refs": 42404, "images": 16994, "sentences": 120624},
        "val": {"refs": 3811, "images": 1500, "sentences": 10834},
        "testA": {"refs": 1975, "images": 750, "sentences": 5657},
        "testB": {"refs": 1810, "images": 750, "sentences": 5095},
    },
    "refcoco+/unc": {
        "train": {"refs": 42278, "images": 16992},
        "val": {"refs": 3805, "images": 1500},
        "testA": {"refs": 1975, "images": 750},
        "testB": {"refs": 1798, "images": 750},
    },
    "refcocog/umd": {
        "train": {"refs": 42226, "images": 21899},
        "val": {"refs": 2573, "images": 1300},
        "test": {"refs": 5023, "images": 2600},
    },
    "refcoco/google": {
        "train": {"refs": 40000, "images": 19213},
        "val": {"refs": 5000, "images": 4559},
        "test": {"refs": 5000, "images": 4527},
    },
    "refcocog/google": {
        "train": {"images": 24698},
        "val": {"images": 4650},
    },
    "voc": {
        "train": {"images": 1464},
        "val": {"images": 1449},
        "trainval": {"images": 2913},
        "train_aug": {"images": 10582},
    },
    "phrasecut": {
        "train": {"tasks": 310816, "images": 71746},
        "val": {"tasks": 19495, "images": 2871},  # without miniv (module docstring)
        "test": {"tasks": 14354, "images": 2545},
        "miniv": {"tasks": 821, "images": 100},
    },
}

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
_GET_PHRASECUT = (
    "clone https://github.com/ChenyunWu/PhraseCutDataset and run 'python download_dataset.py' "
    "(-s val for one split); it fills data/VGPhraseCut_v0/, the folder to use as root"
)
_GET_VOC = (
    "download VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/) "
    "and extract it; root is the VOCdevkit folder that contains VOC2012/"
)
_GET_SBD = (
    "SegmentationClassAug/ and train_aug.txt are the SBD annotations (Hariharan et al. 2011, "
    "http://home.bharathh.info/pubs/codes/SBD/download.html) converted to PNG, as distributed "
    "with DeepLab-style WSSS code; put them under {voc}"
)

_MAX_LISTED = 5


@dataclass
class CheckReport:
    """Result of ``check_dataset``.

    Attributes:
        dataset: Dataset name (with its splitBy for RefCOCO*).
        root: The folder that was checked.
        problems: What must be fixed before the dataset can be used.
        warnings: What looks unusual but does not prevent loading.
        missing: Every missing file or folder (also described in ``problems``).
        counts: Counts found, ``{split: {quantity: n}}``.
        expected: Published counts, same layout (empty when there is no reference).
    """

    dataset: str
    root: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    expected: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was read, e.g. which columns

    @property
    def ok(self) -> bool:
        """True when there is no problem (warnings allowed)."""
        return not self.problems

    def add_missing(self, path: Path, hint: str, kind: str = "file") -> None:
        """Record a missing file (or folder, ``kind``) as a problem, with how to get it."""
        self.missing.append(path)
        self.problems.append(f"missing {kind} {path}\n    -> {hint}")

    def format(self) -> str:
        """A report a user can act on: counts, then each problem with its fix."""
        status = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines = [f"{self.dataset} at {self.root}: {status}"]
        if self.counts:
            quantities = sorted({q for c in self.counts.values() for q in c})
            lines.append("  " + "split".ljust(10) + "".join(q.rjust(24) for q in quantities))
            for split, counts in self.counts.items():
                cells = []
                for q in quantities:
                    if q not in counts:
                        cells.append("-".rjust(24))
                        continue
                    exp = self.expected.get(split, {}).get(q)
                    cell = f"{counts[q]:,}" + ("" if exp is None else f" (expected {exp:,})")
                    cells.append(cell.rjust(24))
                lines.append("  " + split.ljust(10) + "".join(cells))
            if not self.expected:
                lines.append("  (no published numbers to compare with)")
        lines.extend(f"  {note}" for note in self.notes)
        for title, items in (("Problems", self.problems), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  - {item}" for item in items)
        return "\n".join(lines)


def _compare(report: CheckReport, split: str, source: str, hint: str) -> None:
    """A problem for every count of ``split`` that differs from the published one."""
    fewer, more = [], []
    for quantity, exp in report.expected.get(split, {}).items():
        got = report.counts.get(split, {}).get(quantity)
        if got is not None and got != exp:
            (fewer if got < exp else more).append(f"{got:,} {quantity} (expected {exp:,})")
    if fewer:
        report.problems.append(
            f"{split}: {', '.join(fewer)}, fewer than published ({source}): an incomplete "
            f"download, or files of another release\n    -> {hint}"
        )
    if more:
        report.problems.append(
            f"{split}: {', '.join(more)}, more than published ({source}): files of another "
            f"release or dataset\n    -> {hint}"
        )


def _list_paths(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_MAX_LISTED])
    more = len(paths) - _MAX_LISTED
    return shown + (f" and {more:,} more" if more > 0 else "")


# --------------------------------------------------------------------------- RefCOCO


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
        _compare(report, split, "the refer release", get_refer)

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
            f"{len(missing):,} image files are missing: {_list_paths(missing)}\n"
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


# --------------------------------------------------------------------------- PhraseCut


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
        _compare(report, split, "the PhraseCut README", _GET_PHRASECUT)
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
                    f"{_list_paths(missing)}\n    -> {_GET_PHRASECUT}"
                )


# --------------------------------------------------------------------------- VOC


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
        _compare(report, split, "VOC 2012 and SBD", hint)
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
                f"{len(missing):,} files of split {split} are missing: {_list_paths(missing)}"
                f"\n    -> {hint}"
            )
    train = set(ids_by_split.get("train_aug", [])) | set(ids_by_split.get("train", []))
    leak = sorted(train & set(ids_by_split.get("val", [])))
    if leak:
        report.problems.append(
            f"{len(leak):,} val images are also in a training list (e.g. {leak[0]}); "
            "train_aug must exclude the VOC val images"
        )


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class CheckOptions:
    """What ``tseg data check`` was asked for, beyond the dataset and its folder.

    Attributes:
        split_by: RefCOCO* only: ``unc``, ``umd`` or ``google`` (None: the dataset's default).
        image_dir: The image folder if not the default (resolved under the root already).
        splits: Splits to check (None: all, or every split found).
        check_images: Also check that every image (and VOC label) file exists, or decodes.
        strict_polygons: PhraseCut: the loader's ``data.phrasecut_strict_polygons``.
        text_column: hf: ``data.text_column`` ("" = found by name).
    """

    split_by: str | None = None
    image_dir: str | None = None
    splits: list[str] | None = None
    check_images: bool = True
    strict_polygons: bool = True
    text_column: str = ""


def _start(name: str, root: Path, key: str, hint: str) -> CheckReport:
    """The report of ``name`` with the published counts of ``key``; not ``ok`` (the folder
    missing, with ``hint``) when ``root`` is not a folder, and then the check stops there."""
    report = CheckReport(name, root)
    report.expected = EXPECTED.get(key, {})
    if not root.is_dir():
        report.add_missing(root, hint, "folder")
    return report


def check_refcoco(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check`` for refcoco, refcoco+ and refcocog (``opts.split_by``)."""
    root = Path(root)
    split_by = refcoco.check_dataset_args(name, opts.split_by, None)
    report = _start(
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
    report = _start(name, root, name, get)
    if report.ok:
        img = refcoco.default_image_dir(root) if opts.image_dir is None else Path(opts.image_dir)
        _check_grefcoco(report, root, img, opts.check_images)
    return report


def check_phrasecut(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check phrasecut`` (``opts.splits``, ``opts.strict_polygons``)."""
    root = Path(root)
    report = _start(name, root, name, _GET_PHRASECUT)
    if report.ok:
        img = phrasecut.default_image_dir(root) if opts.image_dir is None else Path(opts.image_dir)
        chosen = list(phrasecut.SPLITS) if opts.splits is None else opts.splits
        for s in chosen:
            phrasecut.parse_splits(s)
        _check_phrasecut(report, root, img, chosen, opts.check_images, opts.strict_polygons)
    return report


def check_voc(name: str, root: str | os.PathLike[str], opts: CheckOptions) -> CheckReport:
    """``tseg data check voc`` (``opts.splits``)."""
    root = Path(root)
    report = _start(name, root, name, _GET_VOC)
    if report.ok:
        chosen = list(voc.SPLITS) if opts.splits is None else opts.splits
        for s in chosen:
            if s not in voc.SPLITS:
                raise DatasetError(f"unknown VOC split {s!r}; valid: {', '.join(voc.SPLITS)}")
        _check_voc(report, root, chosen, opts.check_images)
    return report


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
            ``coco_captions``, ``coco``, ``webdataset``, ``hf`` (``check_own``); or one
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
