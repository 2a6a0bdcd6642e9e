"""``tseg eval`` and ``tseg segment``, and the inference flags they share."""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

from .args import Described, Subparsers, count, device_option, out_path, registry_names


def inference_changes(ns: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The inference flags ``tseg segment`` and ``tseg eval`` share, as changes to the
    checkpoint's ``inference`` config, and how to name each in an error (the flag as typed).

    Flags left out keep the checkpoint's values; the config checks every value given.
    """
    changes: dict[str, Any] = {}
    labels: dict[str, str] = {}

    def put(key: str, value: Any, label: str) -> None:
        if value is not None:
            changes[key], labels[f"inference.{key}"] = value, label

    put("tta.enabled", ns.tta, "--tta")
    put("tta.scales", ns.tta_scales, f"--tta-scales {ns.tta_scales!r}")
    put("tta.flip", False if ns.no_flip else None, "--no-flip")
    put("crf.enabled", ns.crf, "--crf")
    put("pamr.enabled", ns.pamr, "--pamr")
    put("threshold", ns.threshold, f"--threshold = {ns.threshold}")
    pt = ns.presence_threshold
    put("presence_threshold", pt, f"--presence-threshold = {pt}")
    put("precision", ns.precision, f"--precision {ns.precision}")
    tp = ns.text_precision
    put("text_precision", tp, f"--text-precision {tp}")
    max_pixels = getattr(ns, "max_pixels", None)
    put("max_pixels", max_pixels, f"--max-pixels = {max_pixels}")
    class_threshold = getattr(ns, "class_threshold", None)
    put("class_threshold", class_threshold, f"--class-threshold = {class_threshold}")
    return changes, labels


def cmd_eval(ns: argparse.Namespace) -> int:
    from ..distributed import env_rank
    from ..eval import EvalRequest, evaluate_checkpoint

    changes, labels = inference_changes(ns)
    request = EvalRequest(
        max_images=ns.max_images,
        presence=ns.presence,
        classes=ns.classes,
        choose_presence=ns.choose_presence_threshold,
        choose_threshold=ns.choose_threshold,
    )
    out = evaluate_checkpoint(
        ns.checkpoint,
        ns.split,
        protocol=ns.protocol,
        device=ns.device,
        dataset=ns.dataset,
        dataset_root=ns.dataset_root,
        image_dir=ns.image_dir,
        annotations=ns.annotations,
        request=request,
        inference=changes,
        labels=labels,
    )
    if env_rank() == 0:  # under torchrun every process evaluates its share; one prints
        print(json.dumps(out, indent=1))
    return 0


def cmd_segment(ns: argparse.Namespace) -> int:
    from ..inference import segment_files

    changes, labels = inference_changes(ns)
    report = segment_files(
        ns.checkpoint,
        ns.image,
        ns.expressions,
        ns.expressions_file,
        classes=ns.classes,
        out=ns.out,
        device=ns.device,
        workers=ns.workers,
        progress=not ns.quiet,
        inference=changes,
        labels=labels,
        out_format=ns.format,
    )
    if report.coco is not None and report.main:
        note = f"; {report.failed} could not be read (errors above)" if report.failed else ""
        print(
            f"wrote the masks of {report.written} image(s) to {report.coco} (COCO instances, "
            f"RLE; the categories are the expressions){note}"
        )
    elif report.folder is not None:  # one image: where it went and its confidences
        print(f"wrote masks, overlay and scores to {report.folder}")
        for confidence, expression in report.scores:
            print(f"  {confidence:.3f}  {expression}")
    elif report.images > 1 and report.main:
        note = ""
        if report.failed:
            note = f"; {report.failed} of {report.images} could not be read (errors above)"
        print(f"wrote {report.written} results to {ns.out}{note}")
    return 2 if report.failed else 0


def add_inference_flags(p: argparse.ArgumentParser) -> None:
    """``--tta``, ``--crf``, ``--threshold``: the options segment and eval share.

    A flag left out keeps the checkpoint's ``inference`` config (defaults: off, off, 0.5).
    """
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        help="multi-scale + flip test-time augmentation (default: the checkpoint's inference.tta)",
    )
    p.add_argument(
        "--tta-scales", help="scales for --tta (default: inference.tta.scales, 1,0.5,1.5,2)"
    )
    p.add_argument("--no-flip", action="store_true", help="no flipped pass in --tta")
    p.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        help="dense CRF refinement, needs the [crf] extra (default: inference.crf)",
    )
    p.add_argument(
        "--pamr",
        action=argparse.BooleanOptionalAction,
        help="pixel-adaptive mask refinement on the image's colours, in torch (default: "
        "inference.pamr)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="foreground threshold on the maps (default: the checkpoint's threshold for the "
        "options used: inference.threshold for one plain pass, inference.thresholds.tta / "
        ".pamr / .crf with --tta / --pamr / --crf; 0.5 until chosen)",
    )
    p.add_argument(
        "--presence-threshold",
        type=float,
        help="empty the mask of an expression whose confidence is below this, 0 = off "
        "(default: the checkpoint's inference.presence_threshold)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        help="encoders in fp32, bf16 (autocast) or int8 (quantized linear layers, CPU only; "
        "speed and agreement in benchmarks/results/precision.json) "
        "(default: the checkpoint's inference.precision, fp32)",
    )
    p.add_argument(
        "--text-precision",
        choices=("fp32", "bf16", "int8"),
        help="the text encoder's precision, when it differs from --precision "
        "(default: the checkpoint's inference.text_precision, else --precision)",
    )


def add_eval(sub: Subparsers) -> None:
    """The ``eval`` command's parser."""
    e = sub.add_parser("eval", help="evaluate a checkpoint on its dataset")
    e.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    e.add_argument("--split", nargs="+", default=["val"], help="splits to evaluate (default: val)")
    e.add_argument(
        "--max-images", type=count, default=0, help="evaluate only the first N images (0: all)"
    )
    e.add_argument("--presence", action="store_true", help="also report presence ROC AUC")
    e.add_argument(
        "--choose-threshold",
        action="store_true",
        help="choose the mask threshold for the options given (plain, --tta, --pamr or --crf) "
        "on the first --split by mIoU, store it in the checkpoint (inference.threshold or "
        "inference.thresholds.<setting>) and evaluate with it",
    )
    e.add_argument(
        "--choose-presence-threshold",
        action="store_true",
        help="choose inference.presence_threshold on the first --split (balanced accuracy of "
        "present vs absent expressions), store it in the checkpoint and evaluate with it",
    )
    e.add_argument("--device", default="auto", **device_option())
    e.add_argument(
        "--protocol",
        default="pairs",
        choices=registry_names("eval.evaluate", "PROTOCOLS"),
        metavar="PROTOCOL",
        help=Described(
            "default pairs; ",
            lambda: {
                k: p.help.replace("%", "%%")
                for k, p in importlib.import_module("tseg.eval").PROTOCOLS.items()
            },
        ),
    )
    e.add_argument(
        "--classes",
        help="voc/semantic protocols: YAML of class -> names (default: packaged / the class names)",
    )
    e.add_argument(
        "--dataset",
        help="pairs/semantic: evaluate on this data.dataset (e.g. coco) instead of the checkpoint's",
    )
    e.add_argument(
        "--dataset-root",
        help="the dataset folder (default: the checkpoint's data.root)",
    )
    e.add_argument(
        "--image-dir",
        help="pairs/semantic: another image folder (relative: to --dataset-root)",
    )
    e.add_argument(
        "--annotations",
        help="pairs/semantic with --dataset coco: the COCO instances file itself (images beside "
        "it, then in --image-dir)",
    )
    e.add_argument(
        "--class-threshold",
        "--confidence-threshold",  # its earlier name
        dest="class_threshold",
        type=float,
        help="*-zeroshot: drop classes whose confidence is below this (default: the "
        "checkpoint's inference.class_threshold, 0.5 unless set; as tseg segment --classes)",
    )
    add_inference_flags(e)
    e.set_defaults(func=cmd_eval)


def add_segment(sub: Subparsers) -> None:
    """The ``segment`` command's parser."""
    s = sub.add_parser("segment", help="segment an image with referring expressions")
    s.add_argument(
        "checkpoint",
        help="a checkpoint or run folder, or a folder from tseg export onnx (ONNX Runtime on the "
        "CPU, no torch; no --tta, --crf or --precision)",
    )
    s.add_argument(
        "image", help="an image, a folder of images, or a glob pattern like 'photos/*.jpg'"
    )
    s.add_argument("expressions", nargs="*", help='expressions, e.g. "red circle" "blue shapes"')
    s.add_argument("--expressions-file", help="a text file with one expression per line")
    s.add_argument(
        "--out",
        type=out_path,
        default="segment_out",
        help="output folder (default: segment_out); a rerun into it replaces the folders of "
        "the images it writes again and adds them to its index.json",
    )
    s.add_argument(
        "--format",
        choices=("png", "coco"),
        default="png",
        help="png: per image a folder of mask PNGs, an overlay and scores.json (default); coco: "
        "one OUT/instances.json, COCO instances with RLE masks, the expression as the category",
    )
    add_inference_flags(s)
    s.add_argument("--device", default="auto", **device_option())
    s.add_argument(
        "--workers",
        type=int,
        help="processes decoding images ahead of the model (default min(4, CPUs); 0: in-process)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--classes",
        help="zero-shot semantic segmentation: 'cat,dog', a YAML file class -> [names], or "
        "'voc' (the packaged VOC classes and synonyms; section 4.6)",
    )
    s.add_argument(
        "--class-threshold",
        "--confidence-threshold",  # tseg eval's earlier name for it
        dest="class_threshold",
        type=float,
        help="--classes: drop classes below this confidence (default: the checkpoint's "
        "inference.class_threshold, 0.5 unless set)",
    )
    s.add_argument("--max-pixels", type=int, help="refuse larger images (default 100,000,000)")
    s.set_defaults(func=cmd_segment)
