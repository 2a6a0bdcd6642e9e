"""``tseg segment`` decodes images in DataLoader workers; a bad file is reported and skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders.photos import photo_folder
from conftest import untrained_checkpoint
from helpers import tree
from PIL import Image

from tseg.cli import main
from tseg.inference.files import ImageFiles, image_loader


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained micro checkpoint: its maps are arbitrary but deterministic."""
    return untrained_checkpoint(tmp_path_factory.mktemp("loader") / "run")


def test_workers_write_what_in_process_decoding_writes(run, tmp_path, capsys) -> None:
    photos = photo_folder(tmp_path / "photos")
    outs = {}
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        args = ["segment", str(run), str(photos), "red circle", "squares", "--out", str(out)]
        # One corrupt file: the others are still segmented, the error names it, exit status 2.
        assert main([*args, "--workers", str(workers), "--quiet"]) == 2
        cap = capsys.readouterr()
        assert "error: image" in cap.err and "c.png' could not be read" in cap.err
        assert "wrote 4 results" in cap.out and "1 of 5 could not be read" in cap.out
        outs[workers] = tree(out)
    # A folder per readable image, and index.json naming each input's folder.
    assert sorted({k.split("/")[0] for k in outs[0]}) == ["a", "b", "d", "e", "index.json"]
    assert outs[0] == outs[2]  # same files, byte for byte


def test_image_files_yields_errors_instead_of_raising(tmp_path) -> None:
    photos = photo_folder(tmp_path / "photos")
    paths = sorted(photos.iterdir())
    items = list(image_loader(paths, workers=0))
    assert [i for i, _, _ in items] == list(range(5))
    bad = [(paths[i].name, err) for i, a, err in items if a is None]
    assert len(bad) == 1 and bad[0][0] == "c.png" and "c.png' could not be read" in bad[0][1]
    _, a, err = ImageFiles(paths, max_pixels=100)[0]  # 40 x 30 = 1200 pixels
    assert a is None and "above the limit of 100" in err
    _, a, err = ImageFiles(paths)[4]
    assert err is None and a.dtype == np.uint8 and a.shape == (25, 25, 3)  # grayscale -> RGB


def test_negative_workers_is_named(run, tmp_path, capsys) -> None:
    img = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["segment", str(run), str(img), "circles", "--workers", "-1"]) == 2
    assert "--workers = -1" in capsys.readouterr().err
