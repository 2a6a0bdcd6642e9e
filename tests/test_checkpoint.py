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


def test_config_with_a_key_of_no_field_is_refused_by_name(micro_cfg, tmp_path):
    """A config.yaml key that is no field (e.g. the flat ``inference.tta_scales`` of an
    unreleased layout) is refused as any unknown key is, naming the file and the key."""
    import yaml

    ckpt = save_checkpoint(_model(micro_cfg), micro_cfg, tmp_path / "run", step=1)
    data = yaml.safe_load((ckpt / "config.yaml").read_text())
    data["inference"]["tta_scales"] = "1,0.5"
    (ckpt / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(
        CheckpointError, match="config.yaml'.*unknown config key 'inference.tta_scales'"
    ):
        load_checkpoint(tmp_path / "run")
