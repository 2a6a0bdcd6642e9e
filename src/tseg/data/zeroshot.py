"""Zero-shot semantic segmentation on Pascal VOC from a referring-expression model.

Section 4.6 of the TSEG paper: the names of the VOC classes are given to the text
encoder, which yields a mask (per-pixel probabilities) and a confidence per name. The
names of one class (e.g. "man", "woman", ... for person) are merged by taking the
maximum, classes whose confidence is below a threshold (0.5) are dropped, and every
pixel takes the argmax among the remaining classes.

Typical use::

    names = load_class_names()                       # {"aeroplane": [...], ...}
    prompts, groups = flatten_class_names(names)     # S names, C groups of indices
    probs, conf = model(image, prompts)              # [S, H, W], [S]
    probs, conf = merge_synonyms(probs, conf, groups)
    labels = zero_shot_labels(conf, probs)           # uint8 [H, W], 0 = background
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tseg.data.base import DatasetError, normalize_expression
from tseg.data.paper.voc import VOC_CLASSES

__all__ = [
    "DEFAULT_CLASS_NAMES",
    "flatten_class_names",
    "load_class_names",
    "merge_synonyms",
    "zero_shot_labels",
]

#: Resource path of the packaged class-name file.
DEFAULT_CLASS_NAMES = "resources/voc_synonyms.yaml"


def _read_text(path: str | os.PathLike[str] | None) -> tuple[str, str]:
    if path is None:
        resource = resources.files("tseg").joinpath(DEFAULT_CLASS_NAMES)
        source = str(resource)
        try:
            return resource.read_text(encoding="utf-8"), source
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{source}: cannot read the packaged class names ({e})") from None
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8"), source
    except FileNotFoundError:
        raise DatasetError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{source}: cannot read ({e})") from None


def load_class_names(
    path: str | os.PathLike[str] | None = None,
    classes: Sequence[str] = VOC_CLASSES[1:],
) -> dict[str, list[str]]:
    """Read a YAML mapping class -> list of names given to the text encoder.

    Args:
        path: YAML file; default the packaged ``tseg/resources/voc_synonyms.yaml``.
        classes: The classes the file must cover, exactly (default the 20 VOC object
            classes); the result follows this order.

    Returns:
        ``{class: [name, ...]}`` in the order of ``classes``.

    Raises:
        DatasetError: Unreadable or malformed YAML, a missing or unknown class, or a
            name list that is empty, holds a non-string or empty name, repeats a name,
            or shares a name with another class (messages name the file and key).
    """
    text, source = _read_text(path)
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        from tseg.config import yaml_problem

        raise DatasetError(f"{source}: malformed YAML: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{source}: expected a mapping of class -> list of names")
    unknown = [str(k) for k in data if k not in classes]
    if unknown:
        raise DatasetError(
            f"{source}: unknown class(es) {', '.join(unknown)}; expected {', '.join(classes)}"
        )
    missing = [c for c in classes if c not in data]
    if missing:
        raise DatasetError(f"{source}: missing class(es) {', '.join(missing)}")
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for cls in classes:
        names = data[cls]
        if not isinstance(names, list) or not names:
            raise DatasetError(f"{source}: '{cls}' must map to a non-empty list of names")
        clean: list[str] = []
        for name in names:
            # YAML turns bare words such as "no" or "on" into booleans: refuse them.
            if not isinstance(name, str) or not name.strip():
                raise DatasetError(f"{source}: '{cls}': {name!r} is not a non-empty string")
            key = normalize_expression(name)
            if key in owner:
                where = "twice" if owner[key] == cls else f"also under '{owner[key]}'"
                raise DatasetError(f"{source}: '{cls}': name {name!r} is listed {where}")
            owner[key] = cls
            clean.append(name.strip())
        out[cls] = clean
    return out


def flatten_class_names(names: Mapping[str, Sequence[str]]) -> tuple[list[str], list[list[int]]]:
    """Flatten ``{class: names}`` into the prompt list and, per class, its prompt indices."""
    prompts: list[str] = []
    groups: list[list[int]] = []
    for class_names in names.values():
        groups.append(list(range(len(prompts), len(prompts) + len(class_names))))
        prompts.extend(class_names)
    return prompts, groups


def merge_synonyms(
    probs: Any, conf: Any, groups: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-name outputs into per-class outputs by taking the maximum.

    Args:
        probs: Per-name probabilities [S, H, W] (array-like, e.g. a CPU tensor).
        conf: Per-name confidences [S].
        groups: For each class, the indices (into S) of its names.

    Returns:
        ``(probs [C, H, W], conf [C])``.

    Raises:
        ValueError: Mismatched shapes, an empty group or an index out of range.
    """
    p = np.asarray(probs)
    c = np.asarray(conf)
    if p.ndim != 3 or c.ndim != 1 or p.shape[0] != c.shape[0]:
        raise ValueError(f"expected probs [S, H, W] and conf [S], got {p.shape} and {c.shape}")
    if not groups:
        raise ValueError("no class groups given")
    for g, group in enumerate(groups):
        if len(group) == 0:
            raise ValueError(f"class group {g} is empty")
        if any(not 0 <= i < p.shape[0] for i in group):
            raise ValueError(f"class group {g} has an index outside 0..{p.shape[0] - 1}")
    merged_p = np.stack([p[list(group)].max(axis=0) for group in groups])
    merged_c = np.array([c[list(group)].max() for group in groups])
    return merged_p, merged_c


def zero_shot_labels(
    confidences: Any, probs: Any, threshold: float = 0.5, mask_threshold: float = 0.5
) -> np.ndarray:
    """Turn per-class confidences and masks into a VOC label map.

    Channel ``c`` of ``probs`` is VOC class ``c + 1`` (class 0 is background). Classes
    whose confidence is below ``threshold`` are dropped. A pixel is background when no
    kept class has a probability above ``mask_threshold``; otherwise it takes the kept
    class of highest probability (ties: the lowest class index).

    Args:
        confidences: Per-class confidences [C] (synonyms already merged).
        probs: Per-class probabilities [C, H, W].
        threshold: Confidence threshold (0.5 in the paper).
        mask_threshold: Probability above which a pixel belongs to a class.

    Returns:
        uint8 [H, W] class indices.

    Raises:
        ValueError: Mismatched shapes, more than 255 classes or non-finite values.
    """
    c = np.asarray(confidences, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if c.ndim != 1 or p.ndim != 3 or p.shape[0] != c.shape[0]:
        raise ValueError(
            f"expected confidences [C] and probs [C, H, W], got {c.shape} and {p.shape}"
        )
    if c.shape[0] > 254:
        raise ValueError("at most 254 classes fit in a uint8 label map with 255 reserved")
    if not (np.isfinite(c).all() and np.isfinite(p).all()):
        raise ValueError("confidences and probabilities must be finite")
    out = np.zeros(p.shape[1:], dtype=np.uint8)
    kept = np.flatnonzero(c >= threshold)
    if kept.size == 0:
        return out
    kept_p = p[kept]
    best = kept_p.argmax(axis=0)
    best_p = np.take_along_axis(kept_p, best[None], axis=0)[0]
    fg = best_p > mask_threshold
    out[fg] = (kept[best] + 1)[fg].astype(np.uint8)
    return out
