"""Presence gating: answer "nothing here" when an expression's confidence is low.

TSEG's pooled score z (paper eqs. 2-8) says how strongly an expression is present in the
image; its sigmoid is the expression's *confidence*. The gate empties the mask of every
expression whose confidence is below ``presence_threshold``; a threshold of 0 turns it off
(every sigmoid is >= 0).

Choosing the threshold (``choose_presence_threshold``), on a validation split whose pairs are
labelled present (the expression refers to something) or absent:

1. Candidates are 0 and the midpoints between consecutive distinct confidences, so no
   validation confidence lies on a candidate and the threshold sits in the middle of the gap
   it opens.
2. Each candidate t is scored by N-acc(t) + T-acc(t): the fraction of absent pairs gated
   (confidence < t) plus the fraction of present pairs kept (confidence >= t). This is
   balanced accuracy; it weighs both kinds of pair equally whatever their proportions, and
   gives the N-acc and T-acc of GRES (``tseg.metrics_gres``) when the gate is the only
   thing that empties a mask.
3. The best score wins; among equal scores the lowest threshold wins (it empties the fewest
   masks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PresenceChoice", "apply_presence_gate", "choose_presence_threshold", "gated"]


@dataclass(frozen=True)
class PresenceChoice:
    """The chosen threshold and what it scores on the split it was chosen on.

    Attributes:
        threshold: ``presence_threshold``; 0 means the gate stays off.
        n_acc: Absent pairs gated / absent pairs.
        t_acc: Present pairs kept / present pairs.
        present: Number of present pairs.
        absent: Number of absent pairs.
    """

    threshold: float
    n_acc: float
    t_acc: float
    present: int
    absent: int


def gated(confidences: Sequence[float] | np.ndarray, threshold: float) -> np.ndarray:
    """Bool [L]: which expressions the gate empties (confidence < threshold; none at 0)."""
    conf = np.asarray(confidences, dtype=np.float64)
    if threshold <= 0:
        return np.zeros(conf.shape, dtype=bool)
    return conf < threshold


def apply_presence_gate(
    masks: np.ndarray, confidences: Sequence[float] | np.ndarray, threshold: float
) -> np.ndarray:
    """A copy of ``masks`` [L, ...] (binary masks or maps) with gated expressions zeroed.

    Raises:
        ValueError: ``confidences`` is not [L] for L = ``masks.shape[0]``.
    """
    masks = np.asarray(masks)
    conf = np.asarray(confidences, dtype=np.float64)
    if masks.ndim < 1 or conf.shape != (masks.shape[0],):
        raise ValueError(f"confidences of shape {conf.shape} do not match {masks.shape[:1]} masks")
    out = masks.copy()
    out[gated(conf, threshold)] = 0
    return out


def choose_presence_threshold(
    confidences: Sequence[float] | np.ndarray, present: Sequence[Any] | np.ndarray
) -> PresenceChoice:
    """``presence_threshold`` by the rule of the module docstring.

    Args:
        confidences: Confidence of each validation pair [P].
        present: Whether each pair's expression refers to something [P] (truthy: present).

    Raises:
        ValueError: Mismatched or non-finite inputs, or no present or no absent pair (the
            rule needs both).
    """
    conf = np.asarray(confidences, dtype=np.float64)
    pos = np.asarray(present).astype(bool)
    if conf.ndim != 1 or conf.shape != pos.shape:
        raise ValueError("confidences and present labels must be 1-D and of equal length")
    if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
        raise ValueError("confidences must be finite and in [0, 1] (sigmoids of the scores)")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"choosing a presence threshold needs present and absent pairs; got {n_pos} "
            f"present and {n_neg} absent"
        )
    levels = np.unique(conf)  # sorted
    cands = np.unique(np.concatenate([[0.0], (levels[:-1] + levels[1:]) / 2]))  # sorted
    # For each candidate t: absent pairs gated (conf < t) and present pairs kept (conf >= t).
    neg_gated = np.searchsorted(np.sort(conf[~pos]), cands, side="left")
    pos_kept = n_pos - np.searchsorted(np.sort(conf[pos]), cands, side="left")
    # N-acc + T-acc over the common denominator n_pos * n_neg: integers, so ties are exact;
    # argmax takes the first, i.e. the lowest, of equal scores.
    best = int(np.argmax(neg_gated * n_pos + pos_kept * n_neg))
    return PresenceChoice(
        threshold=float(cands[best]),
        n_acc=float(neg_gated[best] / n_neg),
        t_acc=float(pos_kept[best] / n_pos),
        present=n_pos,
        absent=n_neg,
    )
