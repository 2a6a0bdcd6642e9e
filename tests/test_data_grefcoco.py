"""gRefCOCO loader on a fixture written in the published layout (grefs(unc).json + instances.json).

The layout follows ReLA's ``datasets/DATASET.md`` and ``grefer.py``: refs whose ``ann_id`` and
``category_id`` are lists, ``[-1]`` and ``"no_target": true`` for an expression that refers
to nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders.grefcoco import (
    ANN_MASKS,
    default_instances,
    default_refs,
    make_grefcoco,
)

from tseg.data.base import DatasetError, RefDataset
from tseg.data.paper.grefcoco import GRefCocoDataset, grefs_path, instances_path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_grefcoco(tmp_path)


def test_items_expressions_and_no_target(root: Path) -> None:
    ds = GRefCocoDataset(root, "val")
    assert isinstance(ds, RefDataset)
    assert len(ds) == 2 and [ds.image_id(i) for i in range(2)] == [1, 2]
    assert ds.expressions(0) == [
        "both objects",
        "the blue elephant",
        "left object",
        "object and crowd",
    ]
    assert ds.no_target(0) == [False, True, False, False]
    assert ds.ann_ids(0) == [(10, 11), (), (10,), (10,)]
    assert ds.expressions(1) == ["box", "a dog"]
    assert ds.no_target(1) == [False, True]
    assert ds.sentence_counts(1) == [2, 1]
    assert ds.num_refs == 6 and ds.num_no_target_refs == 2 and ds.num_sentences == 9
    assert ds.num_dropped_sentences == 2  # "two things" twice, for two target sets
    assert list(ds.iter_pairs())[:2] == [(0, 0), (0, 1)] and ds.num_pairs() == 6
    assert ds.image_size(0) == (20, 30)
    assert ds.image(1).shape == (16, 24, 3)
    assert "no_target_refs=2" in repr(ds)


def test_masks_are_unions_of_targets_and_empty_for_no_target(root: Path) -> None:
    ds = GRefCocoDataset(root, "val")
    m = ds.masks(0)
    assert m.shape == (4, 20, 30) and m.dtype == bool
    np.testing.assert_array_equal(m[0], ANN_MASKS[10] | ANN_MASKS[11])
    assert not m[1].any()
    np.testing.assert_array_equal(m[2], ANN_MASKS[10])
    np.testing.assert_array_equal(m[3], ANN_MASKS[10])  # crowd region 13 left out
    m2 = ds.masks(1)
    np.testing.assert_array_equal(m2[0], ANN_MASKS[12])
    assert not m2[1].any()
    # no_target is exactly "the mask is empty".
    for i in range(len(ds)):
        assert ds.no_target(i) == [not x.any() for x in ds.masks(i)]


def test_no_target_can_be_left_out_and_build_dataset_leaves_it_out_of_train(root: Path) -> None:
    ds = GRefCocoDataset(root, "val", no_target=False)
    assert ds.expressions(1) == ["box"] and not any(ds.no_target(0))

    from tseg.config import build_config
    from tseg.data import build_dataset

    cfg = build_config(None, ["data.dataset=grefcoco", f"data.root={root}"])
    assert build_dataset(cfg.data, "val").expressions(1) == ["box", "a dog"]
    train = build_dataset(cfg.data, "train")
    assert train.expressions(0) == ["train only"] and train.no_target(0) == [False]


def test_a_lone_int_ann_id_is_a_single_target(tmp_path: Path) -> None:
    refs = default_refs()
    refs[3]["ann_id"] = 12
    ds = GRefCocoDataset(make_grefcoco(tmp_path, refs=refs), "val")
    assert ds.ann_ids(1)[0] == (12,)


def _broken(tmp_path: Path, i: int, change: dict[str, Any], drop: str | None = None) -> Path:
    refs = default_refs()
    refs[i].update(change)
    if drop:
        del refs[i][drop]
    return make_grefcoco(tmp_path, refs=refs)


@pytest.mark.parametrize("key", ["ann_id", "ref_id", "image_id", "split", "sentences"])
def test_missing_key_names_file_and_key(tmp_path: Path, key: str) -> None:
    root = _broken(tmp_path, 0, {}, drop=key)
    with pytest.raises(DatasetError) as e:
        GRefCocoDataset(root, "val")
    msg = str(e.value)
    assert str(grefs_path(root)) in msg and f"'{key}'" in msg


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"ann_id": [99]},
            r"grefs\(unc\)\.json: ref_id 100: ann_id 99 is not in .*instances\.json",
        ),
        ({"ann_id": [10, -1]}, "mixes -1"),
        ({"ann_id": []}, "non-empty list"),
        ({"ann_id": ["10"]}, "non-empty list"),
        ({"no_target": True}, "'no_target' is true but 'ann_id' is"),
        ({"no_target": "no"}, "must be true or false"),
        ({"ann_id": [12]}, "ann_id 12 belongs to image 2, not to image 1"),
        ({"ann_id": [13]}, "crowd annotation"),
        ({"image_id": 5}, "image_id 5 is not in"),
        ({"sentences": [{"raw": "x"}]}, "sentence 0 has no string field 'sent'"),
        ({"ref_id": "100"}, "'ref_id' must be an integer"),
    ],
)
def test_malformed_refs(tmp_path: Path, change: dict[str, Any], needle: str) -> None:
    root = _broken(tmp_path, 0, change)
    with pytest.raises(DatasetError, match=needle):
        GRefCocoDataset(root, "val")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"grefs\(unc\)\.json: file not found"):
        GRefCocoDataset(tmp_path, "val")
    root = make_grefcoco(tmp_path)
    instances_path(root).unlink()
    with pytest.raises(DatasetError, match=r"instances\.json: file not found"):
        GRefCocoDataset(root, "val")
    inst = copy.deepcopy(default_instances())
    del inst["annotations"]
    root = make_grefcoco(tmp_path / "b", instances=inst)
    with pytest.raises(DatasetError, match="missing list 'annotations'"):
        GRefCocoDataset(root, "val")
    root = make_grefcoco(tmp_path / "c", refs={"refs": []})
    with pytest.raises(DatasetError, match="expected a list of refs"):
        GRefCocoDataset(root, "val")
    with pytest.raises(DatasetError, match="no split 'test'"):
        GRefCocoDataset(root, "test")


def test_missing_segmentation_is_named(tmp_path: Path) -> None:
    inst = default_instances()
    del inst["annotations"][2]["segmentation"]
    ds = GRefCocoDataset(make_grefcoco(tmp_path, instances=inst), "val")
    with pytest.raises(DatasetError, match="annotation id 12: missing field 'segmentation'"):
        ds.masks(1)
