"""The published counts every paper dataset's files are compared with.

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
"""

from __future__ import annotations

from pathlib import Path

from tseg.data.check.report import CheckReport

__all__ = ["EXPECTED", "paper_report"]

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


def paper_report(name: str, root: Path, key: str, hint: str) -> CheckReport:
    """The report of ``name`` with the published counts of ``key``; not ``ok`` (the folder
    missing, with ``hint``) when ``root`` is not a folder, and then the check stops there."""
    report = CheckReport(name, root)
    report.expected = EXPECTED.get(key, {})
    if not root.is_dir():
        report.add_missing(root, hint, "folder")
    return report
