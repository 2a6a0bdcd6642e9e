"""Checkpoints: round trip, atomic layout, strict loading with named mismatches, no pickle."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tseg.checkpoint import CheckpointError, load_checkpoint, resolve, save_checkpoint
from tseg.config import build_config
from tseg.data import build_dataset
from tseg.train import build_model


def _model(cfg):
    return build_model(cfg, build_dataset(cfg.data, "train"))


def test_round_trip_rebuilds_model_from_its_own_config(micro_cfg, tmp_path):
    model = _model(micro_cfg).eval()
    ckpt = save_checkpoint(model, micro_cfg, tmp_path / "run", step=5)
    assert ckpt.name == "ckpt-0000005"
    assert (tmp_path / "run" / "latest").read_text().strip() == ckpt.name
    loaded, cfg, path = load_checkpoint(tmp_path / "run")  # a run folder resolves to its latest
    assert cfg == micro_cfg and path == ckpt
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a = model(images, ["red circle", "squares"])["scores"]
        b = loaded(images, ["red circle", "squares"])["scores"]
    assert torch.allclose(a, b)
    assert json.loads((ckpt / "meta.json").read_text())["format_version"] == 1


def test_keeps_only_recent_checkpoints_and_no_temporaries(micro_cfg, tmp_path):
    model = _model(micro_cfg)
    for step in (1, 2, 3):
        save_checkpoint(model, micro_cfg, tmp_path, step=step, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt-0000002", "ckpt-0000003", "config.yaml", "latest"] or names == [
        "ckpt-0000002",
        "ckpt-0000003",
        "latest",
    ]


def test_missing_and_incomplete_checkpoints(micro_cfg, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve(tmp_path / "nope")
    ckpt = save_checkpoint(_model(micro_cfg), micro_cfg, tmp_path, step=1)
    (ckpt / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="'tokenizer.json' is missing"):
        load_checkpoint(ckpt)


def test_mismatching_architecture_names_the_first_tensor(micro_cfg, micro_overrides, tmp_path):
    ckpt = save_checkpoint(_model(micro_cfg), micro_cfg, tmp_path, step=1)
    state = load_file(str(ckpt / "model.safetensors"))
    state["image_proj.weight"] = torch.zeros(7, 7)
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="tensor 'image_proj.weight' has shape"):
        load_checkpoint(ckpt)
    del state["image_proj.weight"]
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="'image_proj.weight' is missing"):
        load_checkpoint(ckpt)


def test_corrupt_files_are_named(micro_cfg, tmp_path):
    ckpt = save_checkpoint(_model(micro_cfg), micro_cfg, tmp_path, step=1)
    (ckpt / "model.safetensors").write_bytes(
        b"\x80\x04garbage"
    )  # a pickle header is never unpickled
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(ckpt)
    ckpt = save_checkpoint(_model(micro_cfg), micro_cfg, tmp_path, step=2)
    (ckpt / "config.yaml").write_text("model:\n  head: nope\n")
    with pytest.raises(CheckpointError, match="'model.head'"):
        load_checkpoint(ckpt)
    ckpt = save_checkpoint(_model(micro_cfg), micro_cfg, tmp_path, step=3)
    (ckpt / "meta.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(ckpt)


def test_failed_save_leaves_previous_checkpoint_intact(micro_cfg, tmp_path, monkeypatch):
    model = _model(micro_cfg)
    first = save_checkpoint(model, micro_cfg, tmp_path, step=1)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("tseg.checkpoint.save_file", boom)
    with pytest.raises(CheckpointError, match=r"cannot save a checkpoint in .*\(disk full\)"):
        save_checkpoint(model, micro_cfg, tmp_path, step=2)
    assert resolve(tmp_path) == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    monkeypatch.undo()
    load_checkpoint(tmp_path)


def test_config_with_other_preset_round_trips(tmp_path):
    cfg = build_config(
        None, ["model.head=spa", "data.image_size=32", "model.image.depth=1", "data.train_size=4"]
    )
    save_checkpoint(_model(cfg), cfg, tmp_path, step=1)
    _, loaded, _ = load_checkpoint(tmp_path)
    assert loaded.model.head == "spa"


def test_config_of_an_earlier_version_still_loads(micro_cfg, tmp_path):
    """Checkpoints written before the inference section was nested hold its flat keys (and two
    keys nothing ever read); they load, with the old keys mapped to the new ones."""
    import yaml

    ckpt = save_checkpoint(_model(micro_cfg), micro_cfg, tmp_path / "run", step=1)
    data = yaml.safe_load((ckpt / "config.yaml").read_text())
    data["inference"] = {
        "threshold": 0.4,
        "tta": True,
        "tta_scales": "1,0.5",
        "tta_flip": False,
        "crf": False,
        "crf_iterations": 7,
        "crf_gaussian_sxy": 2.0,
        "crf_gaussian_compat": 3.0,
        "crf_bilateral_sxy": 60.0,
        "crf_bilateral_srgb": 11.0,
        "crf_bilateral_compat": 9.0,
        "class_threshold": 0.6,
        "max_pixels": 1000000,
    }
    data["eval"]["split"] = "val"
    data["train"]["tfidf_threshold"] = 0.5
    (ckpt / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    _, cfg, _ = load_checkpoint(tmp_path / "run")
    ic = cfg.inference
    assert (ic.threshold, ic.class_threshold, ic.max_pixels) == (0.4, 0.6, 1_000_000)
    assert (ic.tta.enabled, ic.tta.scales, ic.tta.flip) == (True, [1.0, 0.5], False)
    assert not ic.crf.enabled and ic.crf.iterations == 7 and ic.crf.gaussian_sxy == 2.0
    assert (ic.crf.bilateral_sxy, ic.crf.bilateral_srgb, ic.crf.bilateral_compat) == (60, 11, 9)
    assert cfg.model == micro_cfg.model and cfg.train == micro_cfg.train
