"""Command-line interface: ``tseg train | eval | segment | pseudo-label | self-train | demo |
weights | export | serve | data``.

Each command parses its arguments and calls one library function; ``main(argv) -> int`` so every
command is callable from a test. Expected failures (``tseg.errors.TsegError``: a bad config,
missing file, unreadable image, wrong checkpoint) print one ``error:`` line and return 2. Nothing
heavy is imported before a command runs: ``tseg --help`` and ``tseg data check`` never load
torch, and choices that come from a registry (protocols, datasets, demo recipes) are read only
when a value is checked or a command's help is shown.

Longer than 400 lines because of the argparse definitions of eight commands; each command's
body is a few lines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import __version__
from .errors import TrainingInterrupted, TsegError


class _Choices:
    """argparse ``choices`` read from a registry the first time they are needed. (Give the
    argument a ``metavar``: argparse lists choices in its usage line as it adds an argument.)"""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load, self._names = load, None

    def _all(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(self._load())
        return self._names

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())


class _Described(str):
    """A help text that lists a registry's entries, written when argparse formats it (which
    expands every help text with ``%``)."""

    def __new__(cls, intro: str, load: Callable[[], dict[str, str]]) -> _Described:
        text = super().__new__(cls, intro)
        text._load = load
        return text

    def __mod__(self, params: Any) -> str:
        return str(self) + "; ".join(f"{k}: {v}" for k, v in self._load().items())


def out_path(text: str) -> str:
    """An argparse type for output folders: an empty name would write into the working folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name (it would write into the working folder)")
    return text


def count(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def _module(name: str) -> Any:
    return importlib.import_module(f"tseg.{name}")


def _names(module: str, attr: str) -> _Choices:
    """The keys of ``module.attr`` (a registry dict or a tuple of names), read lazily."""
    return _Choices(lambda: getattr(_module(module), attr))


def _device() -> dict[str, Any]:
    """``--device``'s choices: those of the config key ``train.device``."""
    choices = _Choices(lambda: importlib.import_module("tseg.config").choices("train.device"))
    return {"choices": choices, "metavar": "DEVICE", "help": "%(choices)s (default %(default)s)"}


def _split_config_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``: the first argument is a YAML path unless it is an override."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def cmd_train(ns: argparse.Namespace) -> int:
    from .config import build_config
    from .distributed import env_rank
    from .train import train

    path, overrides = _split_config_args(ns.args)
    if ns.out:
        overrides = [*overrides, f"train.out_dir={ns.out}"]
    results = train(build_config(path, overrides), progress=not ns.quiet, resume=ns.resume)
    if env_rank() == 0:  # under torchrun every process trains; one prints
        print(json.dumps({k: v for k, v in results.items() if k != "history"}, indent=1))
    return 0


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
    from .distributed import env_rank
    from .eval import EvalRequest, evaluate_checkpoint

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
    from .inference import segment_files

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


def _pseudo_flags(ns: argparse.Namespace) -> list[str]:
    """The pseudo-label flags as ``pseudo.*`` overrides (None: the config's value)."""
    flags = {
        "refine": ns.refine,
        "threshold": ns.threshold,
        "ignore_band": ns.ignore_band,
        "min_confidence": ns.min_confidence,
        "max_images": ns.max_images,
        "tta": ns.tta,
    }
    return [f"pseudo.{k}={v}" for k, v in flags.items() if v is not None]


def cmd_pseudo_label(ns: argparse.Namespace) -> int:
    from .distributed import env_rank
    from .selftrain import pseudo_label

    manifest = pseudo_label(
        ns.run,
        ns.out,
        [*ns.overrides, *_pseudo_flags(ns)],
        split=ns.split,
        device=ns.device,
        progress=not ns.quiet,
    )
    if env_rank() == 0:
        if ns.coco:
            from pathlib import Path

            from .selftrain.store import export_coco

            n = export_coco(ns.out, Path(ns.coco))
            print(f"wrote {n} pseudo masks to {ns.coco} (COCO instances, RLE)")
        stats = manifest.get("stats", {})
        print(
            f"wrote pseudo masks of {manifest['images']} images to {ns.out}: kept "
            f"{stats.get('kept')} of {stats.get('pairs')} pairs (threshold "
            f"{manifest['threshold']['threshold']}, {manifest['threshold']['chosen']})"
        )
        print(
            f"train a student on them: tseg train ... train.mode=pseudo data.pseudo_masks={ns.out}"
        )
    return 0


def cmd_self_train(ns: argparse.Namespace) -> int:
    from .config import build_config
    from .distributed import env_rank
    from .selftrain import self_train

    path, overrides = _split_config_args(ns.args)
    if ns.rounds is not None:  # checked by the config's rule for pseudo.rounds
        overrides = [*overrides, f"pseudo.rounds={ns.rounds}"]
    cfg = build_config(path, overrides)
    out = ns.out or cfg.train.out_dir
    results = self_train(cfg, out, teacher=ns.teacher, progress=not ns.quiet)
    if env_rank() == 0:
        for r, stage in enumerate(results["rounds"], 1):
            val = stage["student"].get("val", {})
            print(f"round {r}: student val mIoU {100 * val.get('miou', float('nan')):.1f}")
        print(f"the last student: {results['student']}")
    return 0


def cmd_demo(ns: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(ns.preset, ns.out, ns.steps, progress=not ns.quiet, seed=ns.seed, rounds=ns.rounds)
    return 0


def cmd_data_check(ns: argparse.Namespace) -> int:
    from .data.check import check_dataset

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

    from .data.convert import convert_dataset

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


def cmd_export(ns: argparse.Namespace) -> int:
    from .export.onnx_export import export_onnx

    meta = export_onnx(ns.checkpoint, ns.out, check=not ns.no_check, precision=ns.precision)
    what = "int8 ONNX graphs" if ns.precision == "int8" else "ONNX graphs"
    print(f"wrote the {what}, tokenizer and tseg_onnx.json to {ns.out}")
    if "export_check" in meta:
        c = meta["export_check"]
        if ns.precision == "int8":
            print(
                f"ONNX Runtime int8 vs torch, mean cosine of the embeddings: image "
                f"{c['image_mean_cosine']:.5f}, text {c['text_mean_cosine']:.5f}; max "
                f"|difference|: {c['image_max_abs_diff']:.1e}, {c['text_max_abs_diff']:.1e}"
            )
        else:
            print(
                f"ONNX Runtime vs torch, max |difference|: image embeddings "
                f"{c['image_max_abs_diff']:.1e}, text embeddings {c['text_max_abs_diff']:.1e}"
            )
    return 0


def cmd_export_hf(ns: argparse.Namespace) -> int:
    from .export.hf import export_hf

    out = export_hf(ns.checkpoint, ns.out, name=ns.repo, license=ns.license)
    print(f"wrote a Hugging Face model repo (weights, config, tokenizer, model card) to {out}")
    print(f"publish it: hf upload {shlex.quote(ns.repo or 'ORG/NAME')} {shlex.quote(str(out))} .")
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    from .serve.server import serve_from_arguments  # no torch for an ONNX export folder

    return serve_from_arguments(ns)


def cmd_weights(ns: argparse.Namespace) -> int:
    from .config import build_config, to_flat
    from .models.weights import weights_report

    rows = weights_report(
        values=to_flat(build_config(None, ns.overrides)), hash_files=not ns.no_hash
    )
    for r in rows:
        where = " in the Hugging Face cache" if r.get("cache") else ""
        state = f"present{where}" if r["present"] else f"MISSING{where and ' from the cache'}"
        if r.get("problem"):
            state = f"BROKEN{where}: {r['problem']}"
        print(f"[{r['preset']}] {r['name']} {r.get('file') or ''}: {state}")
        print(f"    config key: {r['config_key']}   path: {r['path'] or '(not set)'}")
        if r.get("sha256"):
            print(f"    sha256: {r['sha256']}")
        if not r["present"] and r.get("source"):
            print(f"    get it from: {r['source']}")
        if r.get("note"):
            print(f"    note: {r['note']}")
    if any(r.get("cache") for r in rows):
        print(
            "hub names are read from the Hugging Face cache (HF_HOME / HF_HUB_CACHE; docs/hub.md)"
        )
    return 1 if any(r.get("problem") for r in rows) else 0


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tseg", description="Text-grounded segmentation learned without pixel labels."
    )
    p.add_argument("--version", action="version", version=f"tseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a model: tseg train [CONFIG.yaml] [key=value ...]",
        description="Train a model. On N processes: torchrun --nproc_per_node N -m tseg.cli "
        "train ... (train.batch_size is per process; see docs/distributed.md).",
    )
    t.add_argument(
        "args", nargs="*", help="an experiment YAML, then dotted overrides like train.steps=100"
    )
    t.add_argument("--out", type=out_path, help="run folder (same as train.out_dir=...)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue exactly from the run folder's latest checkpoint",
    )
    t.set_defaults(func=cmd_train)

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
    e.add_argument("--device", default="auto", **_device())
    e.add_argument(
        "--protocol",
        default="pairs",
        choices=_names("eval.evaluate", "PROTOCOLS"),
        metavar="PROTOCOL",
        help=_Described(
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
    s.add_argument("--device", default="auto", **_device())
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

    pl = sub.add_parser(
        "pseudo-label",
        help="pseudo masks of a weak model's training images (refined, filtered) for a student",
        description="The teacher's maps of every training image and expression, refined "
        "(--refine), filtered (--min-confidence) and with uncertain pixels marked ignore, "
        "written as COCO RLE shards + manifest.json. Resumable: the same command continues a "
        "stopped run. On N processes: torchrun --nproc_per_node N -m tseg.cli pseudo-label ...",
    )
    pl.add_argument("run", help="the teacher: a run or checkpoint folder")
    pl.add_argument("--out", type=out_path, required=True, help="the pseudo-mask folder")
    pl.add_argument("--split", default="train", help="split to label (default train)")
    pl.add_argument(
        "--refine",
        choices=("none", "crf", "pamr"),
        help="refinement of the maps (default: pseudo.refine, pamr)",
    )
    pl.add_argument(
        "--threshold",
        type=float,
        help="foreground threshold on the refined maps (default: pseudo.threshold; 0 = chosen "
        "on val for this refinement)",
    )
    pl.add_argument(
        "--ignore-band",
        type=float,
        help="pixels in [(1 - band) x threshold, threshold) are ignored by the student "
        "(default pseudo.ignore_band, 0.2)",
    )
    pl.add_argument(
        "--min-confidence",
        type=float,
        help="drop pairs the teacher is less confident of (default pseudo.min_confidence, 0.5)",
    )
    pl.add_argument("--max-images", type=int, help="only the first N images (default: all)")
    pl.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        help="the teacher's maps with test-time augmentation (default: pseudo.tta, off)",
    )
    pl.add_argument("--device", default="auto", **_device())
    pl.add_argument("--quiet", action="store_true", help="no progress bar")
    pl.add_argument(
        "--coco",
        metavar="FILE",
        help="also write every pseudo mask to one COCO instances file (RLE, the expression as "
        "the category) that pycocotools, FiftyOne and annotation tools import",
    )
    pl.add_argument(
        "overrides",
        nargs="*",
        help="key=value changes, e.g. data.root=... inference.pamr.iterations=5",
    )
    pl.set_defaults(func=cmd_pseudo_label)

    st = sub.add_parser(
        "self-train",
        help="teacher -> pseudo masks -> student, in rounds: tseg self-train [CONFIG] [key=value]",
        description="Train a weak teacher (or take --teacher), make its pseudo masks, train a "
        "student on them (train.mode=pseudo), and repeat for --rounds; each stage in its own "
        "folder under --out, resumable.",
    )
    st.add_argument("args", nargs="*", help="an experiment YAML, then dotted overrides")
    st.add_argument("--out", type=out_path, help="folder of the stages (default: train.out_dir)")
    st.add_argument("--rounds", type=int, help="rounds (default: pseudo.rounds, 1)")
    st.add_argument("--teacher", help="an existing weak run to start from (no teacher training)")
    st.add_argument("--quiet", action="store_true", help="no progress bar")
    st.set_defaults(func=cmd_self_train)

    d = sub.add_parser(
        "demo", help="train a configs/demo recipe on synthetic shapes on the CPU and show results"
    )
    d.add_argument("--out", type=out_path, default="runs/demo")
    d.add_argument(
        "--seed", type=int, default=None, help="training seed (default: the recipe's, 0)"
    )
    d.add_argument(
        "--steps", type=int, default=0, help="override the steps of every training stage"
    )
    d.add_argument(
        "--rounds",
        type=int,
        help="self-training rounds after the teacher (default: the recipe's; offline 1, tiny 0)",
    )
    d.add_argument(
        "--preset",
        choices=_Choices(lambda: importlib.import_module("tseg.config").recipes("demo")),
        metavar="PRESET",
        default="offline",
        help="a recipe of configs/demo: %(choices)s (default %(default)s: packaged pretrained "
        "encoders; tiny: trained from scratch)",
    )
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    w = sub.add_parser(
        "weights",
        help="list every preset's pretrained files, whether each is present (hub names: in the "
        "Hugging Face cache) and where, sha256",
    )
    w.add_argument(
        "overrides",
        nargs="*",
        help="key=value, e.g. model.image.weights=/path/vit.npz or model.text.weights=ORG/NAME",
    )
    w.add_argument("--no-hash", action="store_true", help="skip sha256 of large files")
    w.set_defaults(func=cmd_weights)

    x = sub.add_parser(
        "export", help="export a checkpoint for deployment (ONNX) or the Hugging Face Hub (hf)"
    )
    xsub = x.add_subparsers(dest="export_format", required=True)
    xo = xsub.add_parser(
        "onnx", help="image and text encoders as ONNX graphs + tseg_onnx.json (needs [onnx])"
    )
    xo.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    xo.add_argument("--out", type=out_path, required=True, help="output folder")
    xo.add_argument(
        "--no-check", action="store_true", help="skip comparing ONNX Runtime with torch"
    )
    xo.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="int8: the graphs' MatMul weights quantized after exporting (ONNX Runtime's dynamic "
        "quantization), checked against torch by cosine (default %(default)s)",
    )
    xo.set_defaults(func=cmd_export)
    xh = xsub.add_parser(
        "hf",
        help="a Hugging Face model repo folder: model.safetensors, config, tokenizer, model card "
        "(push it with `hf upload`; load it with tseg segment/eval ORG/NAME)",
    )
    xh.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    xh.add_argument("--out", type=out_path, required=True, help="output folder")
    xh.add_argument("--repo", help="the repo name ORG/NAME the model card uses")
    xh.add_argument(
        "--license", default="apache-2.0", help="licence id for the card (default %(default)s)"
    )
    xh.set_defaults(func=cmd_export_hf)

    from .serve.options import add_arguments as add_serve_arguments

    sv = sub.add_parser("serve", help="a web page and JSON API: image + expressions -> masks")
    add_serve_arguments(sv)
    sv.set_defaults(func=cmd_serve)

    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser(
        "check", help="verify a dataset's files against the published layout and counts"
    )
    c.add_argument(
        "dataset",
        choices=_Choices(lambda: _module("data.registry").names(checked=True)),
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
        choices=_names("data.convert", "FORMATS"),
        metavar="FORMAT",
        default="webdataset",
        help="%(choices)s (default %(default)s)",
    )
    v.add_argument(
        "--set", action="append", default=[], help="another config key, e.g. data.split_by=umd"
    )
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_data_convert)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    listed = {"train": "args", "self-train": "args", "pseudo-label": "overrides"}
    if extra and ns.command in listed and not any(a.startswith("-") for a in extra):
        # `tseg train a=b --quiet c=d`: argparse fills the positional list once, so the
        # overrides after an option come back unparsed; they continue the list, in order.
        setattr(ns, listed[ns.command], [*getattr(ns, listed[ns.command]), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(ns.func(ns) or 0)
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except TsegError as e:  # expected failures: one line that names the thing
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave: an --out that is a file, no permission, ...
        if e.filename is None:
            raise
        where = f"'{e.filename}'" + (f" -> '{e.filename2}'" if e.filename2 else "")
        print(f"error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
