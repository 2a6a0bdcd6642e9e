"""The words of ``shapes``: shapes, colours, sizes, the held-out pairs, splits and paraphrases."""

from __future__ import annotations

import re

from tseg.data.base import normalize_expression

__all__ = [
    "ALL_PAIRS",
    "COLOURS",
    "DEFAULT_SIZES",
    "EXPRESSION_SETS",
    "PARAPHRASES",
    "PLURALS",
    "SEEN_PAIRS",
    "SHAPES",
    "SIZES",
    "SIZE_RANGES",
    "SPLITS",
    "SPLIT_IDS",
    "UNSEEN_PAIRS",
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
SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1, "test": 2, "unseen": 3, "paraphrase": 2}

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


_HELD_OUT_PAIRS = frozenset(UNSEEN_PAIRS)
#: Every (colour, shape) pair, and those outside ``UNSEEN_PAIRS`` (the seen splits' objects).
ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
SEEN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p not in _HELD_OUT_PAIRS)
