"""Inference precision: ``fp32``, ``bf16`` or ``int8`` (``inference.precision``).

* ``fp32``: the model as trained.
* ``bf16``: the image and text encoders run under ``torch.autocast`` in bfloat16; what follows
  them (similarity, pooling, masks) stays in fp32. Fast where the hardware has bf16 units (GPUs,
  CPUs with AVX512-BF16 or AMX); slower than fp32 on CPUs without them.
* ``int8``: every ``nn.Linear`` of both encoders and the projections is replaced by torch's
  dynamically quantized linear (weights int8 per output channel, activations quantized per call;
  the x86 engine uses AVX512-VNNI where the CPU has it). CPU only. Convolutions, attention's
  matrix products, normalisation and everything after the encoders stay in fp32.

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


def prepare(model: TSEG, precision: str, device: torch.device) -> TSEG:
    """The model to run at ``precision``: ``model`` itself, or an int8 copy (``model`` is left
    as it is, so a training run's evaluation never changes the weights it trains)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "int8":
        return model
    if device.type != "cpu":
        raise InputError(
            f"precision int8 runs on the CPU only (torch's dynamic quantization), not on "
            f"'{device}': use precision bf16 on a GPU"
        )
    return quantize_int8(model)


def quantize_int8(model: TSEG) -> TSEG:
    """A copy of ``model`` whose ``nn.Linear`` layers are dynamically quantized to int8."""
    from torch.ao.quantization import quantize_dynamic

    q = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        # torch.ao's migration notice and a per-layer quantize_per_tensor deprecation warning.
        warnings.simplefilter("ignore")
        quantize_dynamic(q, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return q


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """bfloat16 autocast for ``bf16``; nothing for the others."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
