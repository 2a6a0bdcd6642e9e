"""``tseg eval --tta / --crf``: the maps of ``tseg segment``'s options, and the output names them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from builders.phrasecut import make_phrasecut
from conftest import MICRO, MICRO_MODEL

import tseg.inference.crf
from tseg.checkpoint import save_checkpoint
from tseg.cli import main
from tseg.config import build_config
from tseg.data import build_dataset
from tseg.train import build_model

needs_crf = pytest.mark.skipif(
    not tseg.inference.crf.crf_available(), reason="pydensecrf not installed"
)


def save_micro(overrides: list[str], path: Path, split: str = "train") -> Path:
    cfg = build_config(None, overrides)
    torch.manual_seed(0)
    save_checkpoint(build_model(cfg, build_dataset(cfg.data, split)), cfg, path, step=1)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_micro(MICRO, tmp_path_factory.mktemp("evalopt") / "run")


def evaluate(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert main(["eval", *args, "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


@needs_crf
def test_tta_and_crf_change_the_figures_and_are_reported(run, capsys) -> None:
    plain = evaluate(capsys, str(run), "--split", "test")
    assert plain["inference"] == {
        "tta": False,
        "crf": False,
        "pamr": False,
        "threshold": 0.5,
        "presence_threshold": 0.0,
        "precision": "fp32",
        "text_precision": "fp32",
    }
    tta = evaluate(capsys, str(run), "--split", "test", "--tta", "--tta-scales", "1,2")
    assert tta["inference"]["tta"] == {"scales": [1.0, 2.0], "flip": True}
    crf = evaluate(capsys, str(run), "--split", "test", "--crf")
    assert crf["inference"]["crf"]["iterations"] == 10 and crf["inference"]["tta"] is False
    assert plain["test"]["pairs"] == tta["test"]["pairs"] == crf["test"]["pairs"]
    for other in (tta, crf):
        assert (other["test"]["miou"], other["test"]["oiou"]) != (
            plain["test"]["miou"],
            plain["test"]["oiou"],
        )


def test_one_pass_tta_equals_plain_evaluation(run, capsys) -> None:
    # TTA at scale 1 without flip is the plain single pass, image by image instead of batched.
    plain = evaluate(capsys, str(run), "--split", "test", "--presence")
    one = evaluate(capsys, str(run), "--split", "test", "--presence", "--tta", "--tta-scales", "1")
    assert one["inference"]["tta"] == {"scales": [1.0], "flip": True}
    one = evaluate(
        capsys, str(run), "--split", "test", "--presence", "--tta", "--tta-scales", "1", "--no-flip"
    )
    assert one["test"] == plain["test"]
    # --threshold is a shared option too: 0 marks every pixel foreground.
    low = evaluate(capsys, str(run), "--split", "test", "--threshold", "0")
    assert low["inference"]["threshold"] == 0.0 and low["test"] != plain["test"]


@needs_crf
def test_phrasecut_protocol_runs_crf_per_image(tmp_path, capsys, monkeypatch) -> None:
    root = make_phrasecut(tmp_path / "pc")
    run = save_micro(
        [*MICRO_MODEL, "data.dataset=phrasecut", f"data.root={root}", "data.train_split=val"],
        tmp_path / "run",
        split="val",
    )
    calls: list[int] = []
    refine = tseg.inference.crf.refine

    def counting_refine(image, probs, cfg=None):  # noqa: ANN001, ANN202
        calls.append(len(probs))
        return refine(image, probs, cfg)

    monkeypatch.setattr(tseg.inference.crf, "refine", counting_refine)
    args = [str(run), "--protocol", "phrasecut"]
    plain = evaluate(capsys, *args)
    assert calls == []
    crf = evaluate(capsys, *args, "--crf", "--tta", "--tta-scales", "1,1.5")
    assert crf["protocol"] == "phrasecut" and crf["val"]["count"] == plain["val"]["count"] == 5
    assert len(calls) == 2  # one CRF call per image, all of its distinct phrases at once
    assert crf["inference"]["crf"] and crf["inference"]["tta"]["scales"] == [1.0, 1.5]


def test_bad_tta_scales_are_named(run, capsys) -> None:
    for scales, message in (("1,x", "not a comma-separated list"), ("1,-2", "must be positive")):
        assert main(["eval", str(run), "--tta", "--tta-scales", scales]) == 2
        err = capsys.readouterr().err
        assert f"--tta-scales '{scales}'" in err and message in err


def test_choose_presence_threshold_is_stored_and_used(tmp_path, capsys) -> None:
    """`tseg eval --choose-presence-threshold` picks the gate on the first split by the rule of
    tseg.eval.presence, writes it into the checkpoint's config, and later loads use it."""
    from tseg.eval.pairs import choose_presence
    from tseg.inference import Segmenter

    run = save_micro([*MICRO, "data.shapes_absent=2"], tmp_path / "run")
    expected = choose_presence(
        Segmenter.from_checkpoint(run),
        build_dataset(build_config(None, [*MICRO, "data.shapes_absent=2"]).data, "val"),
    )
    out = evaluate(capsys, str(run), "--split", "val", "test", "--choose-presence-threshold")
    chosen = out["presence_threshold"]
    assert chosen["chosen_on"] == "val" and chosen["absent"] > 0 and chosen["present"] > 0
    assert chosen["threshold"] == pytest.approx(expected.threshold, abs=1e-6)
    assert out["inference"]["presence_threshold"] == chosen["threshold"]
    assert Segmenter.from_checkpoint(run).presence_threshold == chosen["threshold"]
    assert {"val", "test"} <= set(out)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_bad_presence_threshold_is_named(run, capsys, value) -> None:
    code = main(["eval", str(run), "--split", "test", "--presence-threshold", value])
    assert code != 0
    assert "--presence-threshold" in capsys.readouterr().err


def test_choosing_outside_the_pairs_protocol_is_named(run, capsys) -> None:
    """--choose-threshold / --choose-presence-threshold score (image, expression) pairs: another
    protocol is refused in one line, and the checkpoint is left as it was."""
    before = (next(run.glob("ckpt-*")) / "config.yaml").read_text()
    code = main(["eval", str(run), "--protocol", "voc", "--choose-threshold", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--choose-* options work with --protocol pairs" in err[0]
    assert (next(run.glob("ckpt-*")) / "config.yaml").read_text() == before


def test_a_threshold_is_chosen_and_used_per_inference_setting(tmp_path, capsys) -> None:
    """`--choose-threshold --tta` stores inference.thresholds.tta and leaves the plain one; a
    later `--tta` uses it, a plain pass the plain one, and `--threshold` overrides both."""
    from tseg.checkpoint import load_checkpoint, store_inference
    from tseg.inference import Segmenter

    run = save_micro(MICRO, tmp_path / "run")
    _, cfg, ckpt = load_checkpoint(run)
    cfg.inference.threshold = 0.9  # as if chosen for one pass (the demo's 0.9)
    store_inference(ckpt, cfg)
    assert Segmenter.from_checkpoint(run).threshold == 0.9
    assert Segmenter.from_checkpoint(run, tta=True).threshold == 0.5  # not the plain one
    tta = ["--tta", "--tta-scales", "1,2"]
    out = evaluate(capsys, str(run), "--split", "val", "test", *tta, "--choose-threshold")
    chosen = out["threshold"]
    assert chosen["setting"] == "tta" and out["inference"]["threshold"] == chosen["threshold"]
    assert Segmenter.from_checkpoint(run).threshold == 0.9  # the plain one is kept
    seg = Segmenter.from_checkpoint(run, tta=True)
    assert seg.setting == "tta" and seg.threshold == chosen["threshold"]
    assert Segmenter.from_checkpoint(run, pamr=True).setting == "pamr"
    assert Segmenter.from_checkpoint(run, tta=True, threshold=0.2).threshold == 0.2
    again = evaluate(capsys, str(run), "--split", "test", *tta)
    assert again["inference"]["threshold"] == chosen["threshold"]
    assert again["test"] == out["test"]


def test_the_presence_gate_reaches_the_pairs_metrics(run, capsys) -> None:
    """--presence-threshold empties the masks of pairs below it in evaluation, as in predict:
    a gate above every confidence leaves no foreground (mIoU 0 where every target is present)."""
    plain = evaluate(capsys, str(run), "--split", "test")
    gated = evaluate(capsys, str(run), "--split", "test", "--presence-threshold", "1.0")
    assert gated["inference"]["presence_threshold"] == 1.0
    assert plain["test"]["miou"] > 0 and gated["test"]["miou"] == 0.0
