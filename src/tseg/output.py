"""Writing segmentation results: one mask PNG per expression, an overlay and a JSON of scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from .inference import Prediction
from .viz import overlay


def slug(text: str, max_len: int = 48) -> str:
    """A file-name-safe version of an expression."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return (s or "expr")[:max_len]


def write_prediction(out_dir: Path, stem: str, image: np.ndarray, preds: list[Prediction]) -> Path:
    """Write ``out_dir/<stem>/`` with mask_XX_<slug>.png, overlay.png and scores.json."""
    d = out_dir / stem
    d.mkdir(parents=True, exist_ok=True)
    records = []
    for k, p in enumerate(preds):
        name = f"mask_{k:02d}_{slug(p.expression)}.png"
        Image.fromarray(p.mask.astype(np.uint8) * 255).save(d / name)
        records.append(
            {
                "expression": p.expression,
                "confidence": round(p.confidence, 6),
                "mask": name,
                "area_fraction": round(float(p.mask.mean()), 6),
            }
        )
    scale = max(1, 256 // max(1, min(image.shape[:2])))
    masks = np.stack([p.mask for p in preds])
    overlay(
        image, masks, [p.expression for p in preds], [p.confidence for p in preds], scale=scale
    ).save(d / "overlay.png")
    (d / "scores.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    return d
