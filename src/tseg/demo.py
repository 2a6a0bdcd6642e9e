"""``tseg demo``: train a recipe of ``configs/demo/`` on synthetic shapes on the CPU, evaluate it
on val and test, draw overlays of predictions over ground truth, and say where everything went."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .config import build_config, recipe_path
from .data import build_dataset
from .inference import Segmenter
from .train import train
from .viz import overlay


def run_demo(
    preset: str = "offline",
    out: str | Path = "runs/demo",
    steps: int = 0,
    progress: bool = True,
    seed: int | None = None,
) -> dict[str, Any]:
    """Train ``configs/demo/<preset>.yaml`` into ``out`` (``steps``: override its step count;
    ``seed``: its training seed, i.e. initialisation, data order and augmentation), print what it
    does and its figures; returns the metrics written to ``out/metrics.json``."""
    out = Path(out)
    overrides = [f"train.out_dir={out}", *([f"train.steps={steps}"] if steps else [])]
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    cfg = build_config(recipe_path(f"demo/{preset}"), overrides)
    t0 = time.time()
    kind = "from-scratch" if cfg.model.text.name == "bert" else "pretrained"
    print(
        f"tseg demo: training the '{preset}' preset ({kind} encoders) with "
        f"{cfg.model.head.upper()} on '{cfg.data.dataset}' for {cfg.train.steps} steps (CPU)"
    )
    results = train(cfg, progress=progress, evaluate_splits=("val", "test"))
    seg = Segmenter.from_checkpoint(results["checkpoint"])
    test = build_dataset(cfg.data, "test")
    pics = out / "overlays"
    pics.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        image, exprs = test.image(i), test.expressions(i)[:6]
        preds = seg.predict(image, exprs)
        masks = np.stack([p.mask for p in preds])
        pred_pic = overlay(image, masks, exprs, [p.confidence for p in preds], scale=4)
        gt_pic = overlay(image, test.masks(i)[:6], exprs, None, scale=4)
        _stack_vertical([pred_pic, gt_pic]).save(pics / f"test_{i:02d}.png")
    wall = time.time() - t0
    results["wall_time_s"] = round(wall, 1)
    (out / "metrics.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print()
    for split in ("val", "test"):
        m = results[split]
        print(
            f"{split:<4} mIoU {100 * m['miou']:.1f}  oIoU {100 * m['oiou']:.1f}  "
            f"prec@0.5 {100 * m['prec@0.5']:.1f}"
        )
    print(f"wall time {wall / 60:.1f} min")
    print(f"metrics:    {out / 'metrics.json'}")
    print(f"checkpoint: {results['checkpoint']}")
    print(f"overlays:   {pics}/ (top: prediction with confidence, bottom: ground truth)")
    return results


def _stack_vertical(pics: list[Image.Image]) -> Image.Image:
    w = max(p.width for p in pics)
    canvas = Image.new(
        "RGB", (w, sum(p.height for p in pics) + 4 * (len(pics) - 1)), (255, 255, 255)
    )
    y = 0
    for p in pics:
        canvas.paste(p, (0, y))
        y += p.height + 4
    return canvas
