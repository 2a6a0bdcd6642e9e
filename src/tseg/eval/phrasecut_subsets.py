"""PhraseCut results by subset, as the official evaluator reports them.

The official ``utils/subset.py`` of ChenyunWu/PhraseCutDataset (``get_subset``, called by
``RefVGLoader.get_task_subset`` in ``utils/refvg_loader.py``) puts each task into subsets
read from the dataset's own fields; ``utils/evaluator.py`` then reports the usual metrics
(``tseg.eval.metrics_semantic.phrasecut_metrics``: mean IoU, cumulative IoU, precision at IoU
strictly above a threshold) over the tasks of each non-empty subset. The subsets here are
those that need no word lists of the official code:

- category frequency, from ``name_att_rel_count.json`` (released with the dataset: its
  ``cat`` list holds ``[name, count]`` from the most to the least frequent). A task's rank
  is the 0-based position of ``phrase_structure.name`` in that list (501 when absent):
  ``c20`` rank < 20, ``c21-100`` 20 <= rank < 100, ``c101-500`` 100 <= rank < 500,
  ``c500+`` the rest, and the cumulative ``c100`` (< 100) and ``c500`` (< 500). The
  evaluator has no other frequent / rare split.
- phrase structure, from ``phrase_structure``: ``p_name``, ``p_att+``, ``p_rel+`` and
  ``p_verbose`` by its ``type`` (``name``: the category name alone tells the region from the
  other Visual Genome boxes; ``attribute`` / ``relation``: attributes / relations are needed
  for that; ``verbose``: nothing short does it); ``p_att`` (some attribute), ``p_attm`` (more
  than one), ``p_rel`` (some relation description), ``p_relm`` (more than one) and
  ``p_att_rel`` (both).
- instance count (``instance_boxes``): ``i_single`` 1, ``i_multi`` 2 to 4, ``i_many`` 5+.
- object size, the task's ground-truth pixels over the image's (mask rasterised as the
  official ``polygons_to_mask``, ``PhraseCutDataset.task_mask``): ``s_small`` < 0.02,
  ``s_large`` > 0.2, ``s_mid`` otherwise.

Left out (they need the official word lists): stuff / object, COCO categories, attribute
types and attribute-frequency bins. A task without ``phrase_structure`` is in no
category-frequency or phrase-structure subset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.base import DatasetError
from ..data.files import load_json
from ..data.paper.phrasecut import PhraseCutDataset
from .metrics_semantic import phrasecut_metrics

__all__ = [
    "SUBSETS",
    "category_ranking_path",
    "load_category_ranking",
    "phrasecut_breakdown",
    "task_subsets",
]

#: The subsets reported, in the official order.
SUBSETS: tuple[str, ...] = (
    "all",
    "c20",
    "c100",
    "c500",
    "c21-100",
    "c101-500",
    "c500+",
    "i_single",
    "i_multi",
    "i_many",
    "p_name",
    "p_att",
    "p_att+",
    "p_rel",
    "p_rel+",
    "p_verbose",
    "p_attm",
    "p_relm",
    "s_small",
    "s_mid",
    "s_large",
    "p_att_rel",
)
_UNRANKED = 501  # the official rank of a name missing from the ranking
_TYPE_SUBSET = {
    "name": "p_name",
    "attribute": "p_att+",
    "relation": "p_rel+",
    "verbose": "p_verbose",
}


def category_ranking_path(root: str | os.PathLike[str]) -> Path:
    """``<root>/name_att_rel_count.json``."""
    return Path(root) / "name_att_rel_count.json"


def load_category_ranking(root: str | os.PathLike[str]) -> dict[str, int]:
    """``{category name: frequency rank}`` (0 = most frequent) from the dataset's file.

    Raises:
        DatasetError: The file is missing, or its ``cat`` entry is not a list of
            ``[name, count]`` pairs.
    """
    path = category_ranking_path(root)
    data = load_json(path)
    cats = data.get("cat") if isinstance(data, dict) else None
    if not isinstance(cats, list):
        raise DatasetError(f"{path}: missing list 'cat' of [name, count] pairs")
    ranks: dict[str, int] = {}
    for i, entry in enumerate(cats):
        ok = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
        if not (ok and isinstance(entry[1], int) and not isinstance(entry[1], bool)):
            raise DatasetError(f"{path}: cat[{i}] is not a [name, count] pair: {entry!r:.60}")
        ranks.setdefault(entry[0], i)  # the first position, as list.index
    return ranks


def task_subsets(
    structure: Mapping[str, Any] | None,
    instances: int,
    relative_size: float,
    category_rank: int | None,
) -> list[str]:
    """The subsets of one task (module docstring), in ``SUBSETS`` order.

    Args:
        structure: The task's ``phrase_structure`` (None: none).
        instances: Its number of instance boxes.
        relative_size: Its ground-truth pixels over the image's.
        category_rank: Its name's frequency rank (None: no ranking, no ``c`` subset).
    """
    out = {"all"}
    if structure is not None and category_rank is not None:
        rank = category_rank
        out.add(
            "c20"
            if rank < 20
            else "c21-100"
            if rank < 100
            else "c101-500"
            if rank < 500
            else "c500+"
        )
        if rank < 100:
            out.add("c100")
        if rank < 500:
            out.add("c500")
    if structure is not None:
        n_att = len(structure["attributes"])
        n_rel = len(structure["relation_descriptions"])
        for name, cond in (
            ("p_att", n_att > 0),
            ("p_attm", n_att > 1),
            ("p_rel", n_rel > 0),
            ("p_relm", n_rel > 1),
            ("p_att_rel", n_att > 0 and n_rel > 0),
        ):
            if cond:
                out.add(name)
        if structure["type"] in _TYPE_SUBSET:
            out.add(_TYPE_SUBSET[structure["type"]])
    if instances == 1:
        out.add("i_single")
    elif 1 < instances < 5:
        out.add("i_multi")
    elif instances >= 5:
        out.add("i_many")
    out.add("s_small" if relative_size < 0.02 else "s_large" if relative_size > 0.2 else "s_mid")
    return [s for s in SUBSETS if s in out]


def phrasecut_breakdown(
    ds: PhraseCutDataset,
    results: Mapping[str, Sequence[float]],
    category_ranks: Mapping[str, int] | None = None,
) -> dict[str, dict[str, float]]:
    """Official PhraseCut metrics per subset over the tasks in ``results``.

    Args:
        ds: The dataset the tasks come from.
        results: ``{task_id: (iou, intersection, union)}`` of each evaluated task.
        category_ranks: ``load_category_ranking(root)``; None leaves out the category
            frequency subsets.

    Returns:
        ``{subset: {"count", "mean_iou", "cum_iou", "prec@0.5", ...}}`` for each non-empty
        subset, in ``SUBSETS`` order.

    Raises:
        KeyError: A task id of ``results`` is not in ``ds``.
        DatasetError: A task's ``phrase_structure`` is malformed.
    """
    rows: dict[str, list[Sequence[float]]] = {s: [] for s in SUBSETS}
    for task_id, row in results.items():
        structure = ds.phrase_structure(task_id)  # KeyError for an unknown task
        mask = ds.task_mask(task_id)
        rank = None
        if category_ranks is not None and structure is not None:
            rank = category_ranks.get(structure["name"], _UNRANKED)
        subsets = task_subsets(structure, ds.instance_count(task_id), mask.mean(), rank)
        for s in subsets:
            rows[s].append(row)
    return {
        s: phrasecut_metrics(*([r[j] for r in group] for j in range(3)))
        for s, group in rows.items()
        if group
    }
