"""Inference: image(s) + expressions -> per-expression confidence, probability map and mask.

``Segmenter`` (``segmenter.py``) is the one road from images to maps; ``tta.py`` and ``crf.py``
are its two options, ``segment.py`` the ``tseg segment`` command around it, ``files.py`` what
that command reads (expressions, image files decoded ahead) and ``output.py`` what it writes.

The names below are loaded on first use (PEP 562), so importing ``tseg.inference.segment`` or
``.output`` loads no torch: ``tseg segment EXPORT_DIR`` runs an ONNX export without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import CRFConfig, InferenceConfig, TTAConfig
    from ..inputs import MAX_PIXELS, InputError, check_expressions, load_image
    from ..results import Maps, Prediction
    from .segment import segment_files
    from .segmenter import Segmenter

_WHERE = {
    "CRFConfig": "tseg.config",
    "InferenceConfig": "tseg.config",
    "TTAConfig": "tseg.config",
    "MAX_PIXELS": "tseg.inputs",
    "InputError": "tseg.inputs",
    "Maps": "tseg.results",
    "Prediction": "tseg.results",
    "check_expressions": "tseg.inputs",
    "load_image": "tseg.inputs",
    "segment_files": "tseg.inference.segment",
    "Segmenter": "tseg.inference.segmenter",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "MAX_PIXELS",
    "CRFConfig",
    "InferenceConfig",
    "InputError",
    "Maps",
    "Prediction",
    "Segmenter",
    "TTAConfig",
    "check_expressions",
    "load_image",
    "segment_files",
]
