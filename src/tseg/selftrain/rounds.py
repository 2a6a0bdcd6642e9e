"""``tseg self-train``: teacher -> pseudo masks -> student (-> pseudo masks -> student ...).

Each stage has its own folder under ``out`` and is resumable, so a killed chain continues where
it stopped and redoes nothing finished::

    out/teacher/            train.mode=weak (skipped when a teacher run is given)
    out/round1/pseudo/      tseg pseudo-label of the teacher
    out/round1/student/     train.mode=pseudo on round1/pseudo
    out/round2/pseudo/      the round-1 student as the teacher ...

A training stage with a metrics.json is finished; one with a checkpoint but no metrics.json is
resumed exactly (``train(..., resume=True)``); a pseudo-mask folder continues at its first
missing shard.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

from ..config import Config, to_flat, validate
from ..train import train
from .pseudo import pseudo_label


def _train_stage(
    cfg: Config, run_dir: Path, progress: bool, evaluate_splits: tuple[str, ...]
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` unless it is finished; resume it if it was stopped."""
    done = run_dir / "metrics.json"
    if done.is_file():
        print(f"{run_dir}: finished before, kept")
        return json.loads(done.read_text(encoding="utf-8"))
    cfg = copy.deepcopy(cfg)
    cfg.train.out_dir = str(run_dir)
    return train(cfg, run_dir, progress, evaluate_splits, resume=(run_dir / "latest").is_file())


def pseudo_overrides(cfg: Config) -> list[str]:
    """``cfg``'s pseudo-mask options (and refinement parameters) as overrides of a teacher's
    own config, so that a teacher trained with other settings labels as ``cfg`` says."""
    flat = to_flat(cfg)
    keys = [k for k in flat if k.startswith(("pseudo.", "inference.pamr.", "inference.crf."))]
    return [f"{k}={json.dumps(flat[k])}" for k in keys if not k.endswith(".enabled")]


def student_config(cfg: Config, teacher: Path, masks: Path) -> Config:
    """The student of a round: ``cfg`` with train.mode=pseudo on ``masks``, started from the
    teacher's weights (pseudo.student_init=teacher) or afresh."""
    s = copy.deepcopy(cfg)
    s.train.mode = "pseudo"
    s.data.pseudo_masks = str(masks)
    s.train.steps = cfg.pseudo.student_steps or cfg.train.steps
    s.train.init_from = str(teacher) if cfg.pseudo.student_init == "teacher" else ""
    return validate(s)


def self_train(
    cfg: Config,
    out: str | Path,
    rounds: int = 0,
    teacher: str | Path | None = None,
    progress: bool = True,
    evaluate_splits: tuple[str, ...] = ("val",),
) -> dict[str, Any]:
    """Run the chain (``rounds``: default pseudo.rounds) into ``out``; returns every stage's
    results: {"teacher": metrics or {"run": path}, "rounds": [{"pseudo": manifest, "student":
    metrics}], "student": the last student's run folder}."""
    out = Path(out)
    rounds = rounds or cfg.pseudo.rounds
    results: dict[str, Any] = {"rounds": []}
    if teacher is None:
        weak = dataclasses.replace(cfg.train, mode="weak")
        tcfg = validate(dataclasses.replace(cfg, train=weak))
        results["teacher"] = _train_stage(tcfg, out / "teacher", progress, evaluate_splits)
        prev = out / "teacher"
    else:
        prev = Path(teacher)
        results["teacher"] = {"run": str(prev)}
    for r in range(1, rounds + 1):
        here = out / f"round{r}"
        manifest = pseudo_label(prev, here / "pseudo", pseudo_overrides(cfg), progress=progress)
        student = student_config(cfg, prev, here / "pseudo")
        metrics = _train_stage(student, here / "student", progress, evaluate_splits)
        results["rounds"].append({"pseudo": manifest, "student": metrics})
        prev = here / "student"
    results["student"] = str(prev)
    return results
