"""A folder of photos for ``tseg segment``: images of different sizes and modes, and one corrupt
file among them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo_folder(root: Path) -> Path:
    """Four images of different sizes and modes, and one corrupt file in the middle."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (30, 40), "b.jpg": (50, 33), "d.png": (20, 90)}.items():
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(root / name)
    Image.fromarray((rng.random((25, 25)) * 255).astype(np.uint8), mode="L").save(root / "e.png")
    (root / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root
