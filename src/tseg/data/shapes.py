"""The built-in synthetic referring-expression dataset ``shapes``.

Images of 2 to 6 coloured shapes on textured backgrounds, each annotated with every
expression that is true and unambiguous for it (in the spirit of CLEVR-Ref+). Nothing
is downloaded: every image is rendered on demand from ``(seed, split, idx)``, so the
same triple gives the same pixels, byte for byte, in every process.

Expression grammar (``C`` a colour, ``S`` a shape, ``S+`` its plural, ``Z`` a size)::

    S+                              every S in the image          ("circles")
    C S                             the only C S                  ("red circle")
    Z C S                           the only Z C S                ("small red circle")
    C shapes                        every C object                ("red shapes")
    the S left of the C S           the only S strictly left of the (unique) C S
    the S right of the C S          the only S strictly right of the (unique) C S

"Strictly left" compares bounding boxes of the visible pixels: the subject's right
edge lies left of the anchor's left edge. Masks are the visible pixels (after
occlusion) of the referred objects.

Absent expressions (``absent=N``): each image also gets N expressions that refer to nothing
in it, with empty masks, listed after the true ones (``no_target`` tells them apart). They
are drawn from the grammar above, the vocabulary every other image is described with, and
checked against the image's objects, not only against its expression list: ``S+`` only when
no S is in the image, ``C S`` only when no C S is (two red circles make "red circle"
ambiguous, not false), ``Z C S`` only when no Z C S is, ``C shapes`` only when nothing is C,
and a relation only when its anchor ``C S`` is absent. Each draw picks a kind uniformly among
the kinds of the expression set that still have a false candidate (``disjoint``: the two
colour-and-shape kinds), then a candidate uniformly; seen splits never name a held-out pair.
The draw has its own random stream per ``(seed, split, idx)``, so images and true
expressions are the same with or without it, and ``paraphrase`` rewrites the absent
expressions of the ``test`` images.

Splits: ``train``, ``val``, ``test`` and ``unseen`` are rendered from independent
seeds; ``paraphrase`` shows the ``test`` images with every content word of every
expression replaced through ``PARAPHRASES``. Objects whose (colour, shape) pair is in
``UNSEEN_PAIRS`` occur only in ``unseen``, whose expressions all refer to at least one
such object.

Longer than 400 lines: the renderer and the expression grammar (with its truth rules) are one
dataset and are read together; one dataset, one file.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError, normalize_expression

__all__ = [
    "build",
    "COLOURS",
    "DEFAULT_SIZES",
    "EXPRESSION_SETS",
    "PARAPHRASES",
    "PLURALS",
    "SHAPES",
    "SIZES",
    "SIZE_RANGES",
    "SPLITS",
    "UNSEEN_PAIRS",
    "Expression",
    "Scene",
    "SceneObject",
    "ShapesDataset",
    "paraphrase",
    "vocabulary",
]

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "ring",
    "cross",
    "diamond",
    "heart",
)
PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "ring": "rings",
    "cross": "crosses",
    "diamond": "diamonds",
    "heart": "hearts",
}
# Saturated base colours; the closest pair (yellow/orange) is ~80 apart in RGB, far
# more than the +-12 per-channel jitter can bridge.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 220, 40),
    "orange": (245, 135, 25),
    "purple": (135, 50, 185),
    "pink": (245, 135, 195),
    "cyan": (40, 215, 225),
}
SIZES: tuple[str, ...] = ("small", "large")
# Object extent (bounding-box side) as a fraction of the image side.
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (0.17, 0.21), "large": (0.34, 0.42)}

# Held-out (colour, shape) pairs: one per colour and one per shape, so every colour and
# every shape still occurs in training, each with the seven other partners.
UNSEEN_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("blue", "triangle"),
    ("green", "ring"),
    ("yellow", "cross"),
    ("purple", "circle"),
    ("cyan", "square"),
    ("orange", "heart"),
    ("pink", "diamond"),
)

SPLITS: tuple[str, ...] = ("train", "val", "test", "unseen", "paraphrase")
EXPRESSION_SETS: tuple[str, ...] = ("all", "disjoint")
DEFAULT_SIZES: dict[str, int] = {
    "train": 5000,
    "val": 500,
    "test": 500,
    "unseen": 500,
    "paraphrase": 500,
}
# Stable seed component per split; "paraphrase" shares "test"'s so it shows the same
# images. Never Python's hash(), which is salted per process.
_SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1, "test": 2, "unseen": 3, "paraphrase": 2}

# Synonyms for the "paraphrase" split: no replacement occurs in any other split's
# expressions. Only the function words "the" and "of" survive a rewrite.
PARAPHRASES: dict[str, str] = {
    "red": "crimson",
    "green": "emerald",
    "blue": "navy",
    "yellow": "golden",
    "orange": "amber",
    "purple": "violet",
    "pink": "rose",
    "cyan": "turquoise",
    "circle": "disc",
    "circles": "discs",
    "square": "box",
    "squares": "boxes",
    "triangle": "wedge",
    "triangles": "wedges",
    "star": "pentagram",
    "stars": "pentagrams",
    "ring": "hoop",
    "rings": "hoops",
    "cross": "plus sign",
    "crosses": "plus signs",
    "diamond": "rhombus",
    "diamonds": "rhombuses",
    "heart": "valentine",
    "hearts": "valentines",
    "small": "tiny",
    "large": "huge",
    "shapes": "objects",
    "left of": "leftward of",
    "right of": "rightward of",
}
_FUNCTION_WORDS: frozenset[str] = frozenset({"the", "of"})

_PARAPHRASE_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(PARAPHRASES, key=len, reverse=True)) + r")\b"
)


def paraphrase(text: str) -> str:
    """Rewrite an expression of this dataset with the synonyms in ``PARAPHRASES``."""
    return _PARAPHRASE_RE.sub(lambda m: PARAPHRASES[m.group(1)], normalize_expression(text))


def vocabulary() -> list[str]:
    """Every word that can occur in a non-paraphrase expression, sorted."""
    words = {"the", "of", "left", "right", "shapes"}
    words.update(COLOURS, SHAPES, PLURALS.values(), SIZES)
    return sorted(words)


@dataclass(frozen=True)
class SceneObject:
    """One rendered object.

    Attributes:
        shape: Shape name (in ``SHAPES``).
        colour: Colour name (in ``COLOURS``).
        size: ``"small"`` or ``"large"``.
        rgb: Jittered colour actually drawn (before per-pixel noise).
        bbox: Inclusive ``(y0, x0, y1, x1)`` box of the visible pixels.
        area: Pixel count of the full (unoccluded) shape.
        visible_area: Pixel count left visible after later objects are drawn.
    """

    shape: str
    colour: str
    size: str
    rgb: tuple[int, int, int]
    bbox: tuple[int, int, int, int]
    area: int
    visible_area: int


@dataclass(frozen=True)
class Expression:
    """One expression with the objects it refers to.

    Attributes:
        text: The expression.
        kind: ``"shape"``, ``"colour_shape"``, ``"size_colour_shape"``, ``"colour"`` or
            ``"relation"``.
        referents: Indices (into ``Scene.objects``) of the referred objects.
        anchor: For relations, the index of the anchor object; else ``None``.
    """

    text: str
    kind: str
    referents: tuple[int, ...]
    anchor: int | None = None


@dataclass(frozen=True)
class Scene:
    """A rendered image with its objects and expressions.

    Attributes:
        image: Read-only uint8 [H, W, 3] image.
        labels: Read-only uint8 [H, W]; 0 is background, ``i + 1`` the visible pixels
            of ``objects[i]`` (visible masks never overlap, so one map holds them all).
        objects: The objects in drawing order (later ones on top).
        expressions: The split's expressions, in their fixed order.
    """

    image: np.ndarray
    labels: np.ndarray
    objects: tuple[SceneObject, ...]
    expressions: tuple[Expression, ...]

    def object_mask(self, i: int) -> np.ndarray:
        """Visible pixels of ``objects[i]``, bool [H, W]."""
        return self.labels == i + 1

    def masks(self) -> np.ndarray:
        """Bool [K, H, W] masks aligned with ``expressions``."""
        member = np.zeros((len(self.expressions), len(self.objects) + 1), dtype=bool)
        for k, expr in enumerate(self.expressions):
            member[k, [r + 1 for r in expr.referents]] = True
        # Indexing the membership table by the label map builds all masks at once.
        return member[:, self.labels]

    def expression_masks(self) -> dict[str, np.ndarray]:
        """Map each expression text to its bool [H, W] mask."""
        return {e.text: m for e, m in zip(self.expressions, self.masks(), strict=True)}


class ShapesDataset:
    """Synthetic referring-expression dataset, rendered lazily and deterministically.

    Implements ``tseg.data.base.RefDataset``.

    Args:
        split: One of ``SPLITS``.
        size: Number of images; defaults to ``DEFAULT_SIZES[split]``.
        image_size: Side of the square images in pixels (at least 32).
        seed: Non-negative base seed; each split derives its own from it.
        expressions: ``"all"`` (every true, unambiguous expression; they overlap by design) or
            ``"disjoint"`` (one expression per object, its colour and shape, with its size when
            that is needed to be unique; objects with no unique description get none), so that
            no two masks of an image share a pixel: the setting single-label patch assignment
            (SPA) assumes.
        absent: Number of absent expressions per image (module docstring), with empty masks:
            true negatives for no-target evaluation (fewer when fewer false ones exist).

    Raises:
        DatasetError: On an unknown split or an invalid size, image size, seed or ``absent``.
    """

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        image_size: int = 64,
        seed: int = 0,
        expressions: str = "all",
        absent: int = 0,
    ) -> None:
        if split not in _SPLIT_IDS:
            raise DatasetError(f"shapes: unknown split {split!r}; expected one of {SPLITS}")
        size = DEFAULT_SIZES[split] if size is None else _as_int(size, "size", split)
        if size < 1:
            raise DatasetError(f"shapes: split {split!r} needs size >= 1, got {size}")
        image_size = _as_int(image_size, "image_size", split)
        if image_size < 32:
            raise DatasetError(f"shapes: image_size must be >= 32, got {image_size}")
        seed = _as_int(seed, "seed", split)
        if seed < 0:
            raise DatasetError(f"shapes: seed must be >= 0, got {seed}")
        if expressions not in EXPRESSION_SETS:
            raise DatasetError(
                f"shapes: expressions must be one of {EXPRESSION_SETS}, got {expressions!r}"
            )
        absent = _as_int(absent, "absent", split)
        if absent < 0:
            raise DatasetError(f"shapes: absent must be >= 0, got {absent}")
        self.split = split
        self.size = size
        self.image_size = image_size
        self.seed = seed
        self.expression_set = expressions
        self.absent = absent
        self._make_cache()

    def _make_cache(self) -> None:
        # Per-instance cache so image() and masks() of one index render once. The
        # entry count is scaled down for large images to keep it near ~70 MB.
        maxsize = max(64, 4096 * 64 * 64 // (self.image_size * self.image_size))
        self._render_cached = functools.lru_cache(maxsize=maxsize)(self._render_uncached)

    def __getstate__(self) -> dict[str, object]:
        # The cache wrapper cannot be pickled (DataLoader workers under "spawn").
        state = dict(self.__dict__)
        del state["_render_cached"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._make_cache()

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(split={self.split!r}, size={self.size}, "
            f"image_size={self.image_size}, seed={self.seed}, "
            f"expressions={self.expression_set!r}, absent={self.absent})"
        )

    def __len__(self) -> int:
        return self.size

    def render(self, idx: int) -> Scene:
        """The full scene of image ``idx`` (cached; arrays are read-only)."""
        i = operator.index(idx)
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(f"shapes/{self.split}: index {idx} out of range [0, {self.size})")
        return self._render_cached(i)

    def image(self, idx: int) -> np.ndarray:
        """RGB image, uint8 [H, W, 3]."""
        return self.render(idx).image.copy()

    def expressions(self, idx: int) -> list[str]:
        """Every expression of image ``idx``, distinct and in a fixed order."""
        return [e.text for e in self.render(idx).expressions]

    def masks(self, idx: int) -> np.ndarray:
        """Bool [K, H, W] masks aligned with ``expressions(idx)``."""
        return self.render(idx).masks()

    def no_target(self, idx: int) -> list[bool]:
        """Per expression of image ``idx``: True for an absent one (its mask is empty)."""
        return [not e.referents for e in self.render(idx).expressions]

    def _render_uncached(self, idx: int) -> Scene:
        ss = np.random.SeedSequence([self.seed, _SPLIT_IDS[self.split], idx])
        rng = np.random.default_rng(ss)
        image, labels, objects = _render_scene(rng, self.image_size, self.split == "unseen")
        exprs = _describe(objects)
        if self.expression_set == "disjoint":
            exprs = _one_per_object(exprs)
        if self.split == "unseen":
            held = {i for i, o in enumerate(objects) if (o.colour, o.shape) in _HELD_OUT}
            exprs = [e for e in exprs if held.intersection(e.referents)]
        if self.absent:
            # Its own stream: the images and true expressions do not depend on ``absent``.
            absent_rng = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], idx, 1])
            exprs += _false_expressions(
                objects, absent_rng, self.absent, self.expression_set, self.split == "unseen"
            )
        if self.split == "paraphrase":
            exprs = [Expression(paraphrase(e.text), e.kind, e.referents, e.anchor) for e in exprs]
        image.flags.writeable = False
        labels.flags.writeable = False
        return Scene(image, labels, tuple(objects), tuple(exprs))


def _as_int(value: object, name: str, split: str) -> int:
    """``value`` as an int, or a DatasetError naming the split and argument."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise DatasetError(
            f"shapes: split {split!r}: {name} must be an integer, got {value!r}"
        ) from None


# --------------------------------------------------------------------------- rendering

_HELD_OUT: frozenset[tuple[str, str]] = frozenset(UNSEEN_PAIRS)
_ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
_SEEN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in _ALL_PAIRS if p not in _HELD_OUT)
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


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def _render_scene(
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
            pairs = _ALL_PAIRS if unseen else _SEEN_PAIRS
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
    mask = _shape_mask(shape, u, v)
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


# ------------------------------------------------------------------------- expressions

_SHAPE_ORDER = {s: i for i, s in enumerate(SHAPES)}
_COLOUR_ORDER = {c: i for i, c in enumerate(COLOURS)}
_SIZE_ORDER = {z: i for i, z in enumerate(SIZES)}


def _describe(objects: Sequence[SceneObject]) -> list[Expression]:
    """Every true, unambiguous expression for ``objects``, in a fixed order."""
    by_shape: dict[str, list[int]] = {}
    by_colour: dict[str, list[int]] = {}
    by_cs: dict[tuple[str, str], list[int]] = {}
    by_zcs: dict[tuple[str, str, str], list[int]] = {}
    for i, o in enumerate(objects):
        by_shape.setdefault(o.shape, []).append(i)
        by_colour.setdefault(o.colour, []).append(i)
        by_cs.setdefault((o.colour, o.shape), []).append(i)
        by_zcs.setdefault((o.size, o.colour, o.shape), []).append(i)

    def cs_key(k: tuple[str, str]) -> tuple[int, int]:
        return _COLOUR_ORDER[k[0]], _SHAPE_ORDER[k[1]]

    out: list[Expression] = []
    for s in sorted(by_shape, key=_SHAPE_ORDER.__getitem__):
        out.append(Expression(PLURALS[s], "shape", tuple(by_shape[s])))
    for c, s in sorted(by_cs, key=cs_key):
        if len(by_cs[c, s]) == 1:
            out.append(Expression(f"{c} {s}", "colour_shape", tuple(by_cs[c, s])))
    for z, c, s in sorted(by_zcs, key=lambda k: (_SIZE_ORDER[k[0]], *cs_key(k[1:]))):
        if len(by_zcs[z, c, s]) == 1:
            out.append(Expression(f"{z} {c} {s}", "size_colour_shape", tuple(by_zcs[z, c, s])))
    for c in sorted(by_colour, key=_COLOUR_ORDER.__getitem__):
        out.append(Expression(f"{c} shapes", "colour", tuple(by_colour[c])))
    for c, s in sorted(by_cs, key=cs_key):
        if len(by_cs[c, s]) != 1:
            continue
        a = by_cs[c, s][0]
        _, ax0, _, ax1 = objects[a].bbox
        for direction in ("left", "right"):
            for subject_shape in sorted(by_shape, key=_SHAPE_ORDER.__getitem__):
                if direction == "left":
                    hits = [i for i in by_shape[subject_shape] if objects[i].bbox[3] < ax0]
                else:
                    hits = [i for i in by_shape[subject_shape] if objects[i].bbox[1] > ax1]
                if len(hits) == 1:
                    text = f"the {subject_shape} {direction} of the {c} {s}"
                    out.append(Expression(text, "relation", (hits[0],), anchor=a))
    # The grammar cannot produce duplicates today; dedupe anyway so it never can.
    seen: set[str] = set()
    unique = []
    for e in out:
        key = normalize_expression(e.text)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    return unique


def _one_per_object(exprs: Sequence[Expression]) -> list[Expression]:
    """The ``disjoint`` expression set: per object (in drawing order) its shortest unique
    colour-and-shape description, so no two expressions share a referent."""
    best: dict[int, Expression] = {}
    for e in exprs:  # "colour_shape" comes before "size_colour_shape" in _describe's order
        if e.kind in ("colour_shape", "size_colour_shape") and e.referents[0] not in best:
            best[e.referents[0]] = e
    return [best[i] for i in sorted(best)]


def _false_expressions(
    objects: Sequence[SceneObject],
    rng: np.random.Generator,
    k: int,
    expression_set: str,
    unseen: bool,
) -> list[Expression]:
    """Up to ``k`` expressions of the grammar that refer to nothing among ``objects``.

    The rules (false only by the objects themselves) are in the module docstring; the
    expressions have no referents, so their masks are empty.
    """
    shapes = {o.shape for o in objects}
    colours = {o.colour for o in objects}
    pairs = {(o.colour, o.shape) for o in objects}
    triples = {(o.size, o.colour, o.shape) for o in objects}
    # Seen splits never name a held-out pair, even in an expression that is false.
    allowed = _ALL_PAIRS if unseen else _SEEN_PAIRS
    missing_pairs = [p for p in allowed if p not in pairs]
    pools: dict[str, list[str]] = {
        "shape": [PLURALS[s] for s in SHAPES if s not in shapes],
        "colour_shape": [f"{c} {s}" for c, s in missing_pairs],
        "size_colour_shape": [
            f"{z} {c} {s}" for z in SIZES for c, s in allowed if (z, c, s) not in triples
        ],
        "colour": [f"{c} shapes" for c in COLOURS if c not in colours],
        # The anchor is absent, so "the S left of the C S'" has nothing to refer to.
        "relation": [
            f"the {subject} {direction} of the {c} {s}"
            for c, s in missing_pairs
            for direction in ("left", "right")
            for subject in SHAPES
        ],
    }
    if expression_set == "disjoint":
        pools = {kind: pools[kind] for kind in ("colour_shape", "size_colour_shape")}
    out: list[Expression] = []
    for _ in range(k):
        kinds = [kind for kind, texts in pools.items() if texts]
        if not kinds:
            break
        kind = kinds[int(rng.integers(len(kinds)))]
        text = pools[kind].pop(int(rng.integers(len(pools[kind]))))
        out.append(Expression(text, kind, ()))
    return out


def build(cfg: DataConfig, split: str) -> ShapesDataset:
    """``data.dataset=shapes``: ``split`` rendered at ``data.render_size`` (or ``image_size``);
    "train" and "val" have ``data.train_size`` / ``val_size`` images, other splits ``test_size``.

    Expressions that refer to nothing (``data.shapes_absent``) are given to every split but
    "train": weak training reads every expression of an image as present in it.
    """
    sizes = {"train": cfg.train_size, "val": cfg.val_size}
    return ShapesDataset(
        split=split,
        size=sizes.get(split, cfg.test_size),
        image_size=cfg.render_size or cfg.image_size,
        seed=cfg.seed,
        expressions=cfg.shapes_expressions,
        absent=cfg.shapes_absent if split != "train" else 0,
    )
