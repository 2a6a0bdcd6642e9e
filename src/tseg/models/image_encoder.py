"""Image encoder: a timm Vision Transformer that returns patch tokens and their grid."""

from __future__ import annotations

from functools import partial

import timm
import torch
from timm.layers import HybridEmbed
from torch import Tensor, nn

from ..config import ImageEncoderConfig


class ConvStem(nn.Module):
    """Three 3x3 convolutions with total stride 4: early convolutions make a small ViT trained
    from scratch learn far faster than a single linear patch projection (Xiao et al., 2021)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.GELU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.GELU(),
            nn.Conv2d(c, c, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.GELU(),
        )
        self.num_features = c  # HybridEmbed reads the backbone's channel count from here

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # [B, C, H/4, W/4]


class ViTEncoder(nn.Module):
    """timm ViT through its public API; prefix (class/register) tokens are dropped.

    Position embeddings are interpolated on the fly for any input size that is a multiple of
    the patch size (timm's ``dynamic_img_size``), as in section 4.2 of the paper.
    """

    def __init__(self, cfg: ImageEncoderConfig, img_size: int) -> None:
        super().__init__()
        extra: dict = {}
        patch = cfg.patch_size
        if cfg.stem == "conv":
            # A stride-4 convolutional stem under timm's HybridEmbed; the ViT's own patch
            # projection then covers patch_size / 4 stem cells, so the token grid is unchanged.
            if cfg.patch_size % 4:
                raise ValueError(
                    "config key 'model.image.patch_size' must be a multiple of 4 with stem=conv"
                )
            patch = cfg.patch_size // 4
            extra["embed_layer"] = partial(
                HybridEmbed, backbone=ConvStem(cfg.stem_channels), feature_ratio=4
            )
        self.vit = timm.create_model(
            cfg.timm_model,
            pretrained=False,
            num_classes=0,
            img_size=img_size,
            patch_size=patch,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            drop_path_rate=cfg.drop_path,
            dynamic_img_size=True,
            **extra,
        )
        self.patch_size = cfg.patch_size
        self.out_dim = cfg.embed_dim

    def forward(self, images: Tensor) -> dict[str, Tensor | tuple[int, int]]:
        """images [B, 3, H, W] (normalised) -> {"patch_tokens": [B, N, D_img], "grid": (h, w)}."""
        h, w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        tokens = self.vit.forward_features(images)  # [B, prefix + N, D_img]
        tokens = tokens[:, self.vit.num_prefix_tokens :]  # [B, N, D_img]
        assert tokens.shape[1] == h * w, (tokens.shape, h, w)
        return {"patch_tokens": tokens, "grid": (h, w)}


# ImageNet statistics: timm's ViTs and most CNN checkpoints were trained with them.
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])
