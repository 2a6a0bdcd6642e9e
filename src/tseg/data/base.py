"""The dataset protocol every loader implements.

A referring-expression dataset is a list of images, each annotated with a list of
expressions; each expression refers to a set of pixels. Images, expressions and masks
are read by separate methods so that weakly-supervised training can be proven never
to read a mask: the weak data path only calls ``image`` and ``expressions``.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import DatasetError  # noqa: F401  (the loaders raise it; importable from here)


@runtime_checkable
class RefDataset(Protocol):
    """Images with referring expressions and (optionally readable) masks."""

    def __len__(self) -> int: ...

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 array of shape [H, W, 3]."""
        ...

    def expressions(self, idx: int) -> list[str]:
        """Every expression annotated for image ``idx`` (distinct, in a fixed order)."""
        ...

    def masks(self, idx: int) -> np.ndarray:
        """Boolean masks [K, H, W], aligned with ``expressions(idx)``."""
        ...


_WS = re.compile(r"\s+")


def normalize_expression(text: str) -> str:
    """Lower-case and collapse whitespace: the key under which two expressions are equal."""
    return _WS.sub(" ", text.strip().lower())


_LEFT_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """Swap the words "left" and "right" (for horizontal flips), keeping their case."""

    def repl(m: re.Match[str]) -> str:
        word = m.group(0)
        out = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return out.upper()
        if word[0].isupper():
            return out.capitalize()
        return out

    return _LEFT_RIGHT.sub(repl, text)
