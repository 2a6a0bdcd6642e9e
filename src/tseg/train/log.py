"""Rank 0's training log: JSON lines in ``<run>/log.jsonl`` and, optionally, TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import TrainingError


def summary_writer_class() -> Any:
    """torch.utils.tensorboard's SummaryWriter, or a TrainingError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError(
            "config key 'train.tensorboard' = true needs the tensorboard package: "
            "pip install 'tseg[tb]' (or set train.tensorboard=false)"
        ) from None
    return SummaryWriter


class RunLog:
    """Records (dicts) appended to ``log.jsonl``; with ``tensorboard`` also scalars under ``tb/``."""

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.file = (run_dir / "log.jsonl").open("a", encoding="utf-8")
        self.tb = summary_writer_class()(str(run_dir / "tb")) if tensorboard else None

    def write(self, rec: dict[str, Any]) -> None:
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is None or "step" not in rec:
            return
        for key, value in rec.items():
            if key in ("step", "event"):
                continue
            if isinstance(value, dict):  # {"val": {"miou": ...}} -> val/miou
                for k, v in value.items():
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        self.tb.add_scalar(f"{key}/{k}", v, rec["step"])
            elif isinstance(value, (int, float)):
                self.tb.add_scalar(f"train/{key}", value, rec["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
