"""The expression grammar of ``shapes`` and its truth rules (``tseg.data.synthetic.shapes``).

``describe`` gives every true, unambiguous expression of a scene's objects, in a fixed order;
``one_per_object`` the ``disjoint`` set; ``false_expressions`` the absent ones, false by the
objects themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tseg.data.base import normalize_expression
from tseg.data.synthetic.scene import Expression, SceneObject
from tseg.data.synthetic.vocab import ALL_PAIRS, COLOURS, PLURALS, SEEN_PAIRS, SHAPES, SIZES

__all__ = ["describe", "false_expressions", "one_per_object"]

_SHAPE_ORDER = {s: i for i, s in enumerate(SHAPES)}
_COLOUR_ORDER = {c: i for i, c in enumerate(COLOURS)}
_SIZE_ORDER = {z: i for i, z in enumerate(SIZES)}


def describe(objects: Sequence[SceneObject]) -> list[Expression]:
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


def one_per_object(exprs: Sequence[Expression]) -> list[Expression]:
    """The ``disjoint`` expression set: per object (in drawing order) its shortest unique
    colour-and-shape description, so no two expressions share a referent."""
    best: dict[int, Expression] = {}
    for e in exprs:  # "colour_shape" comes before "size_colour_shape" in describe's order
        if e.kind in ("colour_shape", "size_colour_shape") and e.referents[0] not in best:
            best[e.referents[0]] = e
    return [best[i] for i in sorted(best)]


def false_expressions(
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
    allowed = ALL_PAIRS if unseen else SEEN_PAIRS
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
