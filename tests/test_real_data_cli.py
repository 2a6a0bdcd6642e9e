"""The real-dataset paths end to end on fixtures in the datasets' on-disk formats."""

import json

import pytest
from builders.phrasecut import make_phrasecut
from builders.refcoco import make_refcoco
from builders.voc import make_voc
from conftest import MICRO_MODEL

from tseg.cli import main
from tseg.config import build_config
from tseg.data import build_dataset

FAST = [
    *MICRO_MODEL,
    "train.batch_size=2",
    "train.steps=2",
    "data.scale_min=0.5",
    "data.scale_max=2.0",
]


@pytest.mark.parametrize(
    "dataset, make, extra",
    [
        ("refcoco", make_refcoco, ["data.split_by=unc"]),
        ("phrasecut", make_phrasecut, ["data.train_split=val"]),
        ("voc", make_voc, ["data.train_split=train"]),
    ],
)
@pytest.mark.parametrize("mode", ["weak", "full"])
def test_train_and_eval_from_fixture(tmp_path, capsys, dataset, make, extra, mode):
    root = make(tmp_path / "data")
    run = tmp_path / "run"
    args = [
        "train",
        *FAST,
        *extra,
        f"data.dataset={dataset}",
        f"data.root={root}",
        f"train.mode={mode}",
    ]
    assert main([*args, "--quiet", "--out", str(run)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.0 <= out["val"]["miou"] <= 1.0 and out["val"]["pairs"] > 0


def test_shipped_configs_parse():
    from pathlib import Path

    configs = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))
    assert len(configs) >= 6  # a recipe per dataset (each head an override) and box pretraining
    for c in configs:
        for head in ("gap", "gmp", "spa", "mpa"):
            cfg = build_config(c, [f"model.head={head}"])
            assert cfg.data.image_size == 384 and cfg.model.preset == "paper"


def test_missing_root_is_named(tmp_path):
    cfg = build_config(None, ["data.dataset=phrasecut"])
    with pytest.raises(ValueError, match="'data.root' is empty"):
        build_dataset(cfg.data, "train")
    cfg = build_config(None, ["data.dataset=phrasecut", f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(ValueError, match="nowhere"):
        build_dataset(cfg.data, "train")


def test_data_check_cli(tmp_path, capsys):
    root = make_refcoco(tmp_path / "refer")
    code = main(["data", "check", "refcoco", str(root)])
    text = capsys.readouterr().out
    assert code == 1  # a 3-image fixture does not match the published counts
    assert "refcoco" in text.lower()
    assert main(["data", "check", "voc", str(tmp_path / "empty")]) == 1
    assert "VOC2012" in capsys.readouterr().out
