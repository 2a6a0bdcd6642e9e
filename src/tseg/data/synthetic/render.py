"""The renderer of ``shapes``: 2 to 6 coloured shapes on a textured background, every mask exact.

``render_scene(rng, side, unseen)`` draws one image from a random stream: a background of two
muted colours with low-frequency noise (its colours overlap the objects', so no pixel value
alone marks an object), then objects placed by rejection so that each keeps half its pixels
visible, contrasts with the background under it and touches no object of its colour.
``shape_mask`` is each shape's exact mask, by arithmetic only (the same on every platform).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tseg.data.synthetic.scene import SceneObject
from tseg.data.synthetic.vocab import (
    ALL_PAIRS,
    COLOURS,
    SEEN_PAIRS,
    SIZE_RANGES,
    SIZES,
    UNSEEN_PAIRS,
)

__all__ = ["render_scene", "shape_mask"]

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float64)

_MIN_OBJECTS, _MAX_OBJECTS = 2, 6
_ATTEMPTS_PER_OBJECT = 60
# Every object keeps at least this share of its pixels visible.
_MIN_VISIBLE = 0.5
# Minimum RGB distance between an object's colour and the background under it, so a
# human always sees the object even though globally the colour ranges overlap.
_MIN_CONTRAST = 90.0
_JITTER = 12
_PIXEL_NOISE = 5
_COARSE_GRID = 4
_COARSE_AMPLITUDE = 22.0


def _star_lines() -> tuple[np.ndarray, np.ndarray]:
    """Half-planes ``a*u + b*v <= c`` of a five-pointed star pointing up.

    Returns the inner pentagon's 5 lines [5, 3] and each tip's two outer edges [5, 2, 3].
    """
    outer_r, inner_r, shift = 1.0, 0.5, 0.095  # shift centres the star vertically
    outer = [
        (outer_r * math.cos(a), outer_r * math.sin(a) + shift)
        for a in (-math.pi / 2 + 2 * math.pi * k / 5 for k in range(5))
    ]
    inner = [
        (inner_r * math.cos(a), inner_r * math.sin(a) + shift)
        for a in (-math.pi / 2 + math.pi / 5 + 2 * math.pi * k / 5 for k in range(5))
    ]
    centre = (0.0, shift)

    def line(p: tuple[float, float], q: tuple[float, float], inside: tuple[float, float]):
        a, b = q[1] - p[1], p[0] - q[0]
        c = a * p[0] + b * p[1]
        if a * inside[0] + b * inside[1] > c:  # orient so the inside satisfies <=
            a, b, c = -a, -b, -c
        return (a, b, c)

    pent = np.array([line(inner[k - 1], inner[k], centre) for k in range(5)])
    # Tip k is the triangle inner[k-1], outer[k], inner[k].
    tips = np.array(
        [
            [line(inner[k - 1], outer[k], inner[k]), line(outer[k], inner[k], inner[k - 1])]
            for k in range(5)
        ]
    )
    return pent, tips


_STAR_PENTAGON, _STAR_TIPS = _star_lines()


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact mask of ``shape`` at normalised pixel centres (u: [1, w] right, v: [h, 1] down).

    The shape's box is [-1, 1]^2. Only arithmetic and comparisons are used (no
    trigonometry on arrays), so masks are identical on every platform.
    """
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (au <= 0.9) & (av <= 0.9)
    if shape == "triangle":
        return (v <= 0.8) & (au * 1.8 <= v + 1.0)
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.25)
    if shape == "cross":
        return ((au <= 0.34) | (av <= 0.34)) & (au <= 1.0) & (av <= 1.0)
    if shape == "heart":
        x = 1.139 * u
        y = 0.118 - 1.118 * v
        q = x * x + y * y - 1.0
        return q * q * q - x * x * y * y * y <= 0.0
    if shape == "star":
        inside = [a * u + b * v <= c for a, b, c in _STAR_PENTAGON]
        mask = functools.reduce(operator.and_, inside)
        for k in range(5):
            (a1, b1, c1), (a2, b2, c2) = _STAR_TIPS[k]
            mask = mask | (~inside[k] & (a1 * u + b1 * v <= c1) & (a2 * u + b2 * v <= c2))
        return mask
    raise AssertionError(shape)  # unreachable: shapes come from SHAPES


@functools.lru_cache(maxsize=16)
def _upsample_table(side: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear lookup (lower index, weight) from ``cells + 1`` grid nodes to ``side`` pixels."""
    pos = (np.arange(side) + 0.5) / side * cells
    lo = np.minimum(np.floor(pos).astype(np.intp), cells - 1)
    return lo, (pos - lo)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    # Mostly a palette colour, so background hues overlap object hues; the blend
    # towards a random grey mutes it to a random degree (sometimes not at all), so
    # the background's colour range covers the objects' and no pixel value alone
    # marks an object.
    if rng.random() < 0.7:
        base = _PALETTE[rng.integers(len(_PALETTE))]
    else:
        base = rng.uniform(0.0, 255.0, 3)
    grey = rng.uniform(60.0, 190.0)
    return grey + (base - grey) * rng.uniform(0.5, 1.0)


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """Linear gradient between two muted colours plus low-frequency noise, float [S, S, 3]."""
    c1, c2 = _muted_colour(rng), _muted_colour(rng)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    coords = (np.arange(side) + 0.5) / side - 0.5
    proj = coords[None, :] * cos_t + coords[:, None] * sin_t
    t = 0.5 + proj / (abs(cos_t) + abs(sin_t))  # in [0, 1] over the image
    bg = c1 + (c2 - c1) * t[..., None]
    grid = rng.uniform(-_COARSE_AMPLITUDE, _COARSE_AMPLITUDE, (_COARSE_GRID + 1,) * 2 + (3,))
    lo, w = _upsample_table(side, _COARSE_GRID)
    rows = grid[lo] * (1.0 - w)[:, None, None] + grid[lo + 1] * w[:, None, None]
    noise = rows[:, lo] * (1.0 - w)[None, :, None] + rows[:, lo + 1] * w[None, :, None]
    return bg + noise


@dataclass
class _Placed:
    shape: str
    colour: str
    size: str
    rgb: np.ndarray
    box: tuple[int, int, int, int]  # full-shape region (y0, x0, y1, x1), exclusive ends
    area: int
    visible: int


def render_scene(
    rng: np.random.Generator, side: int, unseen: bool
) -> tuple[np.ndarray, np.ndarray, list[SceneObject]]:
    """Render one image; returns (uint8 image, label map, objects)."""
    # Rejection can (very rarely) leave too few objects or, in "unseen", no held-out
    # object; the scene is then redrawn from the same (deterministic) stream.
    while True:
        result = _try_render(rng, side, unseen)
        if result is not None:
            return result


def _try_render(
    rng: np.random.Generator, side: int, unseen: bool
) -> tuple[np.ndarray, np.ndarray, list[SceneObject]] | None:
    bg = _background(rng, side)
    canvas = bg.copy()
    labels = np.zeros((side, side), dtype=np.uint8)
    placed: list[_Placed] = []
    n_target = int(rng.integers(_MIN_OBJECTS, _MAX_OBJECTS + 1))
    held_slot = int(rng.integers(n_target)) if unseen else -1
    got_held = False
    for slot in range(n_target):
        if slot == held_slot:
            pairs: Sequence[tuple[str, str]] = UNSEEN_PAIRS
        else:
            pairs = ALL_PAIRS if unseen else SEEN_PAIRS
        for _ in range(_ATTEMPTS_PER_OBJECT):
            attempt = _try_place(rng, side, pairs, bg, labels, placed)
            if attempt is None:
                continue
            obj, mask, covered = attempt
            y0, x0, y1, x1 = obj.box
            canvas[y0:y1, x0:x1][mask] = obj.rgb
            labels[y0:y1, x0:x1][mask] = len(placed) + 1
            for j, other in enumerate(placed):
                other.visible -= int(covered[j + 1])
            placed.append(obj)
            got_held |= slot == held_slot
            break
    if len(placed) < _MIN_OBJECTS or (unseen and not got_held):
        return None
    canvas += rng.integers(-_PIXEL_NOISE, _PIXEL_NOISE + 1, canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    objects = []
    for i, p in enumerate(placed):
        ys, xs = np.nonzero(labels == i + 1)
        objects.append(
            SceneObject(
                shape=p.shape,
                colour=p.colour,
                size=p.size,
                rgb=(int(p.rgb[0]), int(p.rgb[1]), int(p.rgb[2])),
                bbox=(int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())),
                area=p.area,
                visible_area=p.visible,
            )
        )
    return image, labels, objects


def _try_place(
    rng: np.random.Generator,
    side: int,
    pairs: Sequence[tuple[str, str]],
    bg: np.ndarray,
    labels: np.ndarray,
    placed: list[_Placed],
) -> tuple[_Placed, np.ndarray, np.ndarray] | None:
    """Sample one object; return it, its local mask and the pixels it covers per label."""
    colour, shape = pairs[int(rng.integers(len(pairs)))]
    size = SIZES[int(rng.integers(len(SIZES)))]
    lo, hi = SIZE_RANGES[size]
    half = rng.uniform(lo, hi) * side / 2.0
    # Fully inside the image, so the shape's extent (and hence its size) is unambiguous.
    cx, cy = rng.uniform(half, side - half, 2)
    x0, x1 = max(0, math.floor(cx - half)), min(side, math.ceil(cx + half))
    y0, y1 = max(0, math.floor(cy - half)), min(side, math.ceil(cy + half))
    u = ((np.arange(x0, x1) + 0.5 - cx) / half)[None, :]
    v = ((np.arange(y0, y1) + 0.5 - cy) / half)[:, None]
    mask = shape_mask(shape, u, v)
    area = int(mask.sum())
    if area == 0:
        return None
    rgb = np.clip(
        np.array(COLOURS[colour], dtype=np.float64) + rng.integers(-_JITTER, _JITTER + 1, 3),
        0,
        255,
    )
    # Same-coloured objects must not touch: their outlines would merge.
    for other in placed:
        oy0, ox0, oy1, ox1 = other.box
        if other.colour == colour and y0 <= oy1 and oy0 <= y1 and x0 <= ox1 and ox0 <= x1:
            return None
    under_bg = bg[y0:y1, x0:x1][mask].mean(axis=0)
    if float(np.sqrt(((under_bg - rgb) ** 2).sum())) < _MIN_CONTRAST:
        return None
    counts = np.bincount(labels[y0:y1, x0:x1][mask], minlength=len(placed) + 1)
    for j, other in enumerate(placed):
        if other.visible - counts[j + 1] < _MIN_VISIBLE * other.area:
            return None
    return _Placed(shape, colour, size, rgb, (y0, x0, y1, x1), area, area), mask, counts
