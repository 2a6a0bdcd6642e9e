"""RefCOCO loader on fixtures written in the ``refer`` toolkit's on-disk format."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders.refcoco import (
    car_mask,
    column_major_counts,
    crowd_mask,
    default_instances,
    default_refs,
    make_refcoco,
    ref,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from tseg.data.base import DatasetError, RefDataset
from tseg.data.paper.refcoco import RefCocoDataset, _rle_string_counts, decode_segmentation


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_refcoco(tmp_path)


def test_items_expressions_and_ambiguity(root: Path) -> None:
    ds = RefCocoDataset(root, "refcoco", split="val")
    assert isinstance(ds, RefDataset)
    assert len(ds) == 2
    assert [ds.image_id(i) for i in range(2)] == [1, 2]
    assert ds.expressions(0) == ["left man", "red car"]
    assert ds.ann_ids(0) == [10, 11]
    assert ds.expressions(1) == ["crowd"]
    assert ds.sentence_counts(1) == [2]
    assert ds.ref_ids(0) == [(100,), (101,)]
    assert ds.num_refs == 3 and ds.num_sentences == 6
    assert ds.num_dropped_sentences == 2  # both "man on left"
    assert list(ds.iter_pairs()) == [(0, 0), (0, 1), (1, 0)]
    assert ds.num_pairs() == 3


def test_masks_match_independent_drawings(root: Path) -> None:
    ds = RefCocoDataset(root, split="val")
    m = ds.masks(0)
    assert m.shape == (2, 20, 30) and m.dtype == bool
    rect = np.zeros((20, 30), dtype=bool)
    rect[3:13, 2:12] = True
    np.testing.assert_array_equal(m[0], rect)
    np.testing.assert_array_equal(m[1], car_mask().astype(bool))
    np.testing.assert_array_equal(ds.masks(1)[0], crowd_mask().astype(bool))


def test_multi_polygon_annotation_is_merged(root: Path) -> None:
    ds = RefCocoDataset(root, split="train")
    m = ds.masks(0)[0]
    assert m[7:9, 6:9].all() and m[2, 3] and not m[3, 2] and not m[0, 0]


def test_image_and_boxes(root: Path) -> None:
    ds = RefCocoDataset(root, split="val")
    img = ds.image(0)
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    np.testing.assert_allclose(ds.boxes(0), [[2, 3, 10, 10], [15, 5, 11, 5]])
    assert ds.boxes(1).shape == (1, 4)


def test_default_split_by_and_other_datasets(tmp_path: Path) -> None:
    make_refcoco(tmp_path, "refcocog", "umd", refs=[ref(1, 10, 1, "test", ["a man"])])
    ds = RefCocoDataset(tmp_path, "refcocog", split="test")
    assert ds.split_by == "umd" and len(ds) == 1
    make_refcoco(tmp_path, "refcocog", "google", refs=[ref(1, 10, 1, "val", ["a man"])])
    assert len(RefCocoDataset(tmp_path, "refcocog", split_by="google", split="val")) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dataset": "refclef"}, "unknown dataset"),
        ({"dataset": "refcocog", "split": "testA"}, "valid splits: train, val, test"),
        ({"dataset": "refcoco", "split": "test"}, "valid splits: train, val, testA, testB"),
        (
            {"dataset": "refcocog", "split_by": "google", "split": "test"},
            "valid splits: train, val",
        ),
        ({"dataset": "refcoco+", "split_by": "google"}, "no 'google' split"),
    ],
)
def test_invalid_names(root: Path, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        RefCocoDataset(root, **kwargs)


def test_custom_image_dir(tmp_path: Path) -> None:
    make_refcoco(tmp_path, image_dir=tmp_path / "coco" / "train2014")
    ds = RefCocoDataset(tmp_path, split="val", image_dir=tmp_path / "coco" / "train2014")
    assert ds.image(1).shape == (16, 24, 3)
    with pytest.raises(DatasetError, match="image file not found"):
        RefCocoDataset(tmp_path, split="val").image(0)


def test_refer_toolkit_image_dir_is_found(tmp_path: Path) -> None:
    make_refcoco(tmp_path, image_dir=tmp_path / "images" / "mscoco" / "images" / "train2014")
    assert RefCocoDataset(tmp_path).image(0).shape == (20, 30, 3)


def test_missing_files(root: Path) -> None:
    (root / "refcoco" / "instances.json").unlink()
    with pytest.raises(DatasetError, match=r"refcoco/instances\.json: file not found"):
        RefCocoDataset(root)
    (root / "refcoco" / "refs(unc).p").unlink()
    with pytest.raises(DatasetError, match=r"refs\(unc\)\.p: file not found"):
        RefCocoDataset(root)


def test_malformed_json(root: Path) -> None:
    (root / "refcoco" / "instances.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"instances\.json: malformed JSON"):
        RefCocoDataset(root)


def test_missing_list_in_instances(tmp_path: Path) -> None:
    inst = default_instances()
    del inst["annotations"]
    make_refcoco(tmp_path, instances=inst)
    with pytest.raises(DatasetError, match="missing list 'annotations'"):
        RefCocoDataset(tmp_path)


@pytest.mark.parametrize("field", ["ann_id", "image_id", "sentences", "ref_id"])
def test_missing_ref_field(tmp_path: Path, field: str) -> None:
    refs = default_refs()
    del refs[1][field]
    make_refcoco(tmp_path, refs=refs)
    with pytest.raises(DatasetError, match=f"ref #1 .*missing field '{field}'"):
        RefCocoDataset(tmp_path)


def test_sentence_without_text(tmp_path: Path) -> None:
    refs = default_refs()
    refs[0]["sentences"][1] = {"raw": "x"}
    make_refcoco(tmp_path, refs=refs)
    with pytest.raises(DatasetError, match="sentence 1 has no string field 'sent'"):
        RefCocoDataset(tmp_path)


def test_refs_not_a_list(tmp_path: Path) -> None:
    make_refcoco(tmp_path, refs={"refs": []})  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="expected a list of refs"):
        RefCocoDataset(tmp_path)


def test_ann_missing_or_on_another_image(tmp_path: Path) -> None:
    inst = default_instances()
    inst["annotations"] = [a for a in inst["annotations"] if a["id"] != 11]
    make_refcoco(tmp_path, instances=inst)
    with pytest.raises(DatasetError, match="ref_id 101: ann_id 11 is not in"):
        RefCocoDataset(tmp_path)
    inst = default_instances()
    inst["annotations"][1]["image_id"] = 2
    make_refcoco(tmp_path, instances=inst)
    with pytest.raises(DatasetError, match="ann_id 11 belongs to image 2"):
        RefCocoDataset(tmp_path)


def test_image_missing_from_instances(tmp_path: Path) -> None:
    inst = default_instances()
    inst["images"] = inst["images"][1:]
    make_refcoco(tmp_path, instances=inst)
    with pytest.raises(DatasetError, match="image_id 1 is not in"):
        RefCocoDataset(tmp_path)


@pytest.mark.parametrize("name", ["../x.jpg", "/tmp/x.jpg", "a/../../x.jpg"])
def test_file_name_escaping_image_dir_is_refused(tmp_path: Path, name: str) -> None:
    inst = default_instances()
    inst["images"][0]["file_name"] = name
    make_refcoco(tmp_path, instances=inst)
    with pytest.raises(DatasetError, match="escapes the folder"):
        RefCocoDataset(tmp_path)


def test_image_of_wrong_size(tmp_path: Path) -> None:
    inst = default_instances()
    inst["images"][0]["height"] = 21
    make_refcoco(tmp_path, instances=inst)
    with pytest.raises(DatasetError, match="annotation says 21x30"):
        RefCocoDataset(tmp_path).image(0)


@pytest.mark.parametrize(
    "seg, message",
    [
        ([[1, 1, 5, 1]], "polygon 0 has 4 coordinates"),  # would be read as a box
        ([[1, 1, 5, 1, 5]], "polygon 0 has 5 coordinates"),
        ([[1, 1, 5, "x", 5, 5]], "polygon 0 is not a list of numbers"),
        ([], "empty segmentation"),
        ({"counts": "abc"}, "needs 'counts' and 'size'"),
        ({"size": [19, 30], "counts": [600]}, "does not match the image size"),
        ({"size": [20, 30], "counts": [10, 20]}, "sum to 30, expected"),
        ({"size": [20, 30], "counts": [700, -100]}, "negative run length"),
        ({"size": [20, 30], "counts": "~~"}, "malformed compressed RLE"),
        ({"size": [20, 30], "counts": "PPPPPPPPPPPPPPPP0"}, "malformed compressed RLE"),
        ("polygon", "must be a polygon list or an RLE dict"),
    ],
)
def test_malformed_segmentation_only_fails_in_masks(tmp_path: Path, seg: Any, message: str) -> None:
    inst = default_instances()
    inst["annotations"][0]["segmentation"] = seg
    make_refcoco(tmp_path, instances=inst)
    ds = RefCocoDataset(tmp_path)  # decoding is lazy: construction succeeds
    assert ds.expressions(0) and ds.image(0).shape == (20, 30, 3)
    with pytest.raises(DatasetError, match=f"annotation id 10: .*{re.escape(message)}"):
        ds.masks(0)


def test_bad_bbox(tmp_path: Path) -> None:
    inst = default_instances()
    inst["annotations"][0]["bbox"] = [1, 2, 3]
    make_refcoco(tmp_path, instances=inst)
    with pytest.raises(DatasetError, match="annotation id 10: bbox must be"):
        RefCocoDataset(tmp_path).boxes(0)


def test_pickled_global_is_refused(tmp_path: Path) -> None:
    refs = default_refs()
    refs[0]["sent_ids"] = {1, 2}  # a set needs the global builtins.set in protocol 2
    make_refcoco(tmp_path, refs=refs)
    with pytest.raises(DatasetError, match="refused to load global"):
        RefCocoDataset(tmp_path)


# ----------------------------------------------------------------- property tests


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.lists(st.floats(-30, 90, allow_nan=False), min_size=6, max_size=30).filter(
        lambda v: len(v) % 2 == 0
    ),
)
def test_random_polygons_decode_within_image(h: int, w: int, coords: list[float]) -> None:
    m = decode_segmentation([coords], h, w, where="ann")
    assert m.shape == (h, w) and m.dtype == bool


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.data())
def test_integer_rectangles_cover_exact_pixels(h: int, w: int, data: st.DataObject) -> None:
    x0 = data.draw(st.integers(0, w - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    y0 = data.draw(st.integers(0, h - 1))
    y1 = data.draw(st.integers(y0 + 1, h))
    m = decode_segmentation([[x0, y0, x1, y0, x1, y1, x0, y1]], h, w, where="ann")
    expected = np.zeros((h, w), dtype=bool)
    expected[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(m, expected)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_compressed_rle_round_trip(h: int, w: int, data: st.DataObject) -> None:
    bits = data.draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))
    m = np.array(bits, dtype=np.uint8).reshape(h, w)
    rle = mask_utils.encode(np.asfortranarray(m))
    counts = rle["counts"].decode()
    assert _rle_string_counts(counts) == column_major_counts(m)
    seg = {"size": [h, w], "counts": counts}
    np.testing.assert_array_equal(decode_segmentation(seg, h, w, where="a"), m.astype(bool))


_junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text(max_size=8),
    lambda c: (
        st.lists(c, max_size=8) | st.dictionaries(st.sampled_from(["size", "counts", "x"]), c)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_junk)
def test_malformed_segmentations_raise_dataset_error_only(seg: Any) -> None:
    try:
        m = decode_segmentation(seg, 8, 9, where="ann")
    except DatasetError:
        return
    assert m.shape == (8, 9)
