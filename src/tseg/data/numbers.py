"""Checks of the numbers read from annotation files: finite numbers and plausible coordinates."""

from __future__ import annotations

import math

__all__ = ["coordinate_range", "is_number"]


def coordinate_range(height: int, width: int) -> tuple[float, float]:
    """Plausible polygon coordinates for an image: the image plus a wide margin.

    Annotation polygons may overshoot the image a little; coordinates far beyond that
    are corrupt and would overflow or exhaust memory in the C rasterisers.
    """
    size = max(height, width)
    margin = 2 * size + 1024
    return -float(margin), float(size + margin)


def is_number(x: object) -> bool:
    """True for a finite int or float (bool excluded)."""
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    return isinstance(x, float) and math.isfinite(x)
