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
import tempfile
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
from . import ExportError, check_out
from .ort_segmenter import FORMAT_VERSION, META

IMAGE_FILE, TEXT_FILE = "image_encoder.onnx", "text_encoder.onnx"
OPSET = 18  # Resize with antialias (timm's position-embedding resampling) needs 18
CHECK_TOLERANCE = 1e-3  # ORT vs torch on the embeddings; a larger gap means a broken export
# int8 graphs against torch, on the embeddings (unit vectors), as measured by the export check
# (and on more texts): the micro test model, mean cosine 0.99997 and max |difference| 0.005
# (2026-12-04; with onnxruntime 1.32 and onnxscript 0.7.2 and the projections left fp32, image
# 1.00000 and 0.001, text 0.9990 and 0.039; the offline demo's teacher image 1.00000 and
# 0.002, text 0.9982 and 0.011);
# the paper preset with random weights, 0.9998 and 0.004; the offline demo trained
# (runs/demo_seeds/offline_s0), image 0.99996 and 0.003, text 0.9983 and 0.011; the offline
# preset with a random text projection over the pretrained MiniLM, text 0.991-0.994 (single
# texts down to 0.970) and 0.052. The bounds leave twice the worst gap seen; a broken graph is
# far beyond them (unrelated embeddings have a cosine near 0).
INT8_MEAN_COSINE = 0.98
INT8_MAX_ABS = 0.1


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


class _ExportSamePadConv(nn.Module):
    """A TensorFlow-"SAME" convolution whose padding the exporter can follow for any input size.

    timm's ``Conv2dSame`` (like the EfficientNet port's dynamic-padding convolution) computes the
    padding from the input size with ``math.ceil`` and ``max``; traced with symbolic sizes, such a
    chain of layers sent torch.export into sympy for over 10 minutes. The same padding written
    with a remainder instead: for a side n, stride s and effective kernel k >= s, SAME pads
    ``(-n) mod s + k - s`` in all (less one at the start when odd), which is what timm computes
    (``ceil(n / s) * s - n == (-n) mod s``). A fixed ``k - s`` was right only for sides that
    divide by the stride, and the offline demo's 4-pixel patches give sides that do not (a
    96 x 100 input reaches the stride-16 stage through odd sides)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.kernel = [(k - 1) * d + 1 for k, d in zip(conv.weight.shape[-2:], conv.dilation)]
        if any(k < s for k, s in zip(self.kernel, conv.stride)):
            raise ExportError("a SAME convolution with a kernel smaller than its stride")

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        pads = []
        for n, k, s in zip(x.shape[-2:], self.kernel, c.stride):
            total = (s - n % s) % s + k - s if s > 1 else k - 1
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def fix_same_padding(module: nn.Module) -> int:
    """Replace every dynamic-"SAME" convolution in ``module`` (in place); returns how many."""
    n = 0
    for name, child in list(module.named_children()):
        kind = type(child).__name__
        if kind in ("Conv2dSame", "Conv2dDynamicSamePadding"):
            setattr(module, name, _ExportSamePadConv(child))
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


PRECISIONS = ("fp32", "int8")


def export_onnx(
    checkpoint: str | Path, out_dir: str | Path, check: bool = True, precision: str = "fp32"
) -> dict[str, Any]:
    """Export ``checkpoint`` (a checkpoint or run folder) to ``out_dir``; returns the metadata.

    ``precision="int8"`` quantizes both graphs after exporting them (``quantize_graph``): the
    int8 graphs take the fp32 ones' file names, so every reader of an export folder runs them
    as it is, and ``tseg_onnx.json`` says ``"precision": "int8"`` (exports without the key are
    fp32). With ``check``, both graphs are run on ONNX Runtime on inputs of other shapes than
    the export examples and compared with torch (``check_export``); a gap above the precision's
    bounds raises ExportError.
    """
    import importlib.util

    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r}: choose {' or '.join(PRECISIONS)}")
    # The exporter needs onnx and onnxscript, the check and int8 onnxruntime: fail before the
    # slow part.
    needs_ort = check or precision == "int8"
    for name in ("onnx", "onnxscript", *(["onnxruntime"] if needs_ort else [])):
        if importlib.util.find_spec(name) is None:
            raise ExportError(
                f"ONNX export needs the onnx extra ({name} is missing): pip install 'tseg[onnx]'"
            )
    out = Path(out_dir)
    check_out(out, META)
    model, cfg, ckpt = load_checkpoint(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    # A folder that held an export is not one while this runs: a failure leaves no metadata
    # that would describe other graphs.
    (out / META).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".fp32-") as tmp:
        # int8: the fp32 graphs go to a temporary folder, their quantized copies to ``out``.
        where = out if precision == "fp32" else Path(tmp)
        enc = _export_graphs(model, where)
        if precision == "int8":
            for name in (IMAGE_FILE, TEXT_FILE):
                quantize_graph(where / name, out / name)
    shutil.copyfile(ckpt / TOKENIZER, out / TOKENIZER)
    meta = export_meta(model, cfg, ckpt, precision)
    if check:
        meta["export_check"] = check_export(model, out, enc, precision)
    (out / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def quantize_graph(src: Path, dst: Path) -> None:
    """``src`` -> ``dst`` with int8 MatMul weights: ONNX Runtime's dynamic quantization, weights
    per output channel, activations quantized per tensor at run time. Only MatMul nodes with a
    constant weight (the linear layers of both transformers and of the projections): quantizing
    every quantizable node broke some, and int8 convolutions (ConvInteger) ran slower than fp32.
    The last linear layer (the projection into the joint space, right before the L2
    normalisation; a MatMul or a Gemm) stays fp32: quantizing its input per tensor alone took
    the micro test model's mean cosine from 0.99999 to 0.995 (image) and 0.999 (text) with
    onnxruntime 1.32 and onnxscript 0.7.2; it is one small [D, E] matrix."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    consts = {t.name for t in graph.initializer}
    # Gemm too: ONNX Runtime first rewrites a Gemm with a constant weight as a MatMul named
    # "<gemm>_MatMul", and the exclusion is matched against that name.
    linears = [
        [n.name] if n.op_type == "MatMul" else [n.name, f"{n.name}_MatMul"]
        for n in graph.node
        if n.op_type in ("MatMul", "Gemm") and n.input[1] in consts
    ]

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" warning goes to the root logger
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=linears[-1] if linears else [],
        )
    finally:
        root.setLevel(level)


def _export_graphs(model: TSEG, out: Path) -> dict[str, Tensor]:
    """Both fp32 graphs into ``out``; returns the tokenized example expressions."""
    patch = model.patch_size
    size = model.input_size

    # Image graph. A copy gets the export-friendly SAME convolutions, so the check compares the
    # exported function with the untouched model.
    export_model = copy.deepcopy(model).eval()
    fix_same_padding(export_model)
    # The example's sides are multiples of 16 (the deepest stride of both image encoders) and
    # give neither the training grid nor a square one: a side that equals the trained grid's
    # (the hybrid's "resample the position embedding?" test) or a square input would be
    # specialised into the graph, which then fails on every other shape.
    m = math.lcm(patch, 16)
    g = math.ceil(size / m)
    images = torch.rand(2, 3, m * (g + 1), m * (g + 2))
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
    return enc


def export_meta(model: TSEG, cfg: Any, ckpt: Path, precision: str) -> dict[str, Any]:
    """``tseg_onnx.json``'s content (without ``export_check``)."""
    patch = model.patch_size
    size = model.input_size
    tok = model.text_encoder.tokenizer
    c, ic = cfg.model, cfg.inference
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "tseg_version": __version__,
        "checkpoint": str(ckpt),
        "precision": precision,
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
    if precision == "int8":
        meta["quantization"] = (
            "onnxruntime.quantization.quantize_dynamic: the weights of MatMul nodes int8 per "
            "output channel, their inputs uint8 per tensor at run time; the last projection "
            "and everything else fp32"
        )
    return meta


def check_export(
    model: TSEG, out: Path, enc: dict[str, Tensor], precision: str = "fp32"
) -> dict[str, float]:
    """Both graphs on ONNX Runtime against torch: 3 images of a portrait 3:4 input size and one
    whose sides need not divide by 16 (neither is the export example's), and both example
    expressions. fp32: the largest |ORT - torch| of the embeddings must be at most
    ``CHECK_TOLERANCE``; int8: the cosines of the embeddings (each patch's and each text's)
    with torch's must average ``INT8_MEAN_COSINE`` or more and the largest |difference| stay
    within ``INT8_MAX_ABS``. Raises ExportError otherwise; returns the figures."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    gen = torch.Generator().manual_seed(0)
    size, patch = model.input_size, model.patch_size
    batches = [
        torch.rand(3, 3, *model.input_shape(4, 3), generator=gen),
        torch.rand(1, 3, size, size + patch, generator=gen),
    ]
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        x_ref = [model.encode_image(b)["x"].numpy() for b in batches]
        y_ref = F.normalize(model.text_proj(model.text_encoder(ids, mask)), dim=-1).numpy()
    sess = ort.InferenceSession(str(out / IMAGE_FILE), opts, providers=["CPUExecutionProvider"])
    x = [sess.run(None, {"images": b.numpy()})[0] for b in batches]
    sess = ort.InferenceSession(str(out / TEXT_FILE), opts, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    pairs = {
        "image": (np.concatenate([a.reshape(-1, a.shape[-1]) for a in x]),
                  np.concatenate([a.reshape(-1, a.shape[-1]) for a in x_ref])),
        "text": (y, y_ref),
    }  # fmt: skip
    figures: dict[str, float] = {}
    for k, (got, want) in pairs.items():
        figures[f"{k}_max_abs_diff"] = float(np.abs(got - want).max())
        if precision == "int8":
            cos = (got * want).sum(-1) / (
                np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1) + 1e-12
            )
            figures[f"{k}_mean_cosine"] = float(cos.mean())
            figures[f"{k}_min_cosine"] = float(cos.min())
    for k in pairs:
        diff = figures[f"{k}_max_abs_diff"]
        if precision == "fp32" and not diff <= CHECK_TOLERANCE:
            raise ExportError(
                f"the exported graph differs from torch: {k}_max_abs_diff = {diff:.2e} > "
                f"{CHECK_TOLERANCE}"
            )
        if precision == "int8":
            cos = figures[f"{k}_mean_cosine"]
            if not cos >= INT8_MEAN_COSINE:
                raise ExportError(
                    f"the int8 {k} encoder is too far from torch: mean cosine of the "
                    f"embeddings {cos:.4f} < {INT8_MEAN_COSINE}"
                )
            if not diff <= INT8_MAX_ABS:
                raise ExportError(
                    f"the int8 {k} encoder is too far from torch: {k}_max_abs_diff = "
                    f"{diff:.2e} > {INT8_MAX_ABS}"
                )
    return figures
