"""Evaluation: pairs (``pairs.py``), the dataset protocols (``protocols.py``), their registry and
the ``tseg eval`` command (``evaluate.py``), and the metrics they report (``metrics*.py``,
``presence.py``, ``phrasecut_subsets.py``, the grid ``oracle.py``)."""

from .evaluate import PROTOCOLS, EvalRequest, Protocol, evaluate_checkpoint
from .pairs import absent_expressions, evaluate_pairs
from .protocols import evaluate_phrasecut, evaluate_semantic, evaluate_voc

__all__ = [
    "PROTOCOLS",
    "EvalRequest",
    "Protocol",
    "absent_expressions",
    "evaluate_checkpoint",
    "evaluate_pairs",
    "evaluate_phrasecut",
    "evaluate_semantic",
    "evaluate_voc",
]
