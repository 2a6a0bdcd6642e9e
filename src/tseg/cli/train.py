"""``tseg train``, ``pseudo-label``, ``self-train`` and ``demo``: the commands that train."""

from __future__ import annotations

import argparse
import importlib
import json

from .args import Choices, Subparsers, device_option, out_path, split_config_args


def cmd_train(ns: argparse.Namespace) -> int:
    from ..config import build_config
    from ..distributed import env_rank
    from ..train import train

    path, overrides = split_config_args(ns.args)
    if ns.out:
        overrides = [*overrides, f"train.out_dir={ns.out}"]
    results = train(build_config(path, overrides), progress=not ns.quiet, resume=ns.resume)
    if env_rank() == 0:  # under torchrun every process trains; one prints
        print(json.dumps({k: v for k, v in results.items() if k != "history"}, indent=1))
    return 0


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
    from ..distributed import env_rank
    from ..selftrain import pseudo_label

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

            from ..selftrain.store import export_coco

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
    from ..config import build_config
    from ..distributed import env_rank
    from ..selftrain import self_train

    path, overrides = split_config_args(ns.args)
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
    from ..demo import run_demo

    run_demo(ns.preset, ns.out, ns.steps, progress=not ns.quiet, seed=ns.seed, rounds=ns.rounds)
    return 0


def add_train(sub: Subparsers) -> None:
    """The ``train`` command's parser."""
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


def add_pseudo_label(sub: Subparsers) -> None:
    """The ``pseudo-label`` command's parser."""
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
    pl.add_argument("--device", default="auto", **device_option())
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


def add_self_train(sub: Subparsers) -> None:
    """The ``self-train`` command's parser."""
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


def add_demo(sub: Subparsers) -> None:
    """The ``demo`` command's parser."""
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
        choices=Choices(lambda: importlib.import_module("tseg.config").recipes("demo")),
        metavar="PRESET",
        default="offline",
        help="a recipe of configs/demo: %(choices)s (default %(default)s: packaged pretrained "
        "encoders; tiny: trained from scratch)",
    )
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
