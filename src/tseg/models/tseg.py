"""TSEG: image and text encoders meeting in a patch-text cosine similarity (section 3.1)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast

from ..config import ModelConfig
from ..data.transforms import eval_size, resize, to_tensor
from .encoders import build_image_encoder, build_text_encoder
from .image_encoder import IMAGENET_MEAN, IMAGENET_STD
from .pooling import pool, probability_maps


class TSEG(nn.Module):
    """Computes S = tau * x . y for all patches and all expressions in one pass, then pools."""

    def __init__(
        self,
        cfg: ModelConfig,
        img_size: int,
        tokenizer: PreTrainedTokenizerFast | None,
        load_weights: bool = True,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_size = img_size  # shorter side of the model input (training resolution)
        self.image_encoder = build_image_encoder(cfg.image, img_size, load_weights)
        self.text_encoder = build_text_encoder(cfg.text, tokenizer, load_weights)
        self.image_proj = nn.Linear(self.image_encoder.out_dim, cfg.embed_dim)
        self.text_proj = nn.Linear(self.text_encoder.out_dim, cfg.embed_dim)
        # Learnable temperature tau > 0, kept as a log so it stays positive (as CLIP does).
        self.log_tau = nn.Parameter(torch.tensor(math.log(cfg.tau_init)))
        self.register_buffer("pixel_mean", IMAGENET_MEAN.view(1, 3, 1, 1).clone(), persistent=False)
        self.register_buffer("pixel_std", IMAGENET_STD.view(1, 3, 1, 1).clone(), persistent=False)
        # Set by freeze_text_encoder: features of a frozen text backbone, per expression.
        self._text_feature_cache: dict[str, Tensor] | None = None

    @property
    def patch_size(self) -> int:
        """Input pixels per patch-grid cell (the image encoder's output stride)."""
        return self.image_encoder.patch_size

    def input_shape(self, h: int, w: int, scale: float = 1.0) -> tuple[int, int]:
        """The model input for an H x W image: shorter side ``scale`` x the training size, both
        sides multiples of the patch size (the aspect ratio is kept up to that rounding)."""
        return eval_size(h, w, max(1, round(self.input_size * scale)), self.patch_size)

    def preprocess(self, image: np.ndarray, scale: float = 1.0) -> Tensor:
        """uint8 RGB [H, W, 3] -> the model input [3, h, w] in [0, 1] (``input_shape``);
        ``encode_image`` normalises it."""
        return resize(to_tensor(image), self.input_shape(*image.shape[:2], scale))

    @property
    def tau(self) -> Tensor:
        """The temperature, clamped to [tau_min, tau_max] so training cannot blow it up."""
        return self.log_tau.exp().clamp(self.cfg.tau_min, self.cfg.tau_max)

    def encode_image(self, images: Tensor) -> dict[str, Tensor | tuple[int, int]]:
        """images [B, 3, H, W] in [0, 1] -> {"x": [B, N, D] unit vectors, "grid": (h, w)}."""
        out = self.image_encoder((images - self.pixel_mean) / self.pixel_std)
        x = F.normalize(self.image_proj(out["patch_tokens"]), dim=-1)  # [B, N, D]
        return {"x": x, "grid": out["grid"]}

    def freeze_text_encoder(self, cache_size: int = 500_000) -> None:
        """Freeze the text backbone (``train.text_lr_scale=0``): no gradients, no dropout, and its
        features cached per expression. A frozen encoder maps each string to one feature, so
        computing it once is exact; in training it cost about a third of every step (MiniLM on
        ~40 expressions against a 96 px image batch). The projection stays trainable."""
        self.text_encoder.requires_grad_(False)
        self.text_encoder.eval()
        self._text_feature_cache = {}
        self._text_cache_size = cache_size

    def train(self, mode: bool = True) -> TSEG:
        super().train(mode)
        if self._text_feature_cache is not None:
            self.text_encoder.eval()  # frozen: dropout stays off
        return self

    def _text_features(self, texts: list[str]) -> Tensor:
        """L strings -> text backbone features [L, D_txt]."""
        device = self.log_tau.device
        cache = self._text_feature_cache
        if cache is None:
            enc = self.text_encoder.tokenize(texts)
            return self.text_encoder(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            if len(cache) + len(new) > self._text_cache_size:
                cache.clear()  # bounded memory; rare (real datasets have ~10^5 expressions)
            enc = self.text_encoder.tokenize(new)
            with torch.no_grad():
                feats = self.text_encoder(
                    enc["input_ids"].to(device), enc["attention_mask"].to(device)
                )  # [L_new, D_txt]
            cache.update(zip(new, feats))
        return torch.stack([cache[t] for t in texts])  # [L, D_txt]

    def encode_text(self, texts: list[str]) -> Tensor:
        """L strings -> [L, D] unit vectors."""
        y = self._text_features(texts)  # [L, D_txt]
        return F.normalize(self.text_proj(y), dim=-1)  # [L, D]

    def similarity(self, x: Tensor, y: Tensor) -> Tensor:
        """Eq. 1 scaled by tau: x [B, N, D], y [L, D] -> S [B, N, L]."""
        return self.tau * torch.einsum("bnd,ld->bnl", x, y)

    def pool(self, s: Tensor) -> dict[str, Tensor]:
        """S [B, N, L] -> {"scores": [B, L], "masks": [B, N, L]} with the configured head."""
        c = self.cfg
        return pool(s, c.head, lam=c.size_lambda, p=c.size_p, eps=c.gwp_eps)

    def forward(self, images: Tensor, texts: list[str]) -> dict[str, Tensor | tuple[int, int]]:
        """images [B, 3, H, W] in [0, 1], L texts -> similarity [B, N, L], scores [B, L], masks."""
        img = self.encode_image(images)
        y = self.encode_text(texts)
        s = self.similarity(img["x"], y)  # [B, N, L]
        return {"similarity": s, "grid": img["grid"], **self.pool(s)}

    def masks_at(self, s: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
        """Patch similarities S [B, N, L] -> foreground probability maps [B, L, H, W] (section 3.3)."""
        b, _, num_texts = s.shape
        h, w = grid
        # Contiguous: the transposed view is channels-last, and F.interpolate keeps that layout,
        # so each expression's full-size map would be strided across all L of them (reading
        # one map, e.g. to threshold it, was 30x slower at L = 64).
        s_grid = s.transpose(1, 2).reshape(b, num_texts, h, w).contiguous()  # [B, L, h, w]
        return probability_maps(s_grid, self.cfg.head, size, self.cfg.cam_threshold)
