"""Names on the Hugging Face Hub -> local files, through huggingface_hub's own cache and API.

Encoders and TSEG models can be named the way the ecosystem ships them: timm's
``hf-hub:timm/vit_small_patch16_384.augreg_in21k_ft_in1k``, transformers'
``google/bert_uncased_L-4_H-512_A-8``, a TSEG model's ``org/name``. Every file comes from
``huggingface_hub.hf_hub_download``, so the standard environment applies: ``HF_HOME`` /
``HF_HUB_CACHE`` say where the cache is, ``HF_HUB_OFFLINE=1`` reads only the cache. There is no
download code here. A file that is not cached while offline (or with no network) is a one-line
error, raised at once, naming the repo, the cache folder and the command that fetches it.

Loading never runs code from a repo: only weights, JSON and YAML are read, and a TSEG repo must
hold ``model.safetensors`` (a ``pytorch_model.bin`` is refused, never unpickled).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from .errors import CheckpointError, TsegError, WeightsError

HUB_PREFIX = "hf-hub:"  # timm's and open_clip's spelling of a hub name
NO_WEIGHTS = ("", "none")  # model.image.weights / model.text.weights: train from scratch
# org/name as the Hub allows it; a string with a weight-file suffix is a path, not a repo.
_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz", ".json", ".yaml", ".yml")

# TSEG model repos (``tseg export hf``): the checkpoint files, and the transformers config of a
# pretrained text encoder, so the model rebuilds without fetching its text encoder's repo.
TSEG_FILES = ("config.yaml", "meta.json", "tokenizer.json")
TEXT_CONFIG = "text_encoder/config.json"

# A pretrained text encoder's config.json bundled with a TSEG repo, by model.text.weights.
_bundled_text_configs: dict[str, Path] = {}


def repo_id(name: str | Path) -> str | None:
    """The Hub repo named by ``name`` (``hf-hub:org/name``, or ``org/name`` that is not a local
    path), else None.

    ``org/name`` whose ``org`` is a local folder (``runs/typo``) is a path, so a mistyped run
    folder is reported as missing at once rather than looked up on the Hub.
    """
    text = str(name)
    if text.startswith(HUB_PREFIX):
        return text[len(HUB_PREFIX) :]
    if (
        _REPO.fullmatch(text)
        and not text.lower().endswith(_FILE_SUFFIXES)
        and not Path(text).parent.exists()
    ):
        return text
    return None


def cache_dir() -> str:
    """The Hub cache huggingface_hub uses (``HF_HUB_CACHE``, default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host (``HF_ENDPOINT``) resolves and accepts a connection, asked once
    per process. Without a network huggingface_hub retries a failed lookup for about 25 s before
    giving up; this answers in milliseconds, so a file missing from the cache is reported at
    once online or not."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection(
            (url.hostname or "", url.port or (443 if url.scheme == "https" else 80)), timeout
        ):
            return True
    except (OSError, ValueError):
        return False


def fetch_hint(repo: str) -> str:
    return (
        f"on a connected machine run `hf download {repo}` (older huggingface_hub: "
        f"`huggingface-cli download {repo}`) and copy its cache folder here (docs/hub.md)"
    )


def not_cached(repo: str, filename: str, error: type[TsegError] = WeightsError) -> TsegError:
    why = "HF_HUB_OFFLINE is set" if is_offline() else "the Hub could not be reached"
    return error(
        f"'{repo}' ({filename}) is not in the Hugging Face cache '{cache_dir()}' and {why}: "
        f"{fetch_hint(repo)}"
    )


def cached_file(repo: str, filename: str) -> Path | None:
    """``filename`` of ``repo`` if the cache holds it (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir())
    return Path(found) if isinstance(found, str) else None


def hub_file(
    repo: str, filename: str, error: type[TsegError] = WeightsError, optional: bool = False
) -> Path | None:
    """One file of ``repo`` through ``hf_hub_download`` (the cache, or the Hub when online).

    Returns None for an ``optional`` file the repo (or, offline, the cache) does not have.

    Raises:
        ``error``: the file is not cached and cannot be fetched, or the repo does not exist.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    if is_offline() or not hub_reachable():
        found = cached_file(repo, filename)
        if found is not None or optional:
            return found
        raise not_cached(repo, filename, error)
    try:
        return Path(hf_hub_download(repo, filename, cache_dir=cache_dir()))
    except LocalEntryNotFoundError:  # not cached and offline / unreachable
        if optional:
            return None
        raise not_cached(repo, filename, error) from None
    except RepositoryNotFoundError:
        raise error(
            f"'{repo}' is not a model repo on the Hub (or it is private or gated: log in with "
            f"`hf auth login`)"
        ) from None
    except (RemoteEntryNotFoundError, EntryNotFoundError):
        if optional:
            return None
        raise error(f"the Hub repo '{repo}' has no file '{filename}'") from None
    except HFValidationError as e:
        raise error(f"'{repo}' is not a valid Hub repo name: {e}") from None
    except (HfHubHTTPError, OSError) as e:
        raise error(f"'{repo}' ({filename}) could not be fetched: {e}") from None


def image_weights_file(name: str) -> Path:
    """A hub name's ``model.safetensors`` (timm's hub layout); a local path is returned as is."""
    repo = repo_id(name)
    if repo is None:
        return Path(name)
    # timm's hub repos hold model.safetensors; a pickle from the Hub is never loaded.
    return hub_file(repo, "model.safetensors")  # type: ignore[return-value]


def text_model_folder(name: str, need_weights: bool = True) -> Path:
    """A transformers model folder for ``name``: a local folder as is, a hub name as its snapshot
    folder in the cache, with config.json, the tokenizer and (when ``need_weights``) weights.

    With ``need_weights=False`` (a checkpoint brings every weight) a config.json bundled with
    the TSEG repo being loaded is used first (``remember_text_config``).
    """
    if not need_weights and name in _bundled_text_configs:
        return _bundled_text_configs[name]
    if str(name) in NO_WEIGHTS:
        raise WeightsError(
            "no text model folder or hub name given: set model.text.weights (e.g. "
            "google/bert_uncased_L-4_H-512_A-8), or train the text encoder from scratch with "
            "model.text.name=bert"
        )
    repo = repo_id(name)
    if repo is None:
        return Path(name)
    folder = hub_file(repo, "config.json").parent  # type: ignore[union-attr]
    # transformers reads these beside config.json when present (lower-casing, special tokens).
    for optional in ("tokenizer_config.json", "special_tokens_map.json"):
        hub_file(repo, optional, optional=True)
    if hub_file(repo, "tokenizer.json", optional=True) is None:
        hub_file(repo, "vocab.txt")
    weights = ("model.safetensors", "pytorch_model.bin")
    if need_weights and not any(cached_file(repo, n) for n in weights):
        if is_offline():
            raise not_cached(repo, " or ".join(weights))
        # safetensors first; a .bin is read by transformers with weights_only=True.
        if hub_file(repo, weights[0], optional=True) is None:
            hub_file(repo, weights[1])
    return folder


def tseg_model_folder(name: str) -> Path:
    """A TSEG model repo's snapshot folder in the cache (fetched when online).

    Raises:
        CheckpointError: a file is missing or not cached; the repo's weights are not safetensors.
    """
    repo = repo_id(name) or str(name)
    for f in TSEG_FILES:
        hub_file(repo, f, CheckpointError)
    weights = hub_file(repo, "model.safetensors", CheckpointError, optional=True)
    if weights is None:
        if cached_file(repo, "pytorch_model.bin") is not None or not is_offline():
            raise CheckpointError(
                f"the Hub repo '{repo}' has no model.safetensors: only safetensors weights are "
                f"loaded (a pytorch_model.bin is never unpickled)"
            )
        raise not_cached(repo, "model.safetensors", CheckpointError)
    hub_file(repo, TEXT_CONFIG, CheckpointError, optional=True)
    return weights.parent


def bundled_text_config(name: str) -> Path | None:
    """The folder of a text encoder config.json bundled with a loaded TSEG repo, if any."""
    return _bundled_text_configs.get(str(name))


def remember_text_config(ckpt: Path) -> None:
    """Note the text encoder config.json a TSEG folder bundles (``tseg export hf`` writes it), so
    rebuilding its model does not need the text encoder's own repo."""
    bundled = ckpt / TEXT_CONFIG
    if not bundled.is_file():
        return
    import yaml

    try:
        data = yaml.safe_load((ckpt / "config.yaml").read_text(encoding="utf-8")) or {}
        name = str(data["model"]["text"]["weights"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return  # the checkpoint's own checks report a bad config.yaml
    _bundled_text_configs[name] = bundled.parent
