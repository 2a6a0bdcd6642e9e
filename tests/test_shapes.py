"""Tests for the synthetic ``shapes`` dataset.

Expression truth is checked by an independent oracle below that re-derives every true,
unambiguous expression from the objects' attributes and visible masks alone.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import pickle
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from tseg.data.base import DatasetError, RefDataset, normalize_expression, swap_left_right
from tseg.data.synthetic.shapes import (
    COLOURS,
    PARAPHRASES,
    PLURALS,
    SHAPES,
    SIZE_RANGES,
    SIZES,
    SPLITS,
    UNSEEN_PAIRS,
    Scene,
    ShapesDataset,
    paraphrase,
    vocabulary,
)

FUNCTION_WORDS = {"the", "of"}
HELD_OUT = set(UNSEEN_PAIRS)


@pytest.fixture(scope="module")
def train() -> ShapesDataset:
    return ShapesDataset("train", size=1000)


@pytest.fixture(scope="module")
def test_split() -> ShapesDataset:
    return ShapesDataset("test")


@pytest.fixture(scope="module")
def unseen() -> ShapesDataset:
    return ShapesDataset("unseen")


# ---------------------------------------------------------------------------- oracle


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())


def oracle(attrs: list[tuple[str, str, str]], labels: np.ndarray) -> dict[str, frozenset[int]]:
    """Every true, unambiguous expression -> indices of the objects it refers to.

    ``attrs[i]`` is (shape, colour, size) of object i; its visible mask is labels == i + 1.
    """
    boxes = [_bbox(labels == i + 1) for i in range(len(attrs))]
    idx = range(len(attrs))
    out: dict[str, frozenset[int]] = {}
    for s in SHAPES:
        hit = frozenset(i for i in idx if attrs[i][0] == s)
        if hit:
            out[PLURALS[s]] = hit
    for c in COLOURS:
        hit = frozenset(i for i in idx if attrs[i][1] == c)
        if hit:
            out[f"{c} shapes"] = hit
        for s in SHAPES:
            hit = frozenset(i for i in idx if attrs[i][:2] == (s, c))
            if len(hit) == 1:
                out[f"{c} {s}"] = hit
            for z in SIZES:
                hit = frozenset(i for i in idx if attrs[i] == (s, c, z))
                if len(hit) == 1:
                    out[f"{z} {c} {s}"] = hit
    for a, (sa, ca, _) in enumerate(attrs):
        if sum(1 for sh, col, _ in attrs if (sh, col) == (sa, ca)) != 1:
            continue
        for s in SHAPES:
            same = [i for i in idx if attrs[i][0] == s]
            left = frozenset(i for i in same if boxes[i][3] < boxes[a][1])
            right = frozenset(i for i in same if boxes[i][1] > boxes[a][3])
            if len(left) == 1:
                out[f"the {s} left of the {ca} {sa}"] = left
            if len(right) == 1:
                out[f"the {s} right of the {ca} {sa}"] = right
    return out


def attrs_of(scene: Scene) -> list[tuple[str, str, str]]:
    return [(o.shape, o.colour, o.size) for o in scene.objects]


def union_mask(labels: np.ndarray, objs: frozenset[int]) -> np.ndarray:
    return np.isin(labels, [i + 1 for i in objs])


# ----------------------------------------------------------------------------- basics


def test_implements_protocol_and_is_lazy() -> None:
    huge = ShapesDataset("train", size=10**9)  # lazy: constructing renders nothing
    assert len(huge) == 10**9
    assert isinstance(huge, RefDataset)
    assert huge.image(10**9 - 1).shape == (64, 64, 3)


def test_default_sizes() -> None:
    assert len(ShapesDataset()) == 5000
    for split in ("val", "test", "unseen", "paraphrase"):
        assert len(ShapesDataset(split)) == 500


def test_types_shapes_and_alignment(train: ShapesDataset) -> None:
    for i in range(50):
        img, exprs, masks = train.image(i), train.expressions(i), train.masks(i)
        assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
        assert masks.dtype == np.bool_ and masks.shape == (len(exprs), 64, 64)
        assert len(exprs) >= 2
        assert all(isinstance(e, str) and e == normalize_expression(e) for e in exprs)
        assert len({normalize_expression(e) for e in exprs}) == len(exprs)
        assert masks.reshape(len(exprs), -1).any(axis=1).all()
        # Returned arrays are fresh copies: editing them leaves the dataset intact.
        img[:] = 0
        masks[:] = False
        assert train.image(i).any() and train.masks(i).any()


def test_render_is_cached(train: ShapesDataset) -> None:
    assert train.render(3) is train.render(3)
    assert not train.render(3).image.flags.writeable


def test_negative_index_and_out_of_range(train: ShapesDataset) -> None:
    assert np.array_equal(train.image(-1), train.image(len(train) - 1))
    with pytest.raises(IndexError):
        train.image(len(train))
    with pytest.raises(IndexError):
        train.masks(-len(train) - 1)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"split": "training"}, "training"),
        ({"split": "val", "size": 0}, "0"),
        ({"split": "unseen", "size": -5}, "-5"),
        ({"size": "10"}, "size"),
        ({"image_size": 16}, "16"),
        ({"seed": -1}, "-1"),
    ],
)
def test_bad_arguments(kwargs: dict, needle: str) -> None:
    with pytest.raises(DatasetError, match=re.escape(needle)):
        ShapesDataset(**kwargs)


def test_bad_size_names_split() -> None:
    with pytest.raises(DatasetError, match="val"):
        ShapesDataset("val", size=0)


# ------------------------------------------------------------------------ determinism


def _digest(ds: ShapesDataset, n: int) -> str:
    h = hashlib.sha256()
    for i in range(n):
        h.update(ds.image(i).tobytes())
        h.update(np.packbits(ds.masks(i)).tobytes())
        h.update("|".join(ds.expressions(i)).encode())
    return h.hexdigest()


def test_deterministic_within_and_across_instances() -> None:
    a = ShapesDataset("train", size=20, seed=3)
    b = ShapesDataset("train", size=20, seed=3)
    for i in range(20):
        assert np.array_equal(a.image(i), b.image(i))
        assert a.expressions(i) == b.expressions(i)
        assert np.array_equal(a.masks(i), b.masks(i))
    assert _digest(a, 20) == _digest(b, 20) == _digest(a, 20)


def test_deterministic_across_processes() -> None:
    code = (
        "import hashlib, numpy as np\n"
        "from tseg.data.synthetic.shapes import ShapesDataset\n"
        "ds = ShapesDataset('val', size=8, seed=7)\n"
        "h = hashlib.sha256()\n"
        "for i in range(8):\n"
        "    h.update(ds.image(i).tobytes())\n"
        "    h.update(np.packbits(ds.masks(i)).tobytes())\n"
        "    h.update('|'.join(ds.expressions(i)).encode())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == _digest(ShapesDataset("val", size=8, seed=7), 8)


def test_pickle_roundtrip(train: ShapesDataset) -> None:
    clone = pickle.loads(pickle.dumps(train))
    assert len(clone) == len(train)
    assert np.array_equal(clone.image(5), train.image(5))
    assert clone.expressions(5) == train.expressions(5)


def test_splits_and_seeds_differ() -> None:
    n = 40
    digests: set[bytes] = set()
    for split in ("train", "val", "test", "unseen"):
        ds = ShapesDataset(split, size=n)
        digests.update(hashlib.sha256(ds.image(i).tobytes()).digest() for i in range(n))
    other_seed = ShapesDataset("train", size=n, seed=1)
    digests.update(hashlib.sha256(other_seed.image(i).tobytes()).digest() for i in range(n))
    assert len(digests) == 5 * n


def test_other_image_sizes() -> None:
    for side in (96, 128):
        ds = ShapesDataset("train", size=20, image_size=side)
        for i in range(20):
            scene = ds.render(i)
            assert ds.image(i).shape == (side, side, 3)
            assert ds.masks(i).shape == (len(ds.expressions(i)), side, side)
            truth = oracle(attrs_of(scene), scene.labels)
            assert set(ds.expressions(i)) == set(truth)
            for text, mask in zip(ds.expressions(i), ds.masks(i), strict=True):
                assert np.array_equal(mask, union_mask(scene.labels, truth[text]))
            for o in scene.objects:
                # Object extents scale with the image side.
                y0, x0, y1, x1 = o.bbox
                assert max(y1 - y0, x1 - x0) + 1 <= SIZE_RANGES[o.size][1] * side + 2


# ------------------------------------------------------------------- scene statistics


def test_scene_statistics(train: ShapesDataset) -> None:
    counts, shapes, colours, sizes = set(), set(), set(), set()
    area_by = {(s, z): [] for s in SHAPES for z in SIZES}
    for i in range(200):
        scene = train.render(i)
        counts.add(len(scene.objects))
        for j, o in enumerate(scene.objects):
            shapes.add(o.shape)
            colours.add(o.colour)
            sizes.add(o.size)
            area_by[o.shape, o.size].append(o.area)
            visible = int((scene.labels == j + 1).sum())
            assert visible == o.visible_area
            assert visible >= 0.5 * o.area  # occlusion leaves at least half visible
        # Same-coloured objects never touch (their outlines would merge).
        for a, b in itertools.combinations(range(len(scene.objects)), 2):
            if scene.objects[a].colour == scene.objects[b].colour:
                p = np.pad(scene.object_mask(a), 1)
                grown = functools.reduce(
                    np.logical_or,
                    (
                        p[1 + dy : p.shape[0] - 1 + dy, 1 + dx : p.shape[1] - 1 + dx]
                        for dy in (-1, 0, 1)
                        for dx in (-1, 0, 1)
                    ),
                )
                assert not (grown & scene.object_mask(b)).any()
    assert counts == {2, 3, 4, 5, 6}
    assert shapes == set(SHAPES) and len(SHAPES) >= 6
    assert colours == set(COLOURS) and len(COLOURS) >= 8
    assert sizes == {"small", "large"}
    # The two sizes are clearly separated for every shape.
    for s in SHAPES:
        assert max(area_by[s, "small"]) * 2 < min(area_by[s, "large"])


def test_object_colours_near_their_names(train: ShapesDataset) -> None:
    palette = {name: np.array(rgb) for name, rgb in COLOURS.items()}
    for i in range(100):
        scene = train.render(i)
        for j, o in enumerate(scene.objects):
            assert np.abs(np.array(o.rgb) - palette[o.colour]).max() <= 12
            mean = scene.image[scene.labels == j + 1].mean(axis=0)
            nearest = min(palette, key=lambda c: np.linalg.norm(palette[c] - mean))
            assert nearest == o.colour


def test_background_is_textured_and_overlaps_object_colours(train: ShapesDataset) -> None:
    obj_px, bg_px = [], []
    for i in range(100):
        scene = train.render(i)
        img = scene.image.reshape(-1, 3).astype(np.int64)
        lab = scene.labels.reshape(-1)
        bg = img[lab == 0]
        assert bg.std(axis=0).mean() > 4.0  # gradient + low-frequency noise, never flat
        obj_px.append(img[lab > 0])
        bg_px.append(bg)
    obj, bg = np.concatenate(obj_px), np.concatenate(bg_px)

    def bins(x: np.ndarray) -> np.ndarray:  # 16 levels per channel
        q = x // 16
        return (q[:, 0] * 16 + q[:, 1]) * 16 + q[:, 2]

    n_obj = np.bincount(bins(obj), minlength=16**3)
    n_bg = np.bincount(bins(bg), minlength=16**3)
    # Most object pixels have a colour that also occurs in some background ...
    assert n_obj[n_bg > 0].sum() / n_obj.sum() > 0.8
    # ... so even the best colour-lookup classifier (fit on this very data) is far
    # from segmenting objects: its object IoU stays clearly below 1.
    pred = n_obj > n_bg
    tp, fp, fn = n_obj[pred].sum(), n_bg[pred].sum(), n_obj[~pred].sum()
    assert tp / (tp + fp + fn) < 0.92


def test_render_time() -> None:
    ds = ShapesDataset("train", size=200, seed=11)
    start = time.perf_counter()
    for i in range(200):
        ds.render(i)
    per_image = (time.perf_counter() - start) / 200
    # Typically ~1 ms; the generous bound absorbs noisy CI machines.
    assert per_image < 0.020


# ------------------------------------------------------------------------ expressions


def test_expressions_are_exactly_the_true_unambiguous_ones(train: ShapesDataset) -> None:
    for i in range(200):
        scene = train.render(i)
        truth = oracle(attrs_of(scene), scene.labels)
        exprs, masks = train.expressions(i), train.masks(i)
        assert set(exprs) == set(truth)
        for text, mask in zip(exprs, masks, strict=True):
            assert np.array_equal(mask, union_mask(scene.labels, truth[text])), text
        for e in scene.expressions:
            assert frozenset(e.referents) == truth[e.text]


def test_plural_masks_are_unions_of_visible_objects(train: ShapesDataset) -> None:
    for i in range(100):
        scene = train.render(i)
        named = scene.expression_masks()
        for s in SHAPES:
            objs = [j for j, o in enumerate(scene.objects) if o.shape == s]
            if not objs:
                assert PLURALS[s] not in named
                continue
            expected = np.zeros_like(scene.labels, dtype=bool)
            for j in objs:
                expected |= scene.object_mask(j)
            assert np.array_equal(named[PLURALS[s]], expected)


def test_groups_contain_members_and_uniqueness(train: ShapesDataset) -> None:
    seen_pair = 0
    for i in range(200):
        scene = train.render(i)
        named = scene.expression_masks()
        for text, mask in named.items():
            words = text.split()
            if len(words) == 2 and words[1] != "shapes":  # "red circle"
                c, s = words
                hits = [o for o in scene.objects if (o.colour, o.shape) == (c, s)]
                assert len(hits) == 1
                assert not (~named[f"{c} shapes"] & mask).any()
                assert not (~named[PLURALS[s]] & mask).any()
                seen_pair += 1
            elif len(words) == 3:  # "small red circle"
                z, c, s = words
                hits = [o for o in scene.objects if (o.size, o.colour, o.shape) == (z, c, s)]
                assert len(hits) == 1
                assert not (~named[f"{c} shapes"] & mask).any()
    assert seen_pair > 100


def test_fixed_order(train: ShapesDataset) -> None:
    fresh = ShapesDataset("train", size=1000)
    for i in range(20):
        assert fresh.expressions(i) == train.expressions(i)
    kinds = [e.kind for e in train.render(0).expressions]
    order = ["shape", "colour_shape", "size_colour_shape", "colour", "relation"]
    assert kinds == sorted(kinds, key=order.index)


def test_relations_occur_and_flip_consistently(train: ShapesDataset) -> None:
    n_relations = 0
    for i in range(150):
        scene = train.render(i)
        flipped = scene.labels[:, ::-1]
        flipped_truth = oracle(attrs_of(scene), flipped)
        named = scene.expression_masks()
        # Every expression, direction-swapped, is true of the flipped image, with the
        # flipped mask; and nothing new becomes true.
        assert {swap_left_right(t) for t in named} == set(flipped_truth)
        for text, mask in named.items():
            swapped = swap_left_right(text)
            assert np.array_equal(mask[:, ::-1], union_mask(flipped, flipped_truth[swapped]))
        for e in scene.expressions:
            if e.kind != "relation":
                continue
            n_relations += 1
            assert e.anchor is not None
            sub = _bbox(scene.object_mask(e.referents[0])[:, ::-1])
            anc = _bbox(scene.object_mask(e.anchor)[:, ::-1])
            if " left of " in e.text:  # after the flip the subject is strictly right
                assert sub[1] > anc[3]
            else:
                assert sub[3] < anc[1]
    assert n_relations > 100


def test_vocabulary_covers_all_non_paraphrase_splits() -> None:
    vocab = set(vocabulary())
    assert vocabulary() == sorted(vocab)
    for split in ("train", "val", "test", "unseen"):
        ds = ShapesDataset(split, size=50)
        for i in range(50):
            for text in ds.expressions(i):
                assert set(text.split()) <= vocab, text


# --------------------------------------------------------------- compositional splits


def test_unseen_pairs_cover_every_colour_and_shape() -> None:
    assert {c for c, _ in UNSEEN_PAIRS} <= set(COLOURS)
    assert {s for _, s in UNSEEN_PAIRS} <= set(SHAPES)
    assert len(set(UNSEEN_PAIRS)) == len(UNSEEN_PAIRS) >= 6


@pytest.mark.parametrize("split", ["train", "val", "test", "paraphrase"])
def test_held_out_pairs_never_in_seen_splits(split: str) -> None:
    ds = ShapesDataset(split, size=300)
    pairs = set()
    for i in range(300):
        for o in ds.render(i).objects:
            pairs.add((o.colour, o.shape))
    assert not pairs & HELD_OUT
    if split == "train":
        # Every colour and shape still occurs in training, with other partners.
        assert {c for c, _ in pairs} == set(COLOURS)
        assert {s for _, s in pairs} == set(SHAPES)


def test_unseen_split(unseen: ShapesDataset) -> None:
    for i in range(300):
        scene = unseen.render(i)
        held = {j for j, o in enumerate(scene.objects) if (o.colour, o.shape) in HELD_OUT}
        assert held, i
        truth = oracle(attrs_of(scene), scene.labels)
        expected = {t for t, objs in truth.items() if objs & held}
        exprs = unseen.expressions(i)
        assert exprs and set(exprs) == expected
        held_mask = union_mask(scene.labels, frozenset(held))
        for text, mask in zip(exprs, unseen.masks(i), strict=True):
            assert (mask & held_mask).any(), text
            assert np.array_equal(mask, union_mask(scene.labels, truth[text]))


def test_paraphrase_split(test_split: ShapesDataset) -> None:
    para = ShapesDataset("paraphrase")
    train_vocab: set[str] = set()
    ds_train = ShapesDataset("train", size=300)
    for i in range(300):
        for text in ds_train.expressions(i):
            train_vocab.update(text.split())
    assert train_vocab <= set(vocabulary())
    n = 0
    for i in range(100):
        assert np.array_equal(para.image(i), test_split.image(i))
        assert np.array_equal(para.masks(i), test_split.masks(i))
        originals, rewritten = test_split.expressions(i), para.expressions(i)
        assert rewritten == [paraphrase(t) for t in originals]
        assert len(set(rewritten)) == len(rewritten)
        for old, new in zip(originals, rewritten, strict=True):
            new_content = set(new.split()) - FUNCTION_WORDS
            assert new_content, new
            # No content word of a paraphrase occurs in training or in vocabulary() ...
            assert not new_content & train_vocab, new
            assert not new_content & set(vocabulary()), new
            # ... and every content word of the original was replaced.
            assert not (set(old.split()) - FUNCTION_WORDS) & set(new.split()), (old, new)
            n += 1
    assert n > 500


def test_paraphrase_table() -> None:
    assert len(set(PARAPHRASES.values())) == len(PARAPHRASES)  # injective
    words = set(itertools.chain.from_iterable(v.split() for v in PARAPHRASES.values()))
    assert not (words - FUNCTION_WORDS) & set(vocabulary())
    assert paraphrase("the circle left of the blue square") == ("the disc leftward of the navy box")
    assert paraphrase("small red crosses") == "tiny crimson plus signs"
    assert set(SPLITS) == {"train", "val", "test", "unseen", "paraphrase"}


# ---------------------------------------------------------------------------- geometry


# Exact area of each shape as a fraction of its [-1, 1]^2 box (heart: numeric only).
_AREA = {
    "circle": np.pi / 4,
    "square": 0.81,
    "triangle": 0.45,
    "diamond": 0.5,
    "ring": np.pi * 0.75 / 4,
    "cross": (2 * 0.68 * 2 - 0.68**2) / 4,
    "star": 10 * 0.5 * 1.0 * 0.5 * np.sin(np.pi / 5) / 4,
}


def test_shape_geometry() -> None:
    from tseg.data.synthetic.render import shape_mask as _shape_mask

    n = 401
    c = (np.arange(n) + 0.5) / n * 2 - 1
    u, v = c[None, :], c[:, None]
    masks = {s: _shape_mask(s, u, v) for s in SHAPES}
    for s, m in masks.items():
        assert m.shape == (n, n) and m.dtype == np.bool_
        if s in _AREA:
            assert abs(m.mean() - _AREA[s]) < 0.01, s
        else:
            assert 0.4 < m.mean() < 0.8, s
        assert (m != m[:, ::-1]).mean() < 0.002, s  # left-right symmetric
        y0, x0, y1, x1 = _bbox(m)
        assert max(y1 - y0, x1 - x0) > 0.85 * n, s  # spans most of its box
    for a, b in itertools.combinations(SHAPES, 2):
        iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
        assert iou < 0.85, (a, b)


def test_disjoint_expressions_never_share_a_pixel_and_describe_every_unique_object():
    full = ShapesDataset("train", size=60, image_size=64, seed=3)
    disjoint = ShapesDataset("train", size=60, image_size=64, seed=3, expressions="disjoint")
    for i in range(len(full)):
        np.testing.assert_array_equal(disjoint.image(i), full.image(i))
        masks = disjoint.masks(i)
        assert (masks.sum(axis=0) <= 1).all()  # no pixel in two masks
        exprs = disjoint.expressions(i)
        assert set(exprs) <= set(full.expressions(i))
        assert all(len(e.split()) in (2, 3) and not e.endswith("shapes") for e in exprs)
        scene = full.render(i)
        # Every object with a unique colour-shape (or size-colour-shape) name gets one.
        named = {
            r for e in scene.expressions if e.kind.endswith("colour_shape") for r in e.referents
        }
        assert len(exprs) == len(named)


def test_disjoint_is_a_config_choice_and_bad_values_are_named():
    from tseg.config import ConfigError, build_config
    from tseg.data import build_dataset

    cfg = build_config(None, ["data.shapes_expressions=disjoint", "data.val_size=5"])
    assert build_dataset(cfg.data, "val").expression_set == "disjoint"
    with pytest.raises(ConfigError, match="data.shapes_expressions"):
        build_config(None, ["data.shapes_expressions=some"])
    with pytest.raises(DatasetError, match="expressions must be one of"):
        ShapesDataset("train", size=2, expressions="some")


# ---------------------------------------------------------------- absent expressions

_RELATION = re.compile(r"the (\w+) (left|right) of the (\w+) (\w+)")


def any_referent(text: str, attrs: list[tuple[str, str, str]], labels: np.ndarray) -> set[int]:
    """Objects ``text`` could refer to under any reading (uniqueness not required).

    Written from the grammar, independently of the generator: an expression is false for the
    image exactly when this is empty.
    """
    idx = range(len(attrs))
    plural = {v: k for k, v in PLURALS.items()}
    words = text.split()
    if text in plural:
        return {i for i in idx if attrs[i][0] == plural[text]}
    if len(words) == 2 and words[1] == "shapes":
        return {i for i in idx if attrs[i][1] == words[0]}
    if len(words) == 2:
        return {i for i in idx if attrs[i][:2] == (words[1], words[0])}
    if len(words) == 3:
        return {i for i in idx if attrs[i] == (words[2], words[1], words[0])}
    m = _RELATION.fullmatch(text)
    assert m, text
    subject, direction, c, s = m.groups()
    boxes = [_bbox(labels == i + 1) for i in idx]
    hits = set()
    for a in idx:
        if attrs[a][:2] != (s, c):
            continue
        for i in idx:
            if attrs[i][0] != subject:
                continue
            if (direction == "left" and boxes[i][3] < boxes[a][1]) or (
                direction == "right" and boxes[i][1] > boxes[a][3]
            ):
                hits.add(i)
    return hits


@pytest.mark.parametrize("expressions", ["all", "disjoint"])
def test_absent_expressions_are_false_by_the_objects(expressions: str) -> None:
    ds = ShapesDataset("val", size=150, absent=4, expressions=expressions)
    plain = ShapesDataset("val", size=150, expressions=expressions)
    kinds = set()
    for i in range(150):
        scene = ds.render(i)
        base = plain.render(i)
        k = len(base.expressions)
        # Images and true expressions do not change; the absent ones come after them.
        assert np.array_equal(scene.image, base.image)
        assert scene.expressions[:k] == base.expressions
        absent = scene.expressions[k:]
        assert len(absent) == 4
        assert ds.no_target(i) == [False] * k + [True] * 4
        assert not ds.masks(i)[k:].any()
        texts = [normalize_expression(e.text) for e in scene.expressions]
        assert len(set(texts)) == len(texts)
        for e in absent:
            kinds.add(e.kind)
            assert e.referents == () and e.anchor is None
            assert not any_referent(e.text, attrs_of(scene), scene.labels), (i, e.text)
            for c, s in HELD_OUT:
                assert f"{c} {s}" not in e.text  # a seen split never names a held-out pair
    if expressions == "all":
        assert kinds == {"shape", "colour_shape", "size_colour_shape", "colour", "relation"}
    else:
        assert kinds == {"colour_shape", "size_colour_shape"}


def test_absent_expressions_are_deterministic_and_follow_the_splits() -> None:
    a = ShapesDataset("test", size=30, absent=3)
    b = ShapesDataset("test", size=60, absent=3)
    assert [a.expressions(i) for i in range(30)] == [b.expressions(i) for i in range(30)]
    again = pickle.loads(pickle.dumps(a))
    assert again.expressions(7) == a.expressions(7) and again.absent == 3
    assert ShapesDataset("test", size=30, absent=3, seed=1).expressions(0) != a.expressions(0)
    para = ShapesDataset("paraphrase", size=30, absent=3)
    for i in range(30):
        assert para.expressions(i)[-3:] == [paraphrase(t) for t in a.expressions(i)[-3:]]
    unseen = ShapesDataset("unseen", size=40, absent=2)
    for i in range(40):
        scene = unseen.render(i)
        for e in scene.expressions[-2:]:
            assert not any_referent(e.text, attrs_of(scene), scene.labels)
    assert "absent=3" in repr(a)


def test_absent_is_a_config_key_for_evaluation_splits_only() -> None:
    from tseg.config import ConfigError, build_config
    from tseg.data import build_dataset

    cfg = build_config(None, ["data.shapes_absent=2", "data.val_size=4", "data.train_size=4"])
    assert build_dataset(cfg.data, "val").absent == 2
    assert build_dataset(cfg.data, "test").absent == 2
    assert build_dataset(cfg.data, "train").absent == 0
    assert build_config(None, []).data.shapes_absent == 0
    with pytest.raises(ConfigError, match="data.shapes_absent"):
        build_config(None, ["data.shapes_absent=-1"])
    with pytest.raises(DatasetError, match="absent must be >= 0"):
        ShapesDataset("val", size=2, absent=-1)
    with pytest.raises(DatasetError, match="absent must be an integer"):
        ShapesDataset("val", size=2, absent="two")  # type: ignore[arg-type]


def test_render_size_renders_small_and_training_views_are_at_the_input_size():
    from tseg.config import build_config
    from tseg.data import build_dataset
    from tseg.data.pipeline import TrainSet

    cfg = build_config(None, ["data.image_size=64", "data.render_size=32", "data.train_size=4"])
    ds = build_dataset(cfg.data, "train")
    assert ds.image(0).shape == (32, 32, 3) and ds.masks(0).shape[-2:] == (32, 32)
    item = TrainSet(ds, cfg.data, seed=0, with_masks=True)[0]
    assert item["image"].shape == (3, 64, 64) and item["masks"].shape[-2:] == (64, 64)
    assert build_dataset(build_config(None, ["data.image_size=64"]).data, "val").image_size == 64
