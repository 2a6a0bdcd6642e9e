"""WebDataset shard fixtures: samples written to a tar as they are, and their parts (a PNG, the
expressions JSON)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from webdataset import TarWriter


def png(value: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_tar(path: Path, samples: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with TarWriter(str(path), encoder=False, mtime=0.0) as w:
        for s in samples:
            w.write(s)
    return path


def text(exprs: object) -> bytes:
    return json.dumps({"expressions": exprs}).encode()
