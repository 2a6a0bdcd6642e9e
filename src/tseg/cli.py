"""Command-line interface: ``tseg train | eval | segment | demo``.

``main(argv) -> int`` so every command is callable from a test. Expected failures (bad config,
missing file, unreadable image, wrong checkpoint) print one ``error:`` line and return 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .config import build_config
from .errors import InputError, TrainingInterrupted, TsegError

if TYPE_CHECKING:
    import torch

    from .config import Config, InferenceConfig
    from .distributed import Shard
    from .models.tseg import TSEG

# The demo, sized to finish in minutes on 2 CPU cores. Default: the `offline` preset (ImageNet
# EfficientNet-Lite0 + MiniLM shipped in PyPI packages, the paper's regime of pretrained
# encoders), which learns from image-level expressions reliably within a few hundred steps.
# `--preset tiny` trains the from-scratch model instead; it needs ~1000 steps to leave the label
# prior and how soon it does varies from run to run (val mIoU 21.5 and 8.3 in two runs).
DEMO_OVERRIDES = {
    "offline": [
        "model.preset=offline",
        "model.head=mpa",
        "data.image_size=96",
        "train.optimizer=adamw",
        "train.lr=3e-4",
        "train.weight_decay=0.05",
        "train.batch_size=16",
        "train.warmup_steps=30",
        "train.steps=600",
        "train.log_every=50",
        "data.train_size=4000",
        "data.val_size=300",
        "data.test_size=300",
    ],
    "tiny": [
        "model.head=mpa",
        "train.steps=4000",
        "train.log_every=100",
        "data.train_size=4000",
        "data.val_size=300",
        "data.test_size=300",
    ],
}


def _split_config_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``: the first argument is a YAML path unless it is an override."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def cmd_train(ns: argparse.Namespace) -> int:
    from .distributed import env_rank
    from .engine import train

    path, overrides = _split_config_args(ns.args)
    if ns.out:
        overrides = [*overrides, f"train.out_dir={ns.out}"]
    cfg = build_config(path, overrides)
    results = train(cfg, progress=not ns.quiet, resume=ns.resume)
    if env_rank() == 0:  # under torchrun every process trains; one prints
        print(json.dumps({k: v for k, v in results.items() if k != "history"}, indent=1))
    return 0


def inference_options(ns: argparse.Namespace, ic: InferenceConfig) -> dict[str, Any]:
    """Segmenter options: the checkpoint's ``inference`` config, then the command-line flags.

    ``tseg segment`` and ``tseg eval`` both build their options here, so ``--tta`` / ``--crf``
    mean the same in both and the maps come from the same code (``Segmenter.probabilities``).
    """
    from dataclasses import replace

    from .crf import crf_available
    from .inference import options_from_config

    for flag, value, lo, hi in (
        ("--threshold", ns.threshold, 0.0, 1.0),
        ("--max-pixels", getattr(ns, "max_pixels", None), 1, float("inf")),
    ):
        if value is not None and not lo <= value <= hi:
            raise InputError(f"{flag} = {value} is out of range [{lo}, {hi}]")
    changes: dict[str, Any] = {}
    if ns.tta is not None:
        changes["tta"] = ns.tta
    if ns.crf is not None:
        changes["crf"] = ns.crf
    if ns.no_flip:
        changes["tta_flip"] = False
    if ns.threshold is not None:
        changes["threshold"] = ns.threshold
    if getattr(ns, "max_pixels", None) is not None:
        changes["max_pixels"] = ns.max_pixels
    if ns.tta_scales is not None:
        try:
            scales = [float(v) for v in ns.tta_scales.split(",")]
        except ValueError:
            raise InputError(
                f"--tta-scales {ns.tta_scales!r} is not a comma-separated list of numbers"
            ) from None
        if not all(v > 0 for v in scales):
            raise InputError(f"--tta-scales {ns.tta_scales!r}: every scale must be positive")
        changes["tta_scales"] = ns.tta_scales
    opts = options_from_config(replace(ic, **changes))
    if opts["crf"] is not None and not crf_available():
        raise InputError(
            "--crf (or inference.crf) needs pydensecrf: pip install 'tseg[crf]' "
            "(package pydensecrf2, built from source with a C++ compiler)"
        )
    return opts


def describe_options(opts: dict[str, Any]) -> dict[str, Any]:
    """What the printed results were computed with (TTA passes, CRF parameters, threshold)."""
    from dataclasses import asdict

    tta, crf = opts["tta"], opts["crf"]
    return {
        "tta": {"scales": list(tta.scales), "flip": tta.flip} if tta is not None else False,
        "crf": asdict(crf) if crf is not None else False,
        "threshold": opts["threshold"],
    }


def eval_data(ns: argparse.Namespace, cfg: Config) -> Any:
    """The data config to evaluate on: the checkpoint's, or ``--dataset`` / ``--dataset-root``."""
    from .data.own import override_data

    return override_data(cfg.data, ns.dataset, ns.dataset_root, ns.image_dir)


def cmd_eval(ns: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .data import build_dataset
    from .distributed import pick_device, shard_from_env
    from .engine import evaluate

    # Under torchrun (WORLD_SIZE > 1) each rank evaluates a share of the images; rank 0 prints.
    with shard_from_env() as shard:
        device = pick_device(ns.device)  # under torchrun: GPU LOCAL_RANK
        model, cfg, ckpt = load_checkpoint(ns.checkpoint, device)
        opts = inference_options(ns, cfg.inference)
        head: dict[str, Any] = {"checkpoint": str(ckpt), "inference": describe_options(opts)}
        if shard.world_size > 1:
            head["ranks"] = shard.world_size
        if ns.protocol != "pairs":
            out = _eval_protocol(ns, model, cfg, device, opts, shard)
            head["protocol"] = ns.protocol
        else:
            out = {}
            for split in ns.split:
                out[split] = evaluate(
                    model,
                    build_dataset(eval_data(ns, cfg), split),
                    device,
                    cfg.eval.batch_size,
                    ns.max_images,
                    presence=ns.presence,
                    threshold=opts["threshold"],
                    tta=opts["tta"],
                    crf=opts["crf"],
                    shard=shard,
                )
        if shard.is_main:
            print(json.dumps({**head, **out}, indent=1))
    return 0


def _eval_protocol(
    ns: argparse.Namespace,
    model: TSEG,
    cfg: Config,
    device: torch.device,
    opts: dict[str, Any],
    shard: Shard,
) -> dict[str, Any]:
    """``tseg eval --protocol phrasecut | voc | voc-zeroshot | semantic``: see ``tseg.protocols``."""
    from .data import build_dataset
    from .data.own import semantic_classes
    from .protocols import evaluate_phrasecut, evaluate_semantic

    want = "phrasecut" if ns.protocol == "phrasecut" else "voc"

    def dataset(split: str) -> Any:
        if ns.protocol.startswith("semantic"):  # any dataset with per-class masks: coco, voc
            return build_dataset(eval_data(ns, cfg), split)
        if ns.dataset_root:
            if want == "phrasecut":
                from .data.phrasecut import PhraseCutDataset

                return PhraseCutDataset(ns.dataset_root, split)
            from .data.voc import VocDataset

            return VocDataset(ns.dataset_root, split)
        if cfg.data.dataset != want:
            from .errors import DatasetError

            raise DatasetError(
                f"--protocol {ns.protocol} evaluates on {want}, but the checkpoint was trained "
                f"on {cfg.data.dataset!r}: give the {want} folder with --dataset-root"
            )
        return build_dataset(cfg.data, split)

    out: dict[str, Any] = {}
    for split in ns.split:
        ds = dataset(split)
        if want == "phrasecut":
            out[split] = evaluate_phrasecut(
                model,
                ds,
                device,
                ns.max_images,
                threshold=opts["threshold"],
                tta=opts["tta"],
                crf=opts["crf"],
                shard=shard,
            )
        else:
            out[split] = evaluate_semantic(
                model,
                ds,
                device,
                semantic_classes(ds, ns.classes),
                zero_shot=ns.protocol.endswith("-zeroshot"),
                confidence_threshold=ns.confidence_threshold,
                max_images=ns.max_images,
                tta=opts["tta"],
                crf=opts["crf"],
                shard=shard,
            )
    return out


def read_expressions(exprs: list[str], file: str | None) -> list[str]:
    out = list(exprs)
    if file:
        p = Path(file)
        if not p.is_file():
            raise InputError(f"expressions file '{p}' does not exist")
        out += [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def collect_images(spec: str) -> list[Path]:
    """A file, a folder (its images, sorted) or a glob pattern -> image paths."""
    import glob

    exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
    p = Path(spec)
    if p.is_dir():
        paths = sorted(q for q in p.iterdir() if q.suffix.lower() in exts)
        if not paths:
            raise InputError(f"folder '{p}' holds no images ({', '.join(sorted(exts))})")
        return paths
    if p.is_file():
        return [p]
    if any(c in spec for c in "*?["):
        paths = sorted(Path(q) for q in glob.glob(spec, recursive=True) if Path(q).is_file())
        if not paths:
            raise InputError(f"pattern '{spec}' matches no file")
        return paths
    raise InputError(f"image '{p}' does not exist")


def read_classes(spec: str) -> dict[str, list[str]]:
    """``--classes``: a YAML file (class -> list of names) or comma-separated class names."""
    from .data.zeroshot import load_class_names

    p = Path(spec)
    if p.suffix.lower() in (".yaml", ".yml") or p.is_file():
        import yaml

        if not p.is_file():
            raise InputError(f"classes file '{p}' does not exist")
        try:
            keys = list((yaml.safe_load(p.read_text(encoding="utf-8")) or {}).keys())
        except (yaml.YAMLError, AttributeError) as e:
            raise InputError(
                f"classes file '{p}' is not a YAML mapping of class -> names: {e}"
            ) from None
        return load_class_names(p, classes=keys)
    names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise InputError("--classes is empty: give names like 'cat,dog' or a YAML file")
    return {c: [c] for c in names}


def write_zero_shot(
    out: Path, stem: str, image, preds, classes: dict[str, list[str]], threshold: float
) -> Path:
    """Section 4.6: merge synonyms, drop unconfident classes, argmax; palette PNG + overlay."""
    import numpy as np
    from PIL import Image

    from .data.zeroshot import flatten_class_names, merge_synonyms, zero_shot_labels
    from .viz import PALETTE, overlay

    _, groups = flatten_class_names(classes)
    probs, conf = merge_synonyms(
        np.stack([p.probability for p in preds]), np.array([p.confidence for p in preds]), groups
    )
    labels = zero_shot_labels(conf, probs, threshold=threshold)  # [H, W], 0 = background
    d = out / stem
    d.mkdir(parents=True, exist_ok=True)
    pal = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [0, 0, 0] + [v for c in range(len(classes)) for v in PALETTE[c % len(PALETTE)]]
    pal.putpalette(flat + [0] * (768 - len(flat)))
    pal.save(d / "classes.png")
    names = list(classes)
    masks = np.stack([labels == k + 1 for k in range(len(names))])
    overlay(image, masks, names, [float(c) for c in conf]).save(d / "classes_overlay.png")
    scores = {n: round(float(c), 6) for n, c in zip(names, conf)}
    (d / "classes.json").write_text(
        json.dumps({"classes": names, "confidence": scores, "threshold": threshold}, indent=1),
        encoding="utf-8",
    )
    return d


def output_stems(paths: list[Path]) -> list[str]:
    """Output folder names: two images with the same name in different folders get a, a_1."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        n = seen.get(path.stem, 0)
        seen[path.stem] = n + 1
        stems.append(path.stem if n == 0 else f"{path.stem}_{n}")
    return stems


def cmd_segment(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .checkpoint import load_checkpoint
    from .distributed import pick_device, shard_from_env
    from .inference import Segmenter, check_expressions, default_workers, image_loader
    from .output import write_prediction

    classes = read_classes(ns.classes) if ns.classes else None
    if classes is not None:
        from .data.zeroshot import flatten_class_names

        exprs = check_expressions(flatten_class_names(classes)[0])
    else:
        exprs = check_expressions(read_expressions(ns.expressions, ns.expressions_file))
    paths = collect_images(ns.image)
    if ns.class_threshold is not None and not 0.0 <= ns.class_threshold <= 1.01:
        raise InputError(f"--class-threshold = {ns.class_threshold} is out of range [0.0, 1.01]")
    workers = default_workers() if ns.workers is None else ns.workers
    if workers < 0:
        raise InputError(f"--workers = {workers} must be 0 (decode in this process) or more")
    stems = output_stems(paths)  # over all images, before sharding, so ranks agree
    single = len(paths) == 1
    out = Path(ns.out)
    # Under torchrun (WORLD_SIZE > 1) each rank segments its share of the images.
    with shard_from_env() as shard:
        device = pick_device(ns.device)  # under torchrun: GPU LOCAL_RANK
        model, cfg, _ = load_checkpoint(ns.checkpoint, device)
        # Flags given on the command line override the checkpoint's inference config.
        seg = Segmenter(model, device, **inference_options(ns, cfg.inference))
        class_threshold = ns.class_threshold
        if class_threshold is None:
            class_threshold = seg.class_threshold
        mine = shard.take(range(len(paths)))
        # Workers decode (and check) the next images while this process runs the model.
        loader = image_loader([paths[i] for i in mine], seg.max_pixels, workers)
        bar = tqdm(loader, desc="segment", disable=single or ns.quiet or not shard.is_main)
        written, failed = 0, 0
        for k, image, error in bar:
            if error is not None:  # one unreadable file is reported and skipped
                tqdm.write(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            preds = seg.predict(image, exprs)
            stem = stems[mine[k]]
            if classes is not None:
                d = write_zero_shot(out, stem, image, preds, classes, class_threshold)
            else:
                d = write_prediction(out, stem, image, preds)
            written += 1
            if single:
                print(f"wrote masks, overlay and scores to {d}")
                for p in preds:
                    print(f"  {p.confidence:.3f}  {p.expression}")
        counts = shard.gather((written, failed))
    written, failed = (sum(c[j] for c in counts) for j in range(2))
    if not single and shard.is_main:
        note = f"; {failed} of {len(paths)} could not be read (errors above)" if failed else ""
        print(f"wrote {written} results to {out}{note}")
    return 2 if failed else 0


def cmd_demo(ns: argparse.Namespace) -> int:
    import numpy as np

    from .data import build_dataset
    from .engine import train
    from .viz import overlay

    out = Path(ns.out)
    overrides = [*DEMO_OVERRIDES[ns.preset], f"train.out_dir={out}"]
    if ns.steps:
        overrides.append(f"train.steps={ns.steps}")
    cfg = build_config(None, overrides)
    t0 = time.time()
    kind = "pretrained" if ns.preset == "offline" else "from-scratch"
    print(
        f"tseg demo: training the '{ns.preset}' preset ({kind} encoders) with MPA on 'shapes' "
        f"for {cfg.train.steps} steps (CPU)"
    )
    results = train(cfg, progress=not ns.quiet, evaluate_splits=("val", "test"))
    from .inference import Segmenter

    seg = Segmenter.from_checkpoint(results["checkpoint"])
    test = build_dataset(cfg.data, "test")
    pics = out / "overlays"
    pics.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        image, exprs = test.image(i), test.expressions(i)[:6]
        preds = seg.predict(image, exprs)
        pred_pic = overlay(
            image, np.stack([p.mask for p in preds]), exprs, [p.confidence for p in preds], scale=4
        )
        gt_pic = overlay(image, test.masks(i)[:6], exprs, None, scale=4)
        both = _stack_vertical([pred_pic, gt_pic])
        both.save(pics / f"test_{i:02d}.png")
    wall = time.time() - t0
    results["wall_time_s"] = round(wall, 1)
    (out / "metrics.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    v, t = results["val"], results["test"]
    print(
        f"\nval  mIoU {100 * v['miou']:.1f}  oIoU {100 * v['oiou']:.1f}  prec@0.5 {100 * v['prec@0.5']:.1f}"
    )
    print(
        f"test mIoU {100 * t['miou']:.1f}  oIoU {100 * t['oiou']:.1f}  prec@0.5 {100 * t['prec@0.5']:.1f}"
    )
    print(f"wall time {wall / 60:.1f} min")
    print(f"metrics:    {out / 'metrics.json'}")
    print(f"checkpoint: {results['checkpoint']}")
    print(f"overlays:   {pics}/ (top: prediction with confidence, bottom: ground truth)")
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
    )
    print(report.format())
    return 0 if report.ok else 1


def cmd_data_convert(ns: argparse.Namespace) -> int:
    import shlex

    from .data import build_dataset
    from .data.convert import convert

    overrides = [f"data.dataset={ns.source}", *ns.set]
    if ns.root:
        key = "data.shards" if ns.source == "webdataset" else "data.root"
        overrides.append(f"{key}={ns.root}")
    ds = build_dataset(build_config(None, overrides).data, ns.split)
    done = convert(
        ds, ns.out, ns.format, shard_size=ns.shard_size, split=ns.split, progress=not ns.quiet
    )
    keys = {k: v for k, v in done.items() if k.startswith("data.")}
    print(f"wrote {len(ds)} images with their expressions to {ns.out} ({ns.format})")
    print(
        f"train on them: tseg train data.dataset={ns.format} "
        + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in keys.items())
    )
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from .export.onnx_export import export_onnx

    meta = export_onnx(ns.checkpoint, ns.out, check=not ns.no_check)
    print(f"wrote the ONNX graphs, tokenizer and tseg_onnx.json to {ns.out}")
    if "export_check" in meta:
        c = meta["export_check"]
        print(
            f"ONNX Runtime vs torch, max |difference|: image embeddings "
            f"{c['image_max_abs_diff']:.1e}, text embeddings {c['text_max_abs_diff']:.1e}"
        )
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    from .serve.server import serve_from_arguments  # no torch for an ONNX export folder

    return serve_from_arguments(ns)


def cmd_weights(ns: argparse.Namespace) -> int:
    from .config import to_flat
    from .models.weights import weights_report

    cfg = build_config(None, ns.overrides)
    rows = weights_report(values=to_flat(cfg), hash_files=not ns.no_hash)
    missing = 0
    for r in rows:
        state = "present" if r["present"] else "MISSING"
        missing += not r["present"]
        print(f"[{r['preset']}] {r['name']} {r.get('file') or ''}: {state}")
        print(f"    config key: {r['config_key']}   path: {r['path'] or '(not set)'}")
        if r.get("sha256"):
            print(f"    sha256: {r['sha256']}")
        if not r["present"] and r.get("source"):
            print(f"    get it from: {r['source']}")
        if r.get("note"):
            print(f"    note: {r['note']}")
    return 0


def _stack_vertical(pics: list) -> object:
    from PIL import Image

    w = max(p.width for p in pics)
    canvas = Image.new(
        "RGB", (w, sum(p.height for p in pics) + 4 * (len(pics) - 1)), (255, 255, 255)
    )
    y = 0
    for p in pics:
        canvas.paste(p, (0, y))
        y += p.height + 4
    return canvas


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
        "--tta-scales", help="scales for --tta (default: inference.tta_scales, 1,0.5,1.5,2)"
    )
    p.add_argument("--no-flip", action="store_true", help="no flipped pass in --tta")
    p.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        help="dense CRF refinement, needs the [crf] extra (default: inference.crf)",
    )
    p.add_argument("--threshold", type=float, help="foreground threshold (default 0.5)")


#: A user's own data formats (docs/own_data.md); ``tseg.data.check.OWN_DATA_NAMES``.
OWN_DATA = ("imagefolder", "coco_captions", "coco", "webdataset")


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
    t.add_argument("--out", help="run folder (same as train.out_dir=...)")
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
    e.add_argument("--max-images", type=int, default=0, help="evaluate only the first N images")
    e.add_argument("--presence", action="store_true", help="also report presence ROC AUC")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument(
        "--protocol",
        default="pairs",
        choices=["pairs", "phrasecut", "voc", "voc-zeroshot", "semantic", "semantic-zeroshot"],
        help="pairs: every (image, expression) of the checkpoint's dataset (default); "
        "phrasecut: official per-task metrics; voc: semantic segmentation mIoU from the 20 "
        "class names; voc-zeroshot: the same, dropping low-confidence classes (section 4.6); "
        "semantic(-zeroshot): the same on a dataset's own classes (coco, voc)",
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
    e.add_argument("--image-dir", help="pairs/semantic: the image folder, if not the default")
    e.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="voc-zeroshot: drop classes whose confidence is below this (default 0.5)",
    )
    add_inference_flags(e)
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("segment", help="segment an image with referring expressions")
    s.add_argument("checkpoint")
    s.add_argument(
        "image", help="an image, a folder of images, or a glob pattern like 'photos/*.jpg'"
    )
    s.add_argument("expressions", nargs="*", help='expressions, e.g. "red circle" "blue shapes"')
    s.add_argument("--expressions-file", help="a text file with one expression per line")
    s.add_argument("--out", default="segment_out", help="output folder")
    add_inference_flags(s)
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument(
        "--workers",
        type=int,
        help="processes decoding images ahead of the model (default min(4, CPUs); 0: in-process)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--classes",
        help="zero-shot semantic segmentation: 'cat,dog' or a YAML file class -> [names] (section 4.6)",
    )
    s.add_argument(
        "--class-threshold", type=float, help="drop classes below this confidence (default 0.5)"
    )
    s.add_argument("--max-pixels", type=int, help="refuse larger images (default 100,000,000)")
    s.set_defaults(func=cmd_segment)

    d = sub.add_parser(
        "demo", help="train the tiny preset on synthetic shapes on the CPU and show results"
    )
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--steps", type=int, default=0, help="override the number of training steps")
    d.add_argument(
        "--preset",
        choices=["offline", "tiny"],
        default="offline",
        help="offline: packaged pretrained encoders (default); tiny: trained from scratch",
    )
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    w = sub.add_parser(
        "weights", help="list every preset's pretrained files, where they are expected, sha256"
    )
    w.add_argument("overrides", nargs="*", help="key=value, e.g. model.image.weights=/path/vit.npz")
    w.add_argument("--no-hash", action="store_true", help="skip sha256 of large files")
    w.set_defaults(func=cmd_weights)

    x = sub.add_parser("export", help="export a checkpoint for deployment (ONNX)")
    xsub = x.add_subparsers(dest="export_format", required=True)
    xo = xsub.add_parser(
        "onnx", help="image and text encoders as ONNX graphs + tseg_onnx.json (needs [onnx])"
    )
    xo.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    xo.add_argument("--out", required=True, help="output folder")
    xo.add_argument(
        "--no-check", action="store_true", help="skip comparing ONNX Runtime with torch"
    )
    xo.set_defaults(func=cmd_export)

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
        choices=["refcoco", "refcoco+", "refcocog", "grefcoco", "phrasecut", "voc", *OWN_DATA],
    )
    c.add_argument(
        "root",
        help="the dataset folder (refer data folder, VGPhraseCut_v0, VOCdevkit, your COCO or "
        "ImageFolder folder), or for webdataset the shard pattern",
    )
    c.add_argument("--split-by", help="RefCOCO*: unc, umd or google")
    c.add_argument("--image-dir", help="image folder, if not the default under root")
    c.add_argument("--splits", nargs="+", help="PhraseCut / VOC: only these splits")
    c.add_argument(
        "--skip-images", action="store_true", help="do not check every image file exists"
    )
    c.set_defaults(func=cmd_data_check)
    v = dsub.add_parser(
        "convert",
        help="write a dataset's images and expressions as WebDataset shards (or imagefolder, "
        "coco_captions)",
    )
    v.add_argument("source", help="a data.dataset value: shapes, refcoco, voc, imagefolder, ...")
    v.add_argument("out", help="output folder")
    v.add_argument("--root", help="the source's data.root (data.shards for webdataset)")
    v.add_argument("--split", default="train", help="split to convert (default train)")
    v.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    v.add_argument(
        "--format", choices=["webdataset", "imagefolder", "coco_captions"], default="webdataset"
    )
    v.add_argument(
        "--set", action="append", default=[], help="another config key, e.g. data.split_by=umd"
    )
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_data_convert)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return int(ns.func(ns) or 0)
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except TsegError as e:  # expected failures: one line that names the thing
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
