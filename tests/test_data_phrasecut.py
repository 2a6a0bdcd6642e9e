"""PhraseCut loader on fixtures written in the official ``VGPhraseCut_v0`` format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders.phrasecut import default_tasks, make_phrasecut, rect
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from tseg.data.base import DatasetError, RefDataset
from tseg.data.paper.phrasecut import PhraseCutDataset, polygons_to_mask, task_polygons_to_mask


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_phrasecut(tmp_path / "VGPhraseCut_v0")


def test_items_and_expressions(root: Path) -> None:
    ds = PhraseCutDataset(root, "val")
    assert isinstance(ds, RefDataset)
    assert len(ds) == 2 and ds.num_tasks == 5
    assert [ds.image_id(i) for i in range(2)] == [1, 2]
    assert ds.expressions(0) == ["cars"]
    assert ds.task_ids(0) == [("1__11_12",)]
    assert ds.expressions(1) == ["sky"]
    assert ds.task_ids(1) == [("2__20", "2__21")]
    assert ds.num_dropped_tasks == 2
    img = ds.image(0)
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8


def test_masks_match_independent_drawings(root: Path) -> None:
    ds = PhraseCutDataset(root, "val")
    cars = ds.masks(0)
    assert cars.shape == (1, 20, 30) and cars.dtype == bool
    # Outline included, coordinates truncated: x 15..19 / 20..25, y 2..6 / 10..13.
    expected = np.zeros((20, 30), dtype=bool)
    expected[2:7, 15:20] = True
    expected[10:14, 20:26] = True
    np.testing.assert_array_equal(cars[0], expected)
    sky = np.zeros((12, 16), dtype=bool)
    sky[0:4, 0:16] = True
    np.testing.assert_array_equal(ds.masks(1)[0], sky)


def test_per_task_access_covers_ambiguous_tasks(root: Path) -> None:
    ds = PhraseCutDataset(root, "val")
    tasks = list(ds.iter_tasks())
    assert [t.task_id for t in tasks] == ["1__10", "1__11_12", "1__13", "2__20", "2__21"]
    assert tasks[0].image_index == 0 and tasks[0].phrase == "white dog"
    dog = ds.task_mask("1__10")
    assert dog.shape == (20, 30) and dog.sum() == 10 * 10
    assert dog[3:13, 2:12].all()
    with pytest.raises(KeyError):
        ds.task_mask("nope")


def test_boxes_are_union_of_instance_boxes(root: Path) -> None:
    ds = PhraseCutDataset(root, "val")
    np.testing.assert_allclose(ds.boxes(0), [[15, 2, 11, 12]])


def test_joined_splits(root: Path) -> None:
    ds = PhraseCutDataset(root, "val_miniv")
    assert len(ds) == 3 and ds.expressions(2) == ["tree"]


@pytest.mark.parametrize("split", ["validation", "val_val", "", "train_x"])
def test_invalid_split(root: Path, split: str) -> None:
    with pytest.raises(DatasetError, match="split"):
        PhraseCutDataset(root, split)


def test_missing_files(root: Path) -> None:
    with pytest.raises(DatasetError, match=r"refer_test\.json: file not found"):
        PhraseCutDataset(root, "test")
    (root / "image_data_split.json").unlink()
    with pytest.raises(DatasetError, match=r"image_data_split\.json: file not found"):
        PhraseCutDataset(root, "val")


def test_missing_image(root: Path) -> None:
    (root / "images" / "2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"images/2\.jpg: image file not found"):
        PhraseCutDataset(root, "val").image(1)


def test_malformed_json(root: Path) -> None:
    (root / "refer_val.json").write_text("[{")
    with pytest.raises(DatasetError, match=r"refer_val\.json: malformed JSON"):
        PhraseCutDataset(root, "val")


@pytest.mark.parametrize("field", ["image_id", "phrase", "instance_boxes", "Polygons"])
def test_missing_task_field(tmp_path: Path, field: str) -> None:
    tasks = default_tasks()
    del tasks["val"][1][field]
    make_phrasecut(tmp_path, tasks)
    with pytest.raises(DatasetError, match=f"task '1__11_12': missing field '{field}'"):
        PhraseCutDataset(tmp_path, "val")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_id": "../1"}, "'image_id' must be a non-negative integer"),
        ({"image_id": 99}, "image_id 99 is not in"),
        ({"phrase": "  "}, "'phrase' must be a non-empty string"),
        ({"instance_boxes": [[1, 2, 3]]}, "is not \\[x, y, w, h\\]"),
        ({"Polygons": []}, "one entry per instance box"),
        ({"task_id": "1__10"}, "task_id '1__10' appears twice"),
    ],
)
def test_malformed_task(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    tasks = default_tasks()
    tasks["val"][1].update(change)
    make_phrasecut(tmp_path, tasks)
    with pytest.raises(DatasetError, match=message):
        PhraseCutDataset(tmp_path, "val")


def test_image_info_without_size(tmp_path: Path) -> None:
    make_phrasecut(tmp_path, info=[{"image_id": 1, "split": "val"}, {"image_id": 2}])
    with pytest.raises(DatasetError, match="image_id 1: field 'height'"):
        PhraseCutDataset(tmp_path, "val")


def test_short_polygon_is_refused_when_strict(tmp_path: Path) -> None:
    tasks = default_tasks()
    tasks["val"][1]["Polygons"][1] = [[[20, 10], [25, 13]]]
    make_phrasecut(tmp_path, tasks)
    ds = PhraseCutDataset(tmp_path, "val")  # lazy: only masks() rasterises
    with pytest.raises(DatasetError, match="task '1__11_12': polygon with 2 point"):
        ds.masks(0)
    # The official tools draw a 2-point polygon as a line and skip 1-point ones.
    loose = PhraseCutDataset(tmp_path, "val", strict=False)
    m = loose.masks(0)[0]
    assert m[10, 20] and m[13, 25] and m[2:7, 15:20].all()


def test_config_key_phrasecut_strict_polygons(tmp_path: Path) -> None:
    # The lenient rule is reachable from a config: data.phrasecut_strict_polygons=false.
    from tseg.config import build_config
    from tseg.data import build_dataset

    tasks = default_tasks()
    tasks["val"][1]["Polygons"][1] = [[[20, 10], [25, 13]]]
    make_phrasecut(tmp_path, tasks)
    keys = ["data.dataset=phrasecut", f"data.root={tmp_path}"]
    strict = build_config(None, keys).data
    assert strict.phrasecut_strict_polygons is True  # the default refuses
    ds = build_dataset(strict, "val")
    with pytest.raises(DatasetError, match="polygon with 2 point.*phrasecut_strict_polygons"):
        ds.masks(0)
    loose = build_dataset(
        build_config(None, [*keys, "data.phrasecut_strict_polygons=false"]).data, "val"
    )
    assert isinstance(loose, PhraseCutDataset) and not loose.strict
    m = loose.masks(0)[0]
    assert m[10, 20] and m[13, 25] and m[2:7, 15:20].all()  # drawn as the official tools do


def test_malformed_points(tmp_path: Path) -> None:
    tasks = default_tasks()
    tasks["val"][1]["Polygons"][0] = [[[1, 2], [3], [4, 5]]]
    make_phrasecut(tmp_path, tasks)
    with pytest.raises(DatasetError, match="task '1__11_12': polygon point"):
        PhraseCutDataset(tmp_path, "val").masks(0)


# ----------------------------------------------------------------- property tests


def official_style_mask(polygons: list[Any], w: int, h: int) -> np.ndarray:
    """PhraseCut's documented algorithm: one PIL polygon per image, summed, > 0."""
    total = np.zeros((h, w))
    for polygon in polygons:
        canvas = Image.new("L", (w, h), 0)
        ImageDraw.Draw(canvas).polygon([(int(x), int(y)) for x, y in polygon], outline=1, fill=1)
        total += np.array(canvas)
    return total > 0


_point = st.lists(st.floats(-20, 60, allow_nan=False), min_size=2, max_size=2)
_polygon = st.lists(_point, min_size=3, max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.lists(_polygon, max_size=4))
def test_random_polygons_match_official_rasterisation(
    h: int, w: int, polygons: list[list[list[float]]]
) -> None:
    m = polygons_to_mask(polygons, h, w)
    assert m.shape == (h, w) and m.dtype == bool
    np.testing.assert_array_equal(m, official_style_mask(polygons, w, h))
    for poly in polygons:  # the outline is filled, so every vertex inside the image is set
        for x, y in poly:
            if 0 <= int(x) < w and 0 <= int(y) < h:
                assert m[int(y), int(x)]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.data())
def test_rectangles_cover_inclusive_pixels(h: int, w: int, data: st.DataObject) -> None:
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, w - 1), min_size=2, max_size=2)))
    y0, y1 = sorted(data.draw(st.lists(st.integers(0, h - 1), min_size=2, max_size=2)))
    m = polygons_to_mask([rect(x0, y0, x1, y1)], h, w)
    assert m.sum() == (x1 - x0 + 1) * (y1 - y0 + 1)
    assert m[y0 : y1 + 1, x0 : x1 + 1].all()


_junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15), 10**15) | st.floats() | st.text(max_size=4),
    lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_junk, st.booleans())
def test_malformed_polygons_raise_dataset_error_only(instances: Any, strict: bool) -> None:
    try:
        m = task_polygons_to_mask(instances, 9, 11, where="task 'x'", strict=strict)
    except DatasetError as e:
        assert str(e).startswith("task 'x'")
        return
    assert m.shape == (9, 11)
