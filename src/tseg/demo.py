"""``tseg demo``: train a recipe of ``configs/demo/`` on synthetic shapes on the CPU, evaluate it
on val and test, draw overlays of predictions over ground truth, and say where everything went.

A recipe with a ``pseudo`` section (the offline one) runs self-training after its weak teacher
(``tseg.selftrain``): out/teacher, out/round1/pseudo, out/round1/student; the overlays and the
top-level figures of metrics.json are then the student's, its teacher's under "teacher"."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .config import build_config, load_yaml, recipe_path
from .data import build_dataset
from .errors import ConfigError
from .inference import Segmenter
from .selftrain import self_train
from .train import train
from .viz import overlay


def run_demo(
    preset: str = "offline",
    out: str | Path = "runs/demo",
    steps: int = 0,
    progress: bool = True,
    seed: int | None = None,
    rounds: int | None = None,
) -> dict[str, Any]:
    """Train ``configs/demo/<preset>.yaml`` into ``out`` (``steps``: override its step counts;
    ``seed``: its training seed, i.e. initialisation, data order and augmentation; ``rounds``:
    self-training rounds after the teacher, default the recipe's, 0 when it has no ``pseudo``
    section), print what it does and its figures; returns the metrics written to
    ``out/metrics.json``."""
    out = Path(out)
    recipe = recipe_path(f"demo/{preset}")
    overrides = [f"train.out_dir={out}"]
    if steps:  # every training stage: the teacher's and each student's
        overrides += [f"train.steps={steps}", f"pseudo.student_steps={steps}"]
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    if rounds is not None and rounds < 0:
        raise ConfigError(f"--rounds = {rounds}: expected 0 (teacher only) or more")
    if rounds:
        overrides.append(f"pseudo.rounds={rounds}")
    cfg = build_config(recipe, overrides)
    if rounds is None:
        rounds = cfg.pseudo.rounds if "pseudo" in load_yaml(recipe) else 0
    t0 = time.time()
    kind = "from-scratch" if cfg.model.text.name == "bert" else "pretrained"
    print(
        f"tseg demo: training the '{preset}' preset ({kind} encoders) with "
        f"{cfg.model.head.upper()} on '{cfg.data.dataset}' for {cfg.train.steps} steps (CPU)"
        + (
            f", then {rounds} round(s) of self-training on its {cfg.pseudo.refine.upper()}-"
            f"refined pseudo masks ({cfg.pseudo.student_steps or cfg.train.steps} steps each)"
            if rounds
            else ""
        )
    )
    if rounds:
        chain = self_train(cfg, out, rounds, progress=progress, evaluate_splits=("val", "test"))
        teacher = chain["teacher"]
        results = {**chain["rounds"][-1]["student"]}
        results["teacher"] = {k: teacher[k] for k in ("val", "test", "threshold", "train_time_s")}
        results["pseudo"] = [
            {k: r["pseudo"].get(k) for k in ("images", "threshold", "stats", "seconds")}
            for r in chain["rounds"]
        ]
        results["train_time_s"] = round(
            teacher["train_time_s"] + sum(r["student"]["train_time_s"] for r in chain["rounds"]),
            1,
        )
    else:
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
    stages = (
        [("teacher, ", results["teacher"]), ("student, ", results)] if rounds else [("", results)]
    )
    for who, res in stages:
        for split in ("val", "test"):
            m = res[split]
            print(
                f"{who}{split:<4} mIoU {100 * m['miou']:.1f}  oIoU {100 * m['oiou']:.1f}  "
                f"prec@0.5 {100 * m['prec@0.5']:.1f}  prec@0.7 {100 * m['prec@0.7']:.1f}"
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
