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

The words and pairs are in ``vocab``, the scene types in ``scene``, the renderer in ``render``
and the grammar (with its truth rules) in ``describe``; this module is the dataset.
"""

from __future__ import annotations

import functools
import operator

import numpy as np

from tseg.config import DataConfig
from tseg.data.base import DatasetError
from tseg.data.synthetic.describe import describe, false_expressions, one_per_object
from tseg.data.synthetic.render import render_scene
from tseg.data.synthetic.scene import Expression, Scene, SceneObject
from tseg.data.synthetic.vocab import (
    COLOURS,
    DEFAULT_SIZES,
    EXPRESSION_SETS,
    PARAPHRASES,
    PLURALS,
    SHAPES,
    SIZE_RANGES,
    SIZES,
    SPLIT_IDS,
    SPLITS,
    UNSEEN_PAIRS,
    paraphrase,
    vocabulary,
)

# The words and scene types are importable from here, where the dataset is.
__all__ = [
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
    "build",
    "paraphrase",
    "vocabulary",
]

_HELD_OUT: frozenset[tuple[str, str]] = frozenset(UNSEEN_PAIRS)


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
        if split not in SPLIT_IDS:
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
        ss = np.random.SeedSequence([self.seed, SPLIT_IDS[self.split], idx])
        rng = np.random.default_rng(ss)
        image, labels, objects = render_scene(rng, self.image_size, self.split == "unseen")
        exprs = describe(objects)
        if self.expression_set == "disjoint":
            exprs = one_per_object(exprs)
        if self.split == "unseen":
            held = {i for i, o in enumerate(objects) if (o.colour, o.shape) in _HELD_OUT}
            exprs = [e for e in exprs if held.intersection(e.referents)]
        if self.absent:
            # Its own stream: the images and true expressions do not depend on ``absent``.
            absent_rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], idx, 1])
            exprs += false_expressions(
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
