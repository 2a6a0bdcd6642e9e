"""The CLI end to end on a tiny synthetic set, and its errors for bad input."""

import json

import numpy as np
from PIL import Image

from tseg.cli import main


def test_train_eval_segment_end_to_end(tmp_path, micro_overrides, capsys):
    run = tmp_path / "run"
    assert main(["train", *micro_overrides, "--quiet", "--out", str(run)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.0 <= out["val"]["miou"] <= 1.0
    assert (
        (run / "latest").is_file()
        and (run / "metrics.json").is_file()
        and (run / "log.jsonl").is_file()
    )

    assert main(["eval", str(run), "--split", "test", "--presence"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert set(ev["test"]) >= {"miou", "oiou", "prec@0.5", "prec@0.9", "presence_auc"}

    img = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((45, 61, 3)) * 255).astype(np.uint8)).save(img)
    exprs = tmp_path / "exprs.txt"
    exprs.write_text("blue shapes\n\nsquares\n")
    outdir = tmp_path / "seg"
    assert (
        main(
            [
                "segment",
                str(run),
                str(img),
                "red circle",
                "--expressions-file",
                str(exprs),
                "--out",
                str(outdir),
            ]
        )
        == 0
    )
    d = outdir / "photo"
    scores = json.loads((d / "scores.json").read_text())
    assert [s["expression"] for s in scores] == ["red circle", "blue shapes", "squares"]
    for s in scores:
        m = np.asarray(Image.open(d / s["mask"]))
        assert m.shape == (45, 61) and set(np.unique(m)) <= {0, 255}
    assert (d / "overlay.png").is_file()


def test_errors_are_one_line_and_name_the_thing(tmp_path, micro_overrides, capsys):
    assert main(["train", "train.stepz=3", "--quiet"]) == 2
    assert "unknown config key 'train.stepz'" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml' does not exist" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nockpt")]) == 2
    assert "nockpt' does not exist" in capsys.readouterr().err

    run = tmp_path / "run"
    assert main(["train", *micro_overrides, "train.steps=1", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["segment", str(run), str(tmp_path / "nope.png"), "red circle"]) == 2
    assert "nope.png' does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["segment", str(run), str(bad), "red circle"]) == 2
    assert "bad.png' could not be read" in capsys.readouterr().err
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20)).save(good)
    assert main(["segment", str(run), str(good)]) == 2
    assert "no expressions given" in capsys.readouterr().err
    assert main(["segment", str(run), str(good), "   "]) == 2
    assert "is empty" in capsys.readouterr().err
    # A newline inside an expression is white space (it crashed the legend drawing); another
    # control character is refused by name.
    out = tmp_path / "nl"
    assert main(["segment", str(run), str(good), "red\ncircle", "--out", str(out)]) == 0
    scores = json.loads((out / "good" / "scores.json").read_text())
    assert [s["expression"] for s in scores] == ["red circle"] and (
        out / "good" / "overlay.png"
    ).is_file()
    assert main(["segment", str(run), str(good), "red\x00circle"]) == 2
    assert "holds a control character" in capsys.readouterr().err


def test_segment_folder_glob_tta_and_crf(tmp_path, micro_overrides, capsys):
    from tseg.inference.crf import crf_available

    run = tmp_path / "run"
    assert main(["train", *micro_overrides, "train.steps=1", "--quiet", "--out", str(run)]) == 0
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "sub/a.png"):
        Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["segment", str(run), str(photos), "circles", "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "index.json"]
    out2 = tmp_path / "out2"
    pattern = str(photos / "**" / "a.png")
    assert (
        main(["segment", str(run), pattern, "circles", "--out", str(out2), "--tta", "--quiet"]) == 0
    )
    # Same stem, two folders; index.json says which image is which.
    assert sorted(p.name for p in out2.iterdir()) == ["a", "a_1", "index.json"]
    index = json.loads((out2 / "index.json").read_text())["images"]
    assert [(e["image"], e["folder"]) for e in index] == [
        (str(photos / "a.png"), "a"),
        (str(photos / "sub" / "a.png"), "a_1"),
    ]
    capsys.readouterr()
    assert main(["segment", str(run), str(tmp_path / "none*.png"), "circles"]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert (
        main(
            ["segment", str(run), str(photos / "a.png"), "circles", "--tta", "--tta-scales", "1,x"]
        )
        == 2
    )
    assert "--tta-scales" in capsys.readouterr().err
    if crf_available():
        assert (
            main(
                ["segment", str(run), str(photos / "a.png"), "circles", "--crf", "--out", str(out)]
            )
            == 0
        )


def test_missing_expressions_file_is_named(tmp_path, capsys):
    from tseg.inference import InputError
    from tseg.inference.files import read_expressions

    try:
        read_expressions(["a"], str(tmp_path / "nope.txt"))
    except InputError as e:
        assert "expressions file" in str(e) and "nope.txt' does not exist" in str(e)
    else:
        raise AssertionError("no error for a missing expressions file")


def test_segment_zero_shot_classes(tmp_path, micro_overrides, capsys):
    run = tmp_path / "run"
    assert main(["train", *micro_overrides, "train.steps=1", "--quiet", "--out", str(run)]) == 0
    img = tmp_path / "p.png"
    Image.fromarray((np.random.default_rng(5).random((30, 40, 3)) * 255).astype(np.uint8)).save(img)
    names = tmp_path / "names.yaml"
    names.write_text("person: [man, woman]\ncircle: [circle, disc]\n")
    out = tmp_path / "zs"
    assert (
        main(
            [
                "segment",
                str(run),
                str(img),
                "--classes",
                str(names),
                "--out",
                str(out),
                "--class-threshold",
                "0",
            ]
        )
        == 0
    )
    d = out / "p"
    lab = Image.open(d / "classes.png")
    assert lab.mode == "P" and lab.size == (40, 30)
    assert set(np.unique(np.asarray(lab))) <= {0, 1, 2}
    info = json.loads((d / "classes.json").read_text())
    assert info["classes"] == ["person", "circle"] and set(info["confidence"]) == {
        "person",
        "circle",
    }
    # Threshold 1.01 drops every class: all background.
    assert (
        main(
            [
                "segment",
                str(run),
                str(img),
                "--classes",
                "a,b",
                "--out",
                str(out),
                "--class-threshold",
                "1.01",
            ]
        )
        == 0
    )
    assert set(np.unique(np.asarray(Image.open(d / "classes.png")))) == {0}
    capsys.readouterr()
    assert main(["segment", str(run), str(img), "--classes", str(tmp_path / "no.yaml")]) == 2
    assert "no.yaml' does not exist" in capsys.readouterr().err


def test_segment_flags_out_of_range(tmp_path, micro_overrides, capsys):
    run = tmp_path / "run"
    assert main(["train", *micro_overrides, "train.steps=1", "--quiet", "--out", str(run)]) == 0
    img = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(img)
    capsys.readouterr()
    for flag, value in (("--threshold", "1.5"), ("--class-threshold", "-1"), ("--max-pixels", "0")):
        assert main(["segment", str(run), str(img), "circles", flag, value]) == 2
        assert f"{flag} = " in capsys.readouterr().err
