"""``tseg data check`` and ``tseg data convert``: the dataset tools. Neither imports torch."""

from __future__ import annotations

import argparse

from .args import Choices, Subparsers, out_path, registry_module, registry_names


def cmd_data_check(ns: argparse.Namespace) -> int:
    from ..data.check import check_dataset

    report = check_dataset(
        ns.dataset,
        ns.root,
        split_by=ns.split_by,
        image_dir=ns.image_dir,
        splits=ns.splits,
        check_images=not ns.skip_images,
        strict_polygons=not ns.lenient_polygons,
        text_column=ns.text_column,
    )
    print(report.format())
    return 0 if report.ok else 1


def cmd_data_convert(ns: argparse.Namespace) -> int:
    import shlex

    from ..data.convert import convert_dataset

    n, keys = convert_dataset(
        ns.source,
        ns.out,
        ns.format,
        root=ns.root,
        split=ns.split,
        settings=ns.set,
        shard_size=ns.shard_size,
        progress=not ns.quiet,
    )
    print(f"wrote {n} images with their expressions to {ns.out} ({ns.format})")
    train = f"tseg train data.dataset={ns.format} " + " ".join(
        f"{k}={shlex.quote(str(v))}" for k, v in keys.items()
    )
    print(f"train on them: {train}")
    if ns.format == "webdataset":  # shards can also be streamed (docs/own_data.md)
        print(f"or stream them: {train} data.stream=true")
    return 0


def add_data(sub: Subparsers) -> None:
    """The ``data`` command's parser and its ``check`` and ``convert`` parsers."""
    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser(
        "check", help="verify a dataset's files against the published layout and counts"
    )
    c.add_argument(
        "dataset",
        choices=Choices(lambda: registry_module("data.registry").names(checked=True)),
        metavar="DATASET",
        help="one of %(choices)s",
    )
    c.add_argument(
        "root",
        help="the dataset folder (refer data folder, VGPhraseCut_v0, VOCdevkit, your COCO or "
        "ImageFolder folder), a COCO file itself, or for webdataset the shard pattern",
    )
    c.add_argument("--split-by", help="RefCOCO*: unc, umd or google")
    c.add_argument(
        "--image-dir", help="image folder, if not the default under root (relative: to root)"
    )
    c.add_argument("--splits", nargs="+", help="PhraseCut / VOC / hf: only these splits")
    c.add_argument(
        "--text-column",
        default="",
        help="hf: the text column (default: expressions, sentences, text or caption)",
    )
    c.add_argument(
        "--skip-images",
        action="store_true",
        help="skip the per-image pass (the paper's datasets: that each image file exists; "
        "own data and shards: that each image decodes)",
    )
    c.add_argument(
        "--lenient-polygons",
        action="store_true",
        help="PhraseCut: polygons of fewer than 3 points are a warning, as for training with "
        "data.phrasecut_strict_polygons=false (default: a problem)",
    )
    c.set_defaults(func=cmd_data_check)
    v = dsub.add_parser(
        "convert",
        help="write a dataset's images and expressions as WebDataset shards (or imagefolder, "
        "coco_captions)",
    )
    v.add_argument("source", help="a data.dataset value: shapes, refcoco, voc, imagefolder, ...")
    v.add_argument("out", type=out_path, help="output folder")
    v.add_argument("--root", help="the source's data.root (data.shards for webdataset)")
    v.add_argument("--split", default="train", help="split to convert (default train)")
    v.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    v.add_argument(
        "--format",
        choices=registry_names("data.convert", "FORMATS"),
        metavar="FORMAT",
        default="webdataset",
        help="%(choices)s (default %(default)s)",
    )
    v.add_argument(
        "--set", action="append", default=[], help="another config key, e.g. data.split_by=umd"
    )
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_data_convert)
