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
from tseg.inputs import MAX_ASPECT, load_image
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
    # found by the flag fuzz: getaddrinfo's UnicodeError for a label over 63 characters
    assert main(["serve", str(run), "--port", "0", "--host", "a" * 100]) == 2
    assert "is not a host name or address" in one_line(capsys)


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


# --- checkpoints, configs and outputs (the unclear messages and undocumented defaults) ---------


def _copy(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to)
    return to


def test_checkpoint_folders_that_are_not_whole_say_why(run, tmp_path, photo, capsys) -> None:
    from tseg.checkpoint import load_checkpoint, resolve
    from tseg.errors import CheckpointError

    copy = _copy(run, tmp_path / "copy")
    ckpt = resolve(copy)
    (ckpt / "config.yaml").write_text("")  # was read as the defaults, then blamed the weights
    with pytest.raises(CheckpointError, match=r"config.yaml': it is empty"):
        load_checkpoint(copy)
    (ckpt / "config.yaml").write_text("model: {head: [gap\n")
    with pytest.raises(CheckpointError, match=r"not valid YAML: .* at line 2, column 1$"):
        load_checkpoint(copy)
    (copy / "latest").write_text("ckpt-0000999\n")
    with pytest.raises(CheckpointError, match=r"names checkpoint 'ckpt-0000999', which is not"):
        resolve(copy)
    (copy / "latest").unlink()
    with pytest.raises(CheckpointError, match=r"holds ckpt-0000001 but no 'latest' file"):
        resolve(copy)
    # A failed `tseg train`: a run folder with its config and log but no checkpoint yet.
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "config.yaml").write_text("train: {steps: 5}\n")
    (failed / "log.jsonl").write_text("{}\n")
    with pytest.raises(CheckpointError, match=r"stopped before its first checkpoint was saved"):
        resolve(failed)
    # An ONNX export folder that lost its tseg_onnx.json.
    export = tmp_path / "export"
    export.mkdir()
    (export / "image_encoder.onnx").write_bytes(b"\x08\x01")
    out = tmp_path / "o"
    assert main(["segment", str(export), str(photo), "circle", "--out", str(out), "--quiet"]) == 2
    assert "holds ONNX graphs (image_encoder.onnx) but no tseg_onnx.json" in one_line(capsys)


def test_config_files_that_are_not_yaml_get_one_line(tmp_path, capsys, monkeypatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: 3\nmodel: x\n")
    assert main(["train", str(bad)]) == 2
    line = one_line(capsys)
    assert "is not valid YAML: expected ',' or '}', but got ':' at line 2, column 6" in line
    assert main(["train", str(tmp_path)]) == 2
    assert "is a folder, not a YAML file" in one_line(capsys)
    bad.write_bytes(b"\xff\xfe steps")
    assert main(["train", str(bad)]) == 2
    assert "is not UTF-8 text" in one_line(capsys)
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nor is it a packaged recipe: coco_box_pretrain, demo/offline" in one_line(capsys)


def test_packaged_recipes_outside_a_checkout(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here: the package's copy is read
    assert build_config("configs/refcoco.yaml").data.dataset == "refcoco"
    assert build_config("refcoco+", ["model.head=spa"]).model.head == "spa"
    (tmp_path / "configs").mkdir()  # a file of the name given wins over the packaged one
    (tmp_path / "configs" / "refcoco.yaml").write_text("model: {head: gap}\n")
    assert build_config("configs/refcoco.yaml").model.head == "gap"


def test_tseg_weights_names_a_file_of_random_bytes(tmp_path, capsys) -> None:
    for name, data in [("w.safetensors", b"\x07" * 4096), ("w.pth", b"not a zip" * 100)]:
        (tmp_path / name).write_bytes(data)
        args = ["weights", "--no-hash", f"model.image.weights={tmp_path / name}"]
        assert main(args) == 1
        lines = capsys.readouterr().out.splitlines()
        broken = [x for x in lines if "BROKEN" in x]
        assert broken and all(
            ("unreadable as .safetensors" in x) or ("neither a zip" in x) for x in broken
        )
    assert main(["weights", "--no-hash"]) == 0  # the packaged weight files are fine
    assert "BROKEN" not in capsys.readouterr().out


def test_a_rerun_into_the_same_out_keeps_the_earlier_images(run, photo, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    other = tmp_path / "b.png"
    other.write_bytes(photo.read_bytes())
    for image in (photo, other, photo):  # the third run writes ok/ again: one entry for it
        assert main(["segment", str(run), str(image), "circle", "--out", str(out), "--quiet"]) == 0
    entries = json.loads((out / "index.json").read_text())["images"]
    assert [(Path(e["image"]).name, e["folder"]) for e in entries] == [
        ("b.png", "b"),
        ("ok.png", "ok"),
    ]
    assert not list(out.glob(".index.json.*"))  # written through a temporary, renamed


def test_one_name_for_the_class_threshold(run) -> None:
    from tseg.cli import build_parser, inference_changes

    parser = build_parser()
    for command in (["eval", str(run)], ["segment", str(run), "x.png"]):
        for flag in ("--class-threshold", "--confidence-threshold"):
            ns = parser.parse_args([*command, flag, "0.7"])
            assert inference_changes(ns)[0]["class_threshold"] == 0.7
        ns = parser.parse_args(command)  # left out: the checkpoint's inference.class_threshold
        assert "class_threshold" not in inference_changes(ns)[0]


def test_an_empty_out_and_an_export_over_other_files_are_refused(run, tmp_path, capsys) -> None:
    for command in (["train"], ["segment", str(run), "x.png"], ["export", "hf", str(run)]):
        with pytest.raises(SystemExit):
            main([*command, "--out", ""])  # was the working folder (export hf: its README.md)
        assert "an empty name" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my own readme")
    for kind in ("hf", "onnx"):
        assert main(["export", kind, str(run), "--out", str(mine)]) == 2
        assert "holds other files (README.md) and no earlier export" in one_line(capsys)
    assert (mine / "README.md").read_text() == "my own readme"
    assert main(["export", "hf", str(run), "--out", str(tmp_path / "hf")]) == 0
    assert main(["export", "hf", str(run), "--out", str(tmp_path / "hf")]) == 0  # its own: again
