"""An ImageFolder fixture (the Hugging Face layout): images in sub-folders and a
``metadata.jsonl`` naming each image's expressions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, value: int = 0, size: tuple[int, int] = (6, 5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_folder(root: Path) -> Path:
    write_image(root / "a.png", 10)
    write_image(root / "sub" / "b.jpg", 20)
    write_jsonl(
        root / "metadata.jsonl",
        [
            {"file_name": "a.png", "expressions": ["red circle", "the red thing"]},
            {"file_name": "sub/b.jpg", "text": "a blue square"},
            {"file_name": "a.png", "caption": "Red  Circle"},  # merged, a duplicate
        ],
    )
    return root
