"""Checkpoints: safetensors weights with the resolved config and tokenizer beside them.

A run folder holds checkpoints ``ckpt-<step>/`` and a ``latest`` file naming the newest one.
Each checkpoint folder is written under a temporary name and renamed into place, and ``latest``
is replaced atomically afterwards, so a crash at any moment leaves the previous checkpoint
intact. Nothing is ever unpickled: weights are safetensors, everything else is YAML or JSON.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .atomic import atomic_write_text, fsync_path
from .config import Config, ConfigError, from_dict, parse_yaml, save_yaml, yaml_problem
from .errors import CheckpointError
from .models.text_encoder import load_tokenizer
from .models.tseg import TSEG

FORMAT_VERSION = 1
WEIGHTS, CONFIG, TOKENIZER, META = "model.safetensors", "config.yaml", "tokenizer.json", "meta.json"


# A temporary older than this, left by a crashed write, is removed by the next save (a younger
# one may belong to a write still under way in another process).
STALE_S = 60.0


def _remove_stale_temporaries(run_dir: Path, own: Path) -> None:
    """Remove ``.tmp-ckpt-*`` folders and ``.latest.*`` files that a crashed earlier save left
    in ``run_dir``: those older than this save's own temporary folder ``own`` (and than
    ``STALE_S``, so a save under way in another process is left alone)."""
    try:
        mine = own.stat().st_mtime
    except OSError:
        return
    cutoff = min(mine, time.time() - STALE_S)
    for p in [*run_dir.glob(".tmp-ckpt-*"), *run_dir.glob(".latest.*")]:
        try:
            if p == own or p.stat().st_mtime >= cutoff:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except OSError:
            pass


def save_error(run_dir: Path, e: Exception) -> CheckpointError:
    """An OSError or SafetensorError met while saving into ``run_dir`` -> one line saying what
    is needed."""
    code = getattr(e, "errno", None)
    detail = getattr(e, "strerror", None) or str(e)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e):
        need = "free disk space (the device is full)"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        need = "a folder this process can write to"
    elif code in (errno.ENOTDIR, errno.EEXIST) or (run_dir.exists() and not run_dir.is_dir()):
        need = "a folder, but a file of that name exists"
    else:
        need = "a folder it can write to"
    return CheckpointError(
        f"cannot save a checkpoint in '{run_dir}': it needs {need} ({detail}); "
        "the previous checkpoint, if any, is kept"
    )


def save_checkpoint(
    model: TSEG,
    cfg: Config,
    run_dir: str | Path,
    step: int,
    extra: dict[str, torch.Tensor] | None = None,
    meta: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Save ``model`` (and optional extra tensors, e.g. optimiser state) as ``run_dir/ckpt-<step>``."""
    run_dir = Path(run_dir)
    try:
        return _save_checkpoint(model, cfg, run_dir, step, extra, meta, keep)
    except (OSError, SafetensorError) as e:
        raise save_error(run_dir, e) from None


def _save_checkpoint(
    model: TSEG,
    cfg: Config,
    run_dir: Path,
    step: int,
    extra: dict[str, torch.Tensor] | None,
    meta: dict[str, Any] | None,
    keep: int,
) -> Path:
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"ckpt-{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".tmp-ckpt-"))
    _remove_stale_temporaries(run_dir, tmp)
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        if extra:
            save_file(
                {k: v.contiguous().cpu() for k, v in extra.items()},
                str(tmp / "train_state.safetensors"),
            )
        save_yaml(cfg, tmp / CONFIG)
        model.text_encoder.tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER))
        info = {
            "format_version": FORMAT_VERSION,
            "tseg_version": __version__,
            "step": step,
            **(meta or {}),
        }
        (tmp / META).write_text(json.dumps(info, indent=1), encoding="utf-8")
        # Every byte on disk before the rename makes it visible, and the rename on disk before
        # `latest` names it: a power cut leaves the old checkpoint or the complete new one.
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_path(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(run_dir / "latest", final.name + "\n")
    old = sorted(p for p in run_dir.glob("ckpt-*") if p.is_dir() and p != final)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def resolve(path: str | Path) -> Path:
    """A checkpoint folder, a run folder whose ``latest`` file names one, or the name of a TSEG
    model on the Hugging Face Hub (``org/name``, from the cache: ``tseg.hub``)."""
    from . import hub

    p = Path(path)
    if not p.exists() and hub.repo_id(path) is not None:
        p = hub.tseg_model_folder(str(path))
    if not p.exists():
        raise CheckpointError(f"checkpoint '{p}' does not exist")
    if (p / "latest").is_file():
        name = (p / "latest").read_text(encoding="utf-8").strip()
        if not name or "/" in name or name.startswith("."):
            raise CheckpointError(f"'{p / 'latest'}' names an invalid checkpoint {name!r}")
        if not (p / name).is_dir():
            raise CheckpointError(
                f"'{p / 'latest'}' names checkpoint '{name}', which is not in '{p}' "
                f"(it holds {_held(p)})"
            )
        p = p / name
    if not p.is_dir():
        raise CheckpointError(
            f"checkpoint '{p}' is not a folder (expected {WEIGHTS}, {CONFIG}, {TOKENIZER})"
        )
    if not (p / WEIGHTS).exists() and ((p / "log.jsonl").exists() or _ckpts(p)):
        # A run folder: training stopped before its first save, or `latest` was lost.
        found = _ckpts(p)
        hint = (
            f"it holds {', '.join(x.name for x in found)} but no 'latest' file: "
            f"name one, e.g. '{found[-1]}'"
            if found
            else "training stopped before its first checkpoint was saved (see its log.jsonl)"
        )
        raise CheckpointError(f"run folder '{p}' has no checkpoint to load: {hint}")
    graphs = sorted(x.name for x in p.glob("*.onnx"))
    if graphs and not (p / WEIGHTS).exists():
        raise CheckpointError(
            f"'{p}' holds ONNX graphs ({', '.join(graphs)}) but no tseg_onnx.json, which an "
            "export folder needs beside them (run tseg export onnx again)"
        )
    for f in (WEIGHTS, CONFIG, TOKENIZER, META):
        if not (p / f).is_file():
            raise CheckpointError(f"checkpoint '{p}' is incomplete: '{f}' is missing")
    hub.remember_text_config(p)  # a bundled text encoder config.json (tseg export hf)
    return p


def _ckpts(run_dir: Path) -> list[Path]:
    """The complete-looking ``ckpt-*`` folders of a run folder, oldest first."""
    return sorted(x for x in run_dir.glob("ckpt-*") if (x / WEIGHTS).is_file())


def _held(run_dir: Path) -> str:
    found = _ckpts(run_dir)
    return ", ".join(x.name for x in found) if found else "no checkpoint"


def read_meta(ckpt: Path) -> dict[str, Any]:
    try:
        meta = json.loads((ckpt / META).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"'{ckpt / META}' is not valid JSON: {e}") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint '{ckpt}' has format version {version!r}; this tseg reads version {FORMAT_VERSION}"
        )
    return meta


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load weights strictly, naming the first missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    for k, v in own.items():
        if k not in state:
            raise CheckpointError(f"{where}: tensor '{k}' is missing from the checkpoint")
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{where}: tensor '{k}' has shape {tuple(state[k].shape)} in the checkpoint "
                f"but {tuple(v.shape)} in the model"
            )
    for k in state:
        if k not in own:
            raise CheckpointError(
                f"{where}: the checkpoint has tensor '{k}', which the model does not"
            )
    model.load_state_dict(state, strict=True)


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[TSEG, Config, Path]:
    """Rebuild the model from its own config and tokenizer, then load its weights."""
    ckpt = resolve(path)
    read_meta(ckpt)
    import yaml

    try:
        text = (ckpt / CONFIG).read_text(encoding="utf-8")
        data = parse_yaml(text, str(ckpt / CONFIG))
        if data is None or data == {}:
            # Defaults would build another architecture and blame the weights for it.
            raise ConfigError("it is empty; a checkpoint's config.yaml holds its training config")
        cfg = from_dict(data)
    except (ConfigError, UnicodeDecodeError) as e:
        raise CheckpointError(f"'{ckpt / CONFIG}': {e}") from None
    except yaml.YAMLError as e:
        raise CheckpointError(f"'{ckpt / CONFIG}' is not valid YAML: {yaml_problem(e)}") from None
    model = model_from_checkpoint(cfg, ckpt, str(ckpt / WEIGHTS))
    return model.to(device).eval(), cfg, ckpt


def model_from_checkpoint(cfg: Config, ckpt: Path, where: str) -> TSEG:
    """A model of ``cfg``'s architecture with the checkpoint's tokenizer and weights.

    The tokenizer comes from the checkpoint because its vocabulary indexes the text embeddings;
    ``where`` prefixes the error naming a missing or mis-shaped tensor.
    """
    model = TSEG(
        cfg.model, cfg.data.image_size, load_tokenizer(ckpt / TOKENIZER), load_weights=False
    )
    try:
        state = load_file(str(ckpt / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"'{ckpt / WEIGHTS}' is not a readable safetensors file: {e}"
        ) from None
    load_state(model, state, where)
    return model


def store_inference(path: str | Path, cfg: Config) -> Path:
    """Replace a checkpoint's ``config.yaml`` with ``cfg`` (e.g. a chosen
    ``inference.presence_threshold``), atomically: the weights are untouched."""
    import yaml

    from . import hub
    from .config import to_dict

    ckpt = resolve(path)
    cache = Path(hub.cache_dir()).resolve()
    if cache == ckpt.resolve() or cache in ckpt.resolve().parents or hub.repo_id(path):
        # The Hub cache's files are links into shared blobs: writing there would change what
        # every user of that cache loads, and the next download would undo it.
        raise CheckpointError(
            f"'{path}' is a Hugging Face Hub model in the cache ({ckpt}); copy it first "
            f"(cp -rL '{ckpt}' my_model) and choose the threshold on the copy"
        )
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    try:
        atomic_write_text(ckpt / CONFIG, text)
    except OSError as e:
        raise CheckpointError(f"cannot write '{ckpt / CONFIG}': {e.strerror or e}") from None
    return ckpt
