"""Hugging Face ``datasets`` fixtures, built with the library itself: tables of images,
expressions and masks, and the library's cache moved into the test's folder.

Import this module after ``pytest.importorskip("datasets")``: it imports the library.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

H, W = 12, 16


@pytest.fixture(autouse=True)
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The library's cache in the test's folder (load_dataset writes Arrow files there)."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def picture(k: int) -> Image.Image:
    a = np.zeros((H, W, 3), dtype=np.uint8)
    a[..., 0], a[..., 1] = 20 * k, np.arange(W, dtype=np.uint8)[None, :] * 10
    return Image.fromarray(a)


def mask_image(k: int) -> Image.Image:
    m = np.zeros((H, W), dtype=np.uint8)
    m[: k + 2, : k + 3] = 255
    return Image.fromarray(m)


def table(n: int, start: int = 0, masks: bool = False, text: str = "sentences") -> datasets.Dataset:
    """``n`` rows: an image, a list of strings (``sentences``) or one (``caption``), a mask."""
    rows = range(start, start + n)
    columns: dict = {"image": [picture(k) for k in rows]}
    features: dict = {"image": datasets.Image()}
    if text == "sentences":
        columns[text] = [[f"thing {k}", f"the thing {k}", f"thing {k}"] for k in rows]
        features[text] = datasets.Sequence(datasets.Value("string"))
    else:
        columns[text] = [f"caption {k}" for k in rows]
        features[text] = datasets.Value("string")
    if masks:
        columns["mask"] = [mask_image(k) for k in rows]
        features["mask"] = datasets.Image()
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))
