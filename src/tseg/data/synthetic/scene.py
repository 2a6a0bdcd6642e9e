"""What a rendered ``shapes`` image is: its objects, its expressions and their masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Expression", "Scene", "SceneObject"]


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
