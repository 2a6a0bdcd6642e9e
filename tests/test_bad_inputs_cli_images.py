"""Bad inputs of issue 19 at the command line and in images: options among the overrides of
``tseg train``, Pillow's own pixel limit under ``max_pixels``, and ``tseg segment``'s index of
which input each output folder holds. Each test is named in docs/bad_inputs.md."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO
from PIL import Image

from tseg.checkpoint import save_checkpoint
from tseg.cli import main
from tseg.config import build_config
from tseg.data import build_dataset
from tseg.errors import InputError
from tseg.inputs import load_image
from tseg.train import build_model

# --- tseg train's command line --------------------------------------------------------------


def test_train_options_mix_with_overrides(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_train(cfg, progress=True, resume=False):
        seen.update(cfg=cfg, progress=progress, resume=resume)
        return {"steps": cfg.train.steps}

    import tseg.train

    monkeypatch.setattr(tseg.train, "train", fake_train)
    out = tmp_path / "o"
    argv = ["train", "train.steps=7", "--quiet", "train.seed=3", "--out", str(out), "--resume"]
    assert main([*argv, "data.seed=5"]) == 0
    cfg = seen["cfg"]
    assert (cfg.train.steps, cfg.train.seed, cfg.data.seed) == (7, 3, 5)
    assert cfg.train.out_dir == str(out) and seen == {**seen, "progress": False, "resume": True}
    # A YAML file first, then overrides on both sides of an option.
    (tmp_path / "x.yaml").write_text("train: {lr: 0.01}\n")
    assert main(["train", str(tmp_path / "x.yaml"), "--quiet", "train.steps=2"]) == 0
    assert (seen["cfg"].train.lr, seen["cfg"].train.steps) == (0.01, 2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:  # an unknown option is still refused
        main(["train", "train.steps=2", "--quiett", "train.seed=1"])
    assert info.value.code == 2 and "unrecognized arguments: --quiett" in capsys.readouterr().err


# --- image sizes ----------------------------------------------------------------------------


def png_header(path: Path, w: int, h: int) -> Path:
    """A PNG that is only a header claiming ``w`` x ``h`` RGB pixels (a few dozen bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_max_pixels_is_the_only_limit(tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(small)
    with pytest.raises(InputError, match=r"'.*small.png' is 20 x 10 = 200 pixels, above the lim"):
        load_image(small, max_pixels=100)
    assert load_image(small, max_pixels=200).shape == (10, 20, 3)

    pillow_limit = Image.MAX_IMAGE_PIXELS
    between = png_header(tmp_path / "between.png", 12000, 12000)  # Pillow warns, does not refuse
    beyond = png_header(tmp_path / "beyond.png", 20000, 20000)  # Pillow refuses on opening
    assert pillow_limit < 12000**2 < 2 * pillow_limit < 20000**2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path, w in ((between, 12000), (beyond, 20000)):
            with pytest.raises(InputError, match=f"is {w} x {w} = {w * w:,} pixels, above the"):
                load_image(path)  # tseg's message at the default limit (100 megapixels)
            # Above Pillow's limits but within --max-pixels: opened (then found to hold no
            # pixel data), not refused as a decompression bomb.
            with pytest.raises(InputError, match="could not be read") as info:
                load_image(path, max_pixels=500_000_000)
            assert "decompression" not in str(info.value).lower()
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert pillow_limit == Image.MAX_IMAGE_PIXELS  # no global change left behind


# --- tseg segment's output folders ----------------------------------------------------------


def test_segment_writes_an_index_of_inputs_to_folders(tmp_path, capsys):
    cfg = build_config(None, MICRO)
    torch.manual_seed(0)
    run = tmp_path / "run"
    save_checkpoint(build_model(cfg, build_dataset(cfg.data, "train")), cfg, run, step=1)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("x.bmp", "x.tiff", "x.webp", "y.png"):
        Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(photos / name)
    (photos / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    args = ["segment", str(run), str(photos), "red circle", "--out", str(out), "--quiet"]
    assert main([*args, "--workers", "0"]) == 2  # one unreadable file
    capsys.readouterr()
    index = json.loads((out / "index.json").read_text())["images"]
    assert [(Path(e["image"]).name, e["folder"]) for e in index] == [
        ("x.bmp", "x"),
        ("x.png", None),
        ("x.tiff", "x_2"),
        ("x.webp", "x_3"),
        ("y.png", "y"),
    ]
    assert "could not be read" in index[1]["error"]
    for e in index:
        if e["folder"]:
            assert (out / e["folder"] / "scores.json").is_file()
    # Nothing readable: nothing written, not even the index (no stray --out folder).
    none = tmp_path / "none"
    assert main(["segment", str(run), str(photos / "x.png"), "red circle", "--out", str(none)]) == 2
    assert not none.exists()
