"""The old home of training and evaluation, split into ``tseg.train`` (``train``,
``train_step``, ``build_model``, ...) and ``tseg.eval`` (``evaluate_pairs``, the protocols).
Its error classes are still importable from here; everything else moved."""

from .errors import TrainingError, TrainingInterrupted

__all__ = ["TrainingError", "TrainingInterrupted"]
