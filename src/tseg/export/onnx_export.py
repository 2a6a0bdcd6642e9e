"""``tseg export onnx``: a checkpoint -> image and text encoder ONNX graphs + tseg_onnx.json.

Graphs (both through torch's dynamo exporter, ``torch.onnx.export(dynamo=True)``, opset 18; the
legacy TorchScript exporter fails on timm's antialiased position-embedding resampling):

* ``image_encoder.onnx``: images [B, 3, H, W] in [0, 1] -> x [B, N, D], L2-normalised projected
  patch embeddings (ImageNet normalisation happens inside). B, H and W are dynamic, with H and W
  multiples of the patch size: ``eval_size`` keeps each image's aspect ratio, so a fixed input
  would need padding or distortion the torch path does not apply, and parity would be lost.
  Position embeddings are resampled inside the graph, as in torch.
* ``text_encoder.onnx``: input_ids, attention_mask [L, T] int64 -> y [L, D], L2-normalised
  projected text embeddings; L and T dynamic.

Everything after the encoders (similarity, pooling head, masks) is cheap and lives in numpy
(``tseg.export.numpy_ops``), with the parameters it needs in ``tseg_onnx.json``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import __version__
from ..checkpoint import TOKENIZER, load_checkpoint
from ..config import to_dict
from ..models.image_encoder import IMAGENET_MEAN, IMAGENET_STD
from ..models.tseg import TSEG
from . import ExportError
from .ort_segmenter import FORMAT_VERSION, META

IMAGE_FILE, TEXT_FILE = "image_encoder.onnx", "text_encoder.onnx"
OPSET = 18  # Resize with antialias (timm's position-embedding resampling) needs 18
CHECK_TOLERANCE = 1e-3  # ORT vs torch on the embeddings; a larger gap means a broken export


class ImageGraph(nn.Module):
    """images [B, 3, H, W] in [0, 1] -> x [B, N, D] (``TSEG.encode_image``'s "x")."""

    def __init__(self, model: TSEG) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.encode_image(images)["x"]


class TextGraph(nn.Module):
    """input_ids, attention_mask [L, T] -> y [L, D]: ``TSEG.encode_text`` after tokenizing."""

    def __init__(self, model: TSEG) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        y = self.model.text_encoder(input_ids, attention_mask)  # [L, D_txt]
        return F.normalize(self.model.text_proj(y), dim=-1)  # [L, D]


class _FixedSamePadConv(nn.Module):
    """A TensorFlow-"SAME" convolution with its padding fixed for inputs whose sides divide by
    its stride. timm's ``Conv2dSame`` (like the EfficientNet port's dynamic-padding convolution)
    computes the padding from the input size with ``math.ceil`` and ``max``; traced with symbolic
    sizes, such a chain of layers sent torch.export into sympy for over 10 minutes. For sides divisible by the stride s the padding
    is max(k_eff - s, 0) whatever the size, which is what eval_size's multiples of 16 give."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        pads = []
        for k, s, d in zip(conv.weight.shape[-2:], conv.stride, conv.dilation):
            total = max((k - 1) * d + 1 - s, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        self.pad = (left, right, top, bottom)

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        x = F.pad(x, self.pad) if any(self.pad) else x
        return F.conv2d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def fix_same_padding(module: nn.Module) -> int:
    """Replace every dynamic-"SAME" convolution in ``module`` (in place); returns how many."""
    n = 0
    for name, child in list(module.named_children()):
        kind = type(child).__name__
        if kind in ("Conv2dSame", "Conv2dDynamicSamePadding"):
            setattr(module, name, _FixedSamePadConv(child))
            n += 1
        elif kind in ("MaxPool2dSame", "MaxPool2dDynamicSamePadding"):
            raise ExportError("dynamic-SAME max pooling is not supported by the ONNX export")
        else:
            n += fix_same_padding(child)
    return n


def _export(
    graph: nn.Module, args: tuple, path: Path, inputs: list[str], output: str, dynamic: dict
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation chatter; failures still raise
        torch.onnx.export(
            graph.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=[output],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file per graph (both are far below 2 GB)
            dynamic_shapes=dynamic,
            optimize=True,
            verbose=False,
        )


def export_onnx(checkpoint: str | Path, out_dir: str | Path, check: bool = True) -> dict[str, Any]:
    """Export ``checkpoint`` (a checkpoint or run folder) to ``out_dir``; returns the metadata.

    With ``check``, both graphs are run on ONNX Runtime on inputs of another shape than the
    export examples and compared with torch; a gap above 1e-3 raises ExportError.
    """
    import importlib.util

    # The exporter needs onnx and onnxscript, the check onnxruntime: fail before the slow part.
    for name in ("onnx", "onnxscript", *(["onnxruntime"] if check else [])):
        if importlib.util.find_spec(name) is None:
            raise ExportError(
                f"ONNX export needs the onnx extra ({name} is missing): pip install 'tseg[onnx]'"
            )
    model, cfg, ckpt = load_checkpoint(checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    patch = model.patch_size
    size = model.input_size

    # Image graph. A copy gets the fixed-padding convolutions, so the check below compares the
    # exported function with the untouched model.
    export_model = copy.deepcopy(model).eval()
    fix_same_padding(export_model)
    g = math.ceil(size / patch)
    images = torch.rand(2, 3, patch * g, patch * (g + 1))  # non-square: no 0/1 or h == w guards
    dim = torch.export.Dim
    image_dynamic = {
        "images": {
            0: dim("batch", min=1, max=4096),
            2: patch * dim("grid_h", min=1, max=1024),
            3: patch * dim("grid_w", min=1, max=1024),
        }
    }
    _export(ImageGraph(export_model), (images,), out / IMAGE_FILE, ["images"], "x", image_dynamic)

    # Text graph.
    enc = model.text_encoder.tokenize(["a red circle", "the small blue square left of the star"])
    text_dynamic = {
        "input_ids": {0: dim("texts", min=1, max=4096), 1: dim("tokens", min=1, max=4096)},
        "attention_mask": {0: dim("texts", min=1, max=4096), 1: dim("tokens", min=1, max=4096)},
    }
    ids, mask = enc["input_ids"], enc["attention_mask"]
    names = ["input_ids", "attention_mask"]
    _export(TextGraph(model), (ids, mask), out / TEXT_FILE, names, "y", text_dynamic)
    shutil.copyfile(ckpt / TOKENIZER, out / TOKENIZER)

    tok = model.text_encoder.tokenizer
    c, ic = cfg.model, cfg.inference
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "tseg_version": __version__,
        "checkpoint": str(ckpt),
        "image_encoder": {
            "file": IMAGE_FILE,
            "input": "images [B, 3, H, W] float32 RGB in [0, 1]; H, W multiples of patch_size",
            "output": "x [B, N, D] float32, L2-normalised; N = (H / patch_size) * (W / patch_size)",
            "input_size": size,
            "patch_size": patch,
            "eval_size": "shorter side -> input_size, each side rounded to a multiple of "
            "patch_size (tseg.data.transforms.eval_size)",
            "resize": "bilinear, align_corners=False, antialiased when a side shrinks "
            "(tseg.data.transforms.resize)",
            "mean": IMAGENET_MEAN.tolist(),
            "std": IMAGENET_STD.tolist(),
            "normalisation": "inside the graph: (images - mean) / std",
        },
        "text_encoder": {
            "file": TEXT_FILE,
            "input": "input_ids, attention_mask [L, T] int64, padded to the longest",
            "output": "y [L, D] float32, L2-normalised",
            "tokenizer": TOKENIZER,
            "max_length": int(model.text_encoder.max_length),
            "pad_token": tok.pad_token,
            "pad_id": int(tok.pad_token_id),
        },
        "embed_dim": c.embed_dim,
        "tau": float(model.tau.detach()),
        "head": c.head,
        "size_lambda": c.size_lambda,
        "size_p": c.size_p,
        "gwp_eps": c.gwp_eps,
        "cam_threshold": c.cam_threshold,
        "threshold": ic.threshold,
        "class_threshold": ic.class_threshold,
        "presence_threshold": ic.presence_threshold,
        "max_pixels": ic.max_pixels,
        "model_config": to_dict(cfg)["model"],
    }
    if ic.tta.enabled or ic.crf.enabled:
        meta["note"] = "the checkpoint enables TTA/CRF; the ONNX Runtime path does neither"
    if check:
        meta["export_check"] = check_export(model, out, enc)
    (out / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def check_export(model: TSEG, out: Path, enc: dict[str, Tensor]) -> dict[str, float]:
    """Largest |ORT - torch| of both graphs on a batch of 3 images of another shape than the
    export example and one expression; raises ExportError above ``CHECK_TOLERANCE``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    gen = torch.Generator().manual_seed(0)
    h, w = model.input_shape(4, 3)  # a portrait 3:4 image's model input
    images = torch.rand(3, 3, h, w, generator=gen)
    with torch.no_grad():
        x_ref = model.encode_image(images)["x"].numpy()
        y_ref = F.normalize(
            model.text_proj(model.text_encoder(enc["input_ids"][:1], enc["attention_mask"][:1])),
            dim=-1,
        ).numpy()
    sess = ort.InferenceSession(str(out / IMAGE_FILE), opts, providers=["CPUExecutionProvider"])
    (x,) = sess.run(None, {"images": images.numpy()})
    sess = ort.InferenceSession(str(out / TEXT_FILE), opts, providers=["CPUExecutionProvider"])
    feed = {
        "input_ids": enc["input_ids"][:1].numpy(),
        "attention_mask": enc["attention_mask"][:1].numpy(),
    }
    (y,) = sess.run(None, feed)
    diffs = {
        "image_max_abs_diff": float(np.abs(x - x_ref).max()),
        "text_max_abs_diff": float(np.abs(y - y_ref).max()),
    }
    for k, v in diffs.items():
        if not v <= CHECK_TOLERANCE:
            raise ExportError(
                f"the exported graph differs from torch: {k} = {v:.2e} > {CHECK_TOLERANCE}"
            )
    return diffs
