"""Bad files of issue 19: YAML aliases and duplicate keys in configs, checkpoint writes that
fail (full disk, read-only folder, a file in the way), a run killed during its final evaluation,
a corrupt training state on --resume. Each test is named in docs/bad_inputs.md."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest
import torch
from conftest import MICRO
from safetensors import SafetensorError
from safetensors.torch import load_file

from tseg import checkpoint as ckpt_mod
from tseg.checkpoint import CheckpointError, load_checkpoint, resolve, save_checkpoint
from tseg.config import ConfigError, build_config, load_yaml
from tseg.data import build_dataset
from tseg.errors import TsegError
from tseg.train import build_model, train

# --- config files ---------------------------------------------------------------------------


def billion_laughs(path: Path) -> Path:
    """The classic: nine levels of nine aliases, a few hundred bytes that expand to 9^9 keys."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for x, y in zip("bcdefghi", "abcdefgh"):
        lines.append(f"{x}: &{x} [{', '.join([f'*{y}'] * 9)}]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size < 1000
    return path


def test_yaml_aliases_are_refused_before_expansion(tmp_path):
    path = billion_laughs(tmp_path / "lol.yaml")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"lol.yaml' line 2: uses the YAML alias \*a"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="aliases are not accepted"):
        build_config(path)
    assert time.perf_counter() - t0 < 5  # nothing was expanded
    # An anchor without an alias, and a merge key's alias, in a small file.
    (tmp_path / "merge.yaml").write_text(
        "base: &b {steps: 3}\ntrain:\n  <<: *b\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="merge.yaml' line 3: uses the YAML alias"):
        load_yaml(tmp_path / "merge.yaml")


def test_yaml_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  steps: 3\n  lr: 0.1\n  steps: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dup.yaml' line 4: key 'steps' is given twice"):
        build_config(path)
    path.write_text("train: {steps: 3}\nmodel: {head: gap}\ntrain: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match="line 3: key 'train' is given twice"):
        load_yaml(path)
    # The same key in two different mappings is fine.
    path.write_text("train: {seed: 1}\ndata: {seed: 2}\n")
    assert build_config(path).data.seed == 2


def test_checkpoint_config_with_alias_or_duplicate_is_refused(micro_cfg, tmp_path):
    model = build_model(micro_cfg, build_dataset(micro_cfg.data, "train"))
    ckpt = save_checkpoint(model, micro_cfg, tmp_path, step=1)
    good = (ckpt / "config.yaml").read_text()
    (ckpt / "config.yaml").write_text(good + "x: &x 1\ny: *x\n")
    with pytest.raises(CheckpointError, match="config.yaml.*alias"):
        load_checkpoint(ckpt)
    (ckpt / "config.yaml").write_text(good + "train: {steps: 9}\n")
    with pytest.raises(CheckpointError, match="key 'train' is given twice"):
        load_checkpoint(ckpt)
    (ckpt / "config.yaml").write_text("- model\n- data\n")  # a list, not a mapping
    with pytest.raises(CheckpointError, match="config.yaml.*must be a mapping of sections"):
        load_checkpoint(ckpt)


def test_long_values_are_shortened_in_messages(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("data:\n  root: [" + ", ".join(["abcdefgh"] * 2000) + "]\n")
    with pytest.raises(ConfigError) as info:
        build_config(path)
    msg = str(info.value)
    assert "config key 'data.root'" in msg and "..." in msg and len(msg) < 200
    with pytest.raises(ConfigError) as info:
        build_config(None, ["inference.tta.scales=" + "x" * 5000])
    assert len(str(info.value)) < 200


# --- writing checkpoints --------------------------------------------------------------------


@pytest.fixture
def saved(micro_cfg, tmp_path):
    """A model and a run folder holding its checkpoint at step 1."""
    model = build_model(micro_cfg, build_dataset(micro_cfg.data, "train"))
    run = tmp_path / "run"
    save_checkpoint(model, micro_cfg, run, step=1)
    return model, run


def _intact(run: Path) -> None:
    """The step-1 checkpoint is still the latest, complete and loadable; no temporaries."""
    assert resolve(run).name == "ckpt-0000001"
    load_checkpoint(run)
    assert not list(run.glob(".tmp-ckpt-*")) and not list(run.glob(".latest.*"))


def test_disk_full_while_writing_is_one_error_and_keeps_the_last_checkpoint(
    saved, micro_cfg, monkeypatch
):
    model, run = saved

    def full(*a, **k):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        )

    monkeypatch.setattr(ckpt_mod, "save_file", full)
    with pytest.raises(CheckpointError, match=r"in '.*run': it needs free disk space") as info:
        save_checkpoint(model, micro_cfg, run, step=2)
    assert "\n" not in str(info.value) and isinstance(info.value, TsegError)
    _intact(run)
    monkeypatch.undo()

    def full_os(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "save_yaml", full_os)  # a plain OSError, later in the write
    with pytest.raises(CheckpointError, match="it needs free disk space"):
        save_checkpoint(model, micro_cfg, run, step=2)
    _intact(run)


def test_read_only_folder_or_a_file_in_the_way_is_named(saved, micro_cfg, monkeypatch, tmp_path):
    model, run = saved

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    # Tests may run as root, for whom chmod does not make a folder read-only: fail as it would.
    monkeypatch.setattr(ckpt_mod.tempfile, "mkdtemp", read_only)
    with pytest.raises(CheckpointError, match="needs a folder this process can write to"):
        save_checkpoint(model, micro_cfg, run, step=2)
    monkeypatch.undo()
    _intact(run)

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"'.*afile': it needs a folder, but a file"):
        save_checkpoint(model, micro_cfg, afile, step=1)
    assert afile.read_text() == "not a folder"
    # The same through training: the run folder is refused before any step.
    cfg = build_config(None, [*MICRO, f"train.out_dir={afile}"])
    with pytest.raises(CheckpointError, match="a file of that name exists"):
        train(cfg, progress=False, evaluate_splits=())


def test_save_syncs_and_removes_stale_temporaries(saved, micro_cfg, monkeypatch):
    model, run = saved
    old_dir, old_latest = run / ".tmp-ckpt-crashed", run / ".latest.crashed"
    old_dir.mkdir()
    (old_dir / "model.safetensors").write_bytes(b"half")
    old_latest.write_text("ckpt-")
    hour_ago = time.time() - 3600
    for p in (old_dir, old_latest):
        os.utime(p, (hour_ago, hour_ago))
    busy = run / ".tmp-ckpt-another-write"  # just made: may be a save under way; kept
    busy.mkdir()
    synced: list[Path] = []
    real = ckpt_mod.fsync_path
    monkeypatch.setattr(ckpt_mod, "fsync_path", lambda p: (synced.append(Path(p)), real(p)))
    final = save_checkpoint(model, micro_cfg, run, step=2)
    assert not old_dir.exists() and not old_latest.exists() and busy.is_dir()
    names = [p.name for p in synced]
    tmp = next(p for p in synced if p.name.startswith(".tmp-ckpt-"))
    # Each file of the temporary folder, then the folder, then the run folder (the rename),
    # all before `latest` is replaced (its own sync is of the run folder again).
    for f in ("model.safetensors", "config.yaml", "tokenizer.json", "meta.json"):
        assert tmp / f in synced
    assert names.index(tmp.name) > max(synced.index(tmp / "meta.json"), 0)
    assert synced[names.index(tmp.name) + 1] == run
    assert resolve(run) == final


# --- resuming -------------------------------------------------------------------------------


def test_resume_after_a_kill_during_the_final_evaluation_writes_metrics(
    micro_overrides, monkeypatch
):
    cfg = build_config(None, [*micro_overrides, "eval.choose_threshold=true"])
    run = Path(cfg.train.out_dir)
    import tseg.train.loop as loop

    real = loop._evaluate_split

    def killed(*a, **k):
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point runs

    monkeypatch.setattr(loop, "_evaluate_split", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert resolve(run).name == "ckpt-0000003" and not (run / "metrics.json").exists()
    before = load_file(str(resolve(run) / "model.safetensors"))
    monkeypatch.setattr(loop, "_evaluate_split", real)

    cfg = build_config(None, [*micro_overrides, "eval.choose_threshold=true"])
    results = train(cfg, progress=False, resume=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["resumed_from_step"] == 3
    assert "val" in metrics and "threshold" in metrics and results["val"] == metrics["val"]
    assert resolve(run).name == "ckpt-0000003"  # the same checkpoint, not trained further
    after = load_file(str(resolve(run) / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    loaded_cfg = load_checkpoint(run)[1]  # the chosen threshold is stored with it
    assert loaded_cfg.inference.threshold == metrics["threshold"]["threshold"]


def test_truncated_or_corrupt_training_state_is_named_on_resume(micro_overrides, tmp_path):
    cfg = build_config(None, [*micro_overrides, "train.steps=2"])
    train(cfg, progress=False, evaluate_splits=())
    state = resolve(cfg.train.out_dir) / "train_state.safetensors"
    whole = state.read_bytes()
    more = build_config(None, [*micro_overrides, "train.steps=3"])
    for broken in (whole[: len(whole) // 2], b"\x00" * 3, b"garbage" * 100):
        state.write_bytes(broken)
        with pytest.raises(CheckpointError, match=r"train_state.safetensors' is not a readable"):
            train(more, progress=False, evaluate_splits=(), resume=True)
