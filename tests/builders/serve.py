"""What the ``tseg serve`` tests send: an untrained micro checkpoint to serve, pictures encoded
as uploads, and multipart/form-data bodies."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from conftest import MICRO
from PIL import Image

from tseg.checkpoint import save_checkpoint
from tseg.config import build_config
from tseg.data import build_dataset
from tseg.train import build_model


def micro_checkpoint(folder: Path) -> Path:
    """An untrained micro model saved in ``folder/run`` (the plumbing is under test)."""
    cfg = build_config(None, [*MICRO, f"train.out_dir={folder / 'run'}"])
    torch.manual_seed(0)
    save_checkpoint(build_model(cfg, build_dataset(cfg.data, "train")), cfg, folder / "run", 1)
    return folder / "run"


def multipart(fields: list[tuple[str, str | tuple[str, bytes]]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = "tseg-test-boundary-7d2a"
    out = io.BytesIO()
    for name, value in fields:
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            out.write(
                f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode()
            )
            out.write(value[1])
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def png(a: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
