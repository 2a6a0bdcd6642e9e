"""Bad paths and files a user gives (issue 26): each ends in one line that names the thing."""

from __future__ import annotations

import json
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
from tseg.imageio import MAX_ASPECT, load_image
from tseg.train import build_model


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = build_config(None, MICRO)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("paths") / "run"
    save_checkpoint(build_model(cfg, build_dataset(cfg.data, "train")), cfg, path, step=1)
    return path


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "ok.png"
    Image.fromarray(np.full((12, 10, 3), 128, np.uint8)).save(path)
    return path


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_an_out_that_is_a_file_is_named(run, photo, tmp_path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert main(["segment", str(run), str(photo), "circle", "--out", str(afile), "--quiet"]) == 2
    assert "afile" in one_line(capsys)
    assert main(["data", "convert", "shapes", str(afile)]) == 2
    assert "afile" in one_line(capsys)
    assert afile.read_text() == "keep me"  # nothing lost


def test_an_expressions_file_must_be_utf8_text(run, photo, tmp_path, capsys) -> None:
    binary = tmp_path / "bin.txt"
    binary.write_bytes(bytes(range(128, 256)))
    args = ["segment", str(run), str(photo), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*args, "--expressions-file", str(binary)]) == 2
    assert "'" + str(binary) + "' is not UTF-8 text" in one_line(capsys)
    assert main([*args, "--expressions-file", str(tmp_path)]) == 2
    assert "is a folder, not a text file" in one_line(capsys)


def test_an_elongated_image_is_refused_before_allocation(run, photo, tmp_path, capsys) -> None:
    long = tmp_path / "long.png"
    Image.fromarray(np.zeros((1, 10000, 3), np.uint8)).save(long)
    with pytest.raises(InputError, match=r"10000 x 1 pixels, an aspect of 10000:1"):
        load_image(long)
    with pytest.raises(InputError, match="aspect"):
        load_image(np.zeros((2, 2 * MAX_ASPECT + 2, 3), np.uint8))
    assert load_image(np.zeros((2, 2 * MAX_ASPECT, 3), np.uint8)).shape == (2, 32, 3)  # at it
    out = tmp_path / "o"
    assert main(["segment", str(run), str(long), "circle", "--out", str(out), "--quiet"]) == 2
    assert "long.png" in one_line(capsys) and not out.exists()
    folder = tmp_path / "folder"  # in a folder it is reported and skipped, the others written
    folder.mkdir()
    for p in (long, photo):
        (folder / p.name).write_bytes(p.read_bytes())
    main(["segment", str(run), str(folder), "circle", "--out", str(out), "--quiet"])
    capsys.readouterr()
    index = {
        Path(e["image"]).name: e for e in json.loads((out / "index.json").read_text())["images"]
    }
    assert "aspect" in index["long.png"]["error"] and index["ok.png"]["folder"] == "ok"


def test_a_port_out_of_range_is_refused(run, capsys) -> None:
    assert main(["serve", str(run), "--port", "70000"]) == 2
    assert "--port = 70000 must be in [0, 65535]" in one_line(capsys)


def test_packaged_classes_by_name(run, photo, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not a checkout: the list comes from the package
    out = tmp_path / "o"
    assert main(["segment", str(run), str(photo), "--classes", "voc", "--out", str(out)]) == 0
    classes = json.dumps(json.loads((out / "ok" / "classes.json").read_text()))
    assert "tvmonitor" in classes and "pottedplant" in classes  # the 20 VOC classes


def test_export_hf_refuses_a_bad_repo_id_and_cards_only_splits(run, tmp_path, capsys) -> None:
    from tseg.export.hf import model_card

    out = tmp_path / "hf"
    assert main(["export", "hf", str(run), "--out", str(out), "--repo", "../../etc x"]) == 2
    assert "is not a Hub repo id" in one_line(capsys) and not out.exists()
    metrics = {"val": {"miou": 0.5}, "threshold": {"miou": 0.4, "threshold": 0.6}}
    card = model_card({"data": {"dataset": "shapes"}}, metrics, "me/demo", "apache-2.0")
    assert "split: val" in card and "split: threshold" not in card
