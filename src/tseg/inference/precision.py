"""Inference precision: ``fp32``, ``bf16`` or ``int8`` (``inference.precision``).

* ``fp32``: the model as trained.
* ``bf16``: the image and text encoders run under ``torch.autocast`` in bfloat16; what follows
  them (similarity, pooling, masks) stays in fp32. Fast where the hardware has bf16 units (GPUs,
  CPUs with AVX512-BF16 or AMX); slower than fp32 on CPUs without them.
* ``int8``: every ``nn.Linear`` of the encoders and their projections is replaced by torch's
  dynamically quantized linear (weights int8 per output channel, activations quantized per call;
  the x86 engine uses AVX512-VNNI where the CPU has it). CPU only. Convolutions, attention's
  matrix products, normalisation and everything after the encoders stay in fp32.

``inference.text_precision`` sets the text tower apart (empty: as ``precision``): an fp32 image
tower with an int8 text tower makes new expressions cheap and leaves the maps' spatial detail to
fp32; benchmarks/precision.py measures what each combination costs in accuracy.

Why torch's ``quantize_dynamic`` and not a hand-written kernel or torchao: it is the maintained
CPU path that runs without ``torch.compile`` (torchao's int8 configs need compile to be fast on
the CPU, which would cost a compilation per input shape). Its deprecation notice is silenced
here; torch is pinned (Makefile).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import InputError
from ..models.tseg import TSEG

PRECISIONS = ("fp32", "bf16", "int8")


def prepare(model: TSEG, precision: str, device: torch.device, text_precision: str = "") -> TSEG:
    """The model to run at ``precision`` (the text tower at ``text_precision``, default the
    same): ``model`` itself, or a copy with the int8 tower(s) quantized (``model`` is left as it
    is, so a training run's evaluation never changes the weights it trains)."""
    text_precision = text_precision or precision
    for p in (precision, text_precision):
        if p not in PRECISIONS:
            raise InputError(f"precision {p!r} is not one of {', '.join(PRECISIONS)}")
    parts = [name for name, p in (("image", precision), ("text", text_precision)) if p == "int8"]
    if not parts:
        return model
    if device.type != "cpu":
        raise InputError(
            f"precision int8 runs on the CPU only (torch's dynamic quantization), not on "
            f"'{device}': use precision bf16 on a GPU"
        )
    return quantize_int8(model, parts)


def quantize_int8(model: TSEG, parts: list[str] | tuple[str, ...] = ("image", "text")) -> TSEG:
    """A copy of ``model`` whose towers named in ``parts`` ("image": the image encoder and its
    projection, "text": the text encoder and its projection) have their ``nn.Linear`` layers
    dynamically quantized to int8."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    q = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        # torch.ao's migration notice and a per-layer quantize_per_tensor deprecation warning.
        warnings.simplefilter("ignore")
        for part in parts:
            # A container, since quantize_dynamic swaps children, never its root (the
            # projection is a bare nn.Linear).
            tower = nn.ModuleDict({"encoder": getattr(q, f"{part}_encoder")})
            tower["proj"] = getattr(q, f"{part}_proj")
            # Per output channel: one scale per row of the weight. Per tensor, the offline
            # demo lost 0.75 mIoU on 40 shapes test images against 0.42 per channel (a probe
            # with benchmarks/precision.py's agreement part), mostly from MiniLM.
            spec = {nn.Linear: per_channel_dynamic_qconfig}
            quantize_dynamic(tower, spec, dtype=torch.qint8, inplace=True)
            setattr(q, f"{part}_encoder", tower["encoder"])
            setattr(q, f"{part}_proj", tower["proj"])
    return q


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """bfloat16 autocast for ``bf16``; nothing for the others."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
