"""Inference: image(s) + expressions -> per-expression confidence, probability map and mask.

``Segmenter`` (``segmenter.py``) is the one road from images to maps; ``tta.py`` and ``crf.py``
are its two options, ``segment.py`` the ``tseg segment`` command around it and ``output.py``
what that command writes.
"""

from ..config import CRFConfig, InferenceConfig, TTAConfig
from ..imageio import MAX_PIXELS, InputError, Maps, Prediction, check_expressions, load_image
from .segment import segment_files
from .segmenter import Segmenter

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
