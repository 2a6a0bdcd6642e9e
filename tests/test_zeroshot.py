"""Zero-shot VOC class names, synonym merging and label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tseg.data.base import DatasetError
from tseg.data.paper.voc import VOC_CLASSES
from tseg.data.zeroshot import (
    flatten_class_names,
    load_class_names,
    merge_synonyms,
    zero_shot_labels,
)


def test_packaged_class_names() -> None:
    names = load_class_names()
    assert list(names) == list(VOC_CLASSES[1:])
    assert names["person"] == [
        "person", "man", "woman", "men", "women", "child", "boy", "girl", "baby"
    ]  # fmt: skip
    assert names["diningtable"] == ["dining table"]
    assert all(len(v) == 1 for k, v in names.items() if k != "person")


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "names.yaml"
    path.write_text(text)
    return path


def _valid_lines(**override: str) -> str:
    lines = {c: f"[{c}]" for c in VOC_CLASSES[1:]}
    lines.update(override)
    return "".join(f"{c}: {v}\n" for c, v in lines.items() if v)


@pytest.mark.parametrize(
    "text, message",
    [
        ("person: [man\n", "malformed YAML: .* at line"),
        ("- person\n", "expected a mapping"),
        (_valid_lines(cat=""), "missing class\\(es\\) cat"),
        (_valid_lines() + "kitten: [kitten]\n", "unknown class\\(es\\) kitten"),
        (_valid_lines(cat="[]"), "'cat' must map to a non-empty list"),
        (_valid_lines(cat="kitty"), "'cat' must map to a non-empty list"),
        (_valid_lines(cat="[cat, no]"), "'cat': False is not a non-empty string"),
        (_valid_lines(cat="[cat, '  ']"), "'cat': '  ' is not a non-empty string"),
        (_valid_lines(cat="[cat, Cat]"), "'cat': name 'Cat' is listed twice"),
        (_valid_lines(dog="[dog, cat]"), "'dog': name 'cat' is listed also under 'cat'"),
    ],
)
def test_invalid_files_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(DatasetError, match=message) as err:
        load_class_names(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found"):
        load_class_names(tmp_path / "absent.yaml")


def test_custom_file_and_classes(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "b: [bee, wasp]\na: [ant]\n")
    assert load_class_names(path, classes=("a", "b")) == {"a": ["ant"], "b": ["bee", "wasp"]}


def test_flatten_and_merge() -> None:
    prompts, groups = flatten_class_names({"a": ["x"], "b": ["y", "z"]})
    assert prompts == ["x", "y", "z"] and groups == [[0], [1, 2]]
    probs = np.array([[[0.1, 0.9]], [[0.2, 0.3]], [[0.6, 0.1]]])  # [S=3, H=1, W=2]
    conf = np.array([0.4, 0.2, 0.8])
    p, c = merge_synonyms(probs, conf, groups)
    np.testing.assert_allclose(p, [[[0.1, 0.9]], [[0.6, 0.3]]])
    np.testing.assert_allclose(c, [0.4, 0.8])
    with pytest.raises(ValueError, match="empty"):
        merge_synonyms(probs, conf, [[0], []])
    with pytest.raises(ValueError, match="outside"):
        merge_synonyms(probs, conf, [[3]])
    with pytest.raises(ValueError, match="expected probs"):
        merge_synonyms(probs, conf[:2], groups)


def test_zero_shot_labels_by_hand() -> None:
    # Three classes over four pixels.
    probs = np.array(
        [
            [[0.9, 0.6, 0.2, 0.4]],  # class 1: kept (conf 0.7)
            [[0.95, 0.7, 0.1, 0.3]],  # class 2: dropped (conf 0.3) despite high probs
            [[0.1, 0.8, 0.5, 0.45]],  # class 3: kept (conf 0.5, threshold inclusive)
        ]
    )
    conf = np.array([0.7, 0.3, 0.5])
    labels = zero_shot_labels(conf, probs)
    assert labels.dtype == np.uint8 and labels.shape == (1, 4)
    # pixel 0: 1 (0.9); pixel 1: 3 (0.8 > 0.6); pixel 2: background (0.5 is not > 0.5);
    # pixel 3: background (nothing above 0.5).
    np.testing.assert_array_equal(labels, [[1, 3, 0, 0]])


def test_zero_shot_labels_nothing_kept_and_thresholds() -> None:
    probs = np.full((2, 2, 2), 0.9)
    assert not zero_shot_labels(np.array([0.1, 0.2]), probs).any()
    out = zero_shot_labels(np.array([0.1, 0.2]), probs, threshold=0.15, mask_threshold=0.95)
    assert not out.any()
    out = zero_shot_labels(np.array([0.1, 0.2]), probs, threshold=0.15)
    assert (out == 2).all()
    # Ties go to the lowest class.
    assert (zero_shot_labels(np.array([0.9, 0.9]), probs) == 1).all()


def test_zero_shot_labels_errors() -> None:
    with pytest.raises(ValueError, match="expected confidences"):
        zero_shot_labels(np.zeros(3), np.zeros((2, 1, 1)))
    with pytest.raises(ValueError, match="finite"):
        zero_shot_labels(np.array([np.nan]), np.zeros((1, 1, 1)))
