"""``tseg segment EXPORT_DIR``: an ONNX export segments through OrtSegmenter, writes what the
checkpoint's torch path writes, never imports torch, and refuses what it cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO
from PIL import Image

pytest.importorskip("onnxruntime", reason="needs the [onnx] extra: pip install 'tseg[onnx]'")
pytest.importorskip("onnxscript", reason="needs the [onnx] extra: pip install 'tseg[onnx]'")

from builders.photos import photo_folder  # noqa: E402
from helpers import (
    run_cli,  # noqa: E402
    tree,  # noqa: E402
)

from tseg.checkpoint import save_checkpoint  # noqa: E402
from tseg.cli import main  # noqa: E402
from tseg.config import build_config  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.export.onnx_export import export_onnx  # noqa: E402
from tseg.inference.files import decoded_images  # noqa: E402
from tseg.inference.segment import is_export_folder  # noqa: E402
from tseg.train import build_model  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrained micro checkpoint (tau 30 spreads its maps over (0, 1)) and its export."""
    tmp = tmp_path_factory.mktemp("segment_onnx")
    cfg = build_config(None, MICRO)
    torch.manual_seed(0)
    model = build_model(cfg, build_dataset(cfg.data, "train"))
    with torch.no_grad():
        model.log_tau.fill_(np.log(30.0))
    save_checkpoint(model, cfg, tmp / "run", step=1)
    export_onnx(tmp / "run", tmp / "onnx", check=False)
    return tmp / "run", tmp / "onnx"


def _photo(path: Path, hw: tuple[int, int] = (30, 40), seed: int = 5) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((*hw, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _same_results(a: Path, b: Path) -> None:
    """Two output folders hold the same files: index and file names equal, scores to 1e-4,
    masks and label maps pixel for pixel but where a probability sits at the threshold."""
    ta, tb = tree(a), tree(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        if name.endswith("index.json"):
            assert ta[name] == tb[name]
        elif name.endswith("scores.json"):
            ra, rb = json.loads(ta[name]), json.loads(tb[name])
            assert [r["mask"] for r in ra] == [r["mask"] for r in rb]
            assert [r["expression"] for r in ra] == [r["expression"] for r in rb]
            for x, y in zip(ra, rb):
                assert abs(x["confidence"] - y["confidence"]) <= 1e-4
                assert abs(x["area_fraction"] - y["area_fraction"]) <= 1e-3
        elif name.endswith("classes.json"):
            ra, rb = json.loads(ta[name]), json.loads(tb[name])
            assert ra["classes"] == rb["classes"] and ra["threshold"] == rb["threshold"]
            for k, v in ra["confidence"].items():
                assert abs(v - rb["confidence"][k]) <= 1e-4
        elif name.endswith(".png"):
            pa, pb = (np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name)))
            assert pa.shape == pb.shape
            if "overlay" not in name:
                assert (pa != pb).mean() <= 1e-3, name


def test_an_export_folder_writes_what_its_checkpoint_writes(models, tmp_path, capsys):
    run, onnx = models
    photos = photo_folder(tmp_path / "photos")  # 4 images and a corrupt c.png
    outs = {}
    for name, model, workers in (("torch", run, "2"), ("onnx", onnx, "0"), ("onnx2", onnx, "2")):
        out = tmp_path / name
        args = ["segment", str(model), str(photos), "red circle", "squares", "--out", str(out)]
        assert main([*args, "--workers", workers, "--threshold", "0.6", "--quiet"]) == 2
        cap = capsys.readouterr()
        assert "c.png' could not be read" in cap.err
        assert "wrote 4 results" in cap.out and "1 of 5 could not be read" in cap.out
        outs[name] = out
    _same_results(outs["torch"], outs["onnx"])
    assert tree(outs["onnx"]) == tree(outs["onnx2"])  # decoding processes change nothing
    index = json.loads((outs["onnx"] / "index.json").read_text())["images"]
    assert [i["folder"] for i in index] == ["a", "b", None, "d", "e"]


def test_one_image_prints_as_the_torch_path(models, tmp_path, capsys):
    run, onnx = models
    img = _photo(tmp_path / "p.jpg")
    lines = {}
    for name, model in (("torch", run), ("onnx", onnx)):
        out = tmp_path / name
        assert (
            main(["segment", str(model), str(img), "red circle", "squares", "--out", str(out)]) == 0
        )
        lines[name] = capsys.readouterr().out.replace(str(out), "OUT").splitlines()
    assert lines["onnx"][0] == lines["torch"][0] == "wrote masks, overlay and scores to OUT/p"
    assert [ln[-12:] for ln in lines["onnx"][1:]] == [ln[-12:] for ln in lines["torch"][1:]]
    _same_results(tmp_path / "torch", tmp_path / "onnx")


def test_zero_shot_classes_on_an_export(models, tmp_path, capsys):
    run, onnx = models
    img = _photo(tmp_path / "p.png")
    names = tmp_path / "names.yaml"
    names.write_text("person: [man, woman]\ncircle: [circle, disc]\n")
    for name, model in (("torch", run), ("onnx", onnx)):
        args = [
            "segment",
            str(model),
            str(img),
            "--classes",
            str(names),
            "--out",
            str(tmp_path / name),
        ]
        assert main([*args, "--class-threshold", "0"]) == 0
    _same_results(tmp_path / "torch", tmp_path / "onnx")
    assert (tmp_path / "onnx" / "p" / "classes.png").is_file()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--precision", "int8"], "--precision int8: an ONNX export's precision is chosen when "
         "exporting: tseg export onnx --precision int8"),
        (["--precision", "fp32"], "precision is chosen when exporting"),
        (["--tta"], "--tta: an ONNX export runs without test-time augmentation"),
        (["--tta-scales", "1,2"], "--tta-scales '1,2': an ONNX export runs without test-time"),
        (["--no-flip"], "--no-flip: an ONNX export runs without test-time augmentation"),
        (["--crf"], "--crf: an ONNX export runs without the CRF"),
        (["--device", "cuda"], "--device cuda: an ONNX export runs on the CPU"),
        (["--threshold", "1.5"], "--threshold = 1.5"),  # the config's own check, as for torch
        (["--max-pixels", "0"], "--max-pixels = 0"),
    ],
)  # fmt: skip
def test_what_an_export_cannot_do_is_refused_by_name(models, tmp_path, capsys, flags, message):
    _, onnx = models
    img = _photo(tmp_path / "p.png")
    out = tmp_path / "out"
    assert main(["segment", str(onnx), str(img), "circles", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_flags_an_export_takes(models, tmp_path, capsys):
    _, onnx = models
    img = _photo(tmp_path / "p.png")
    out = tmp_path / "out"
    # Switching TTA and the CRF off is what an export does anyway; cpu is where it runs.
    args = ["segment", str(onnx), str(img), "circles", "--out", str(out), "--no-tta", "--no-crf"]
    assert main([*args, "--device", "cpu", "--threshold", "1.0", "--presence-threshold", "0"]) == 0
    mask = np.asarray(Image.open(out / "p" / "mask_00_circles.png"))
    assert mask.shape == (30, 40) and not mask.any()  # nothing is above probability 1
    capsys.readouterr()
    assert main([*args, "--max-pixels", "100"]) == 2  # 40 x 30 = 1200 pixels
    assert "above the limit of 100" in capsys.readouterr().err


def test_segmenting_an_export_never_imports_torch(models, tmp_path):
    _, onnx = models
    photos = photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    one = run_cli("segment", str(onnx), str(photos / "a.png"), "red circle", "--out", str(out))
    many = run_cli(
        "segment", str(onnx), str(photos), "circles", "--out", str(out), "--workers", "2"
    )
    assert one["rc"] == 0 and many["rc"] == 2  # c.png is corrupt
    for res in (one, many):
        assert not {"torch", "transformers", "timm", "safetensors"} & set(res["heavy"])
        assert "tseg.export.ort_segmenter" in res["tseg"]
        assert (
            "tseg.inference.segmenter" not in res["tseg"] and "tseg.checkpoint" not in res["tseg"]
        )
    assert (out / "a" / "mask_00_red_circle.png").is_file()


def test_decoded_images_in_order_with_and_without_processes(tmp_path):
    photos = photo_folder(tmp_path / "photos")
    paths = sorted(photos.iterdir())
    runs = {}
    for workers in (0, 2):
        with decoded_images(paths, 1500, workers) as items:
            runs[workers] = list(items)
    for (i, a, e), (j, b, f) in zip(runs[0], runs[2]):
        assert i == j and e == f and (a is None) == (b is None)
        assert a is None or np.array_equal(a, b)
    assert [i for i, _, _ in runs[0]] == list(range(5))
    errors = {paths[i].name: e for i, _, e in runs[0] if e}
    assert sorted(errors) == ["b.jpg", "c.png", "d.png"]  # 50 x 33, corrupt, 90 x 20
    assert "c.png' could not be read" in errors["c.png"]
    assert "above the limit of 1,500" in errors["d.png"]
    single = decoded_images(paths[:1], 1500, 4)  # one image: decoded here, no process started
    with single as items:
        assert [i for i, _, _ in items] == [0]
    assert single.workers == 0 and single.pool is None


def test_export_folder_detection(models, tmp_path):
    run, onnx = models
    assert is_export_folder(onnx) and not is_export_folder(run)
    assert not is_export_folder(tmp_path / "missing") and not is_export_folder("org/name")
