"""Why a 24 x 24 grid, and which way to get it: what each candidate grid allows (the oracle) and
what it costs to train (images/s), for the demo recipe's model on `shapes`.

    python benchmarks/grid.py            # every candidate (about 4 min on 2 quiet cores)

For each candidate (output stride of the EfficientNet-Lite0 hybrid, model input size, and the
size `shapes` is rendered at) it reports:

- the grid oracle on the `shapes` test split (``tseg.eval.oracle``: ground truth through the
  patch grid, area fraction per cell, bilinear upsampling, best global threshold), i.e. the best
  mIoU any model with that grid can reach;
- weak training images/s of the demo recipe (MPA, batch 16, ``tseg.train.train_step``), the
  median of ``--rounds`` rounds of ``--steps`` steps after ``--warmup`` steps, with the image
  backbone frozen (the recipe's) and, for the chosen candidate, fine-tuned too.

Run it on a quiet machine: the load average is recorded with the figures. Writes
benchmarks/results/grid.json and grid.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/grid.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402
from tseg.config import build_config, recipe_path  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.eval.oracle import grid_oracle  # noqa: E402
from tseg.train import build_run, train_step  # noqa: E402

# name -> overrides of the demo recipe. "render" = the size shapes are drawn at (then resized
# to the model input), so objects keep their size in pixels while the input grows.
CANDIDATES: dict[str, list[str]] = {
    "stride 16, 96 px (6 x 6)": ["model.image.patch_size=16", "data.image_size=96"],
    "stride 8, 96 px (12 x 12)": ["model.image.patch_size=8", "data.image_size=96"],
    "stride 4, 96 px (24 x 24), the recipe": ["model.image.patch_size=4", "data.image_size=96"],
    "stride 8, 192 px rendered at 96 (24 x 24)": [
        "model.image.patch_size=8",
        "data.image_size=192",
        "data.render_size=96",
    ],
}
CHOSEN = "stride 4, 96 px (24 x 24), the recipe"


def images_per_s(overrides: list[str], args: argparse.Namespace, work: Path) -> float:
    """Median training images/s over ``args.rounds`` rounds of ``args.steps`` steps."""
    cfg = build_config(
        recipe_path("demo/offline"),
        [
            *overrides,
            "data.train_size=800",
            f"train.out_dir={work}",
            f"train.threads={args.threads}",
        ],
    )
    torch.set_num_threads(args.threads)
    run = build_run(cfg, torch.device("cpu"))
    step = 0
    for _ in range(args.warmup):
        train_step(run, step)
        step += 1
    rates = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        for _ in range(args.steps):
            train_step(run, step)
            step += 1
        rates.append(args.steps * cfg.train.batch_size / (time.perf_counter() - t))
    return statistics.median(rates)


def oracle(overrides: list[str], test_size: int) -> dict[str, Any]:
    cfg = build_config(recipe_path("demo/offline"), [*overrides, f"data.test_size={test_size}"])
    test = build_dataset(cfg.data, "test")
    return grid_oracle(
        [test.masks(i) for i in range(len(test))], cfg.data.image_size, cfg.model.image.patch_size
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--test-size", type=int, default=300, help="shapes test images for the oracle")
    ap.add_argument("--work", default="runs/bench_grid")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    report: dict[str, Any] = {
        **provenance.start(
            provenance.command_line(__file__, argv),
            provenance.machine(torch_threads=torch.get_num_threads()),
        ),
        "settings": vars(args),
        "rows": {},
    }
    for name, overrides in CANDIDATES.items():
        row: dict[str, Any] = {"overrides": overrides}
        row["oracle"] = oracle(overrides, args.test_size)
        row["train_images_per_s_frozen"] = round(images_per_s(overrides, args, Path(args.work)), 2)
        if name == CHOSEN:
            tuned = [*overrides, "train.backbone_lr_scale=1.0"]
            row["train_images_per_s_finetuned"] = round(
                images_per_s(tuned, args, Path(args.work)), 2
            )
        report["rows"][name] = row
        print(name, json.dumps(row), flush=True)
    provenance.finish(report)
    write_report(Path(args.out) / "grid.json", report, markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    load = report["load_average_before"]
    lines = [
        f"Candidate grids for the demo recipe (offline preset, MPA, batch 16, "
        f"{report['settings']['threads']} threads; commit `{report['commit'][:10]}`, {m['cpu']}, load average at start "
        f"{load[0]:.2f}). Oracle: `shapes` test, ground truth through the "
        "grid.",
        "",
        "| candidate | oracle mIoU | oracle P@0.9 | training images/s (backbone frozen) | "
        "(fine-tuned) |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["rows"].items():
        tuned = r.get("train_images_per_s_finetuned")
        lines.append(
            f"| {name} | {100 * r['oracle']['miou']:.1f} | {100 * r['oracle']['prec@0.9']:.1f} | "
            f"{r['train_images_per_s_frozen']:.1f} | {f'{tuned:.1f}' if tuned else '-'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
