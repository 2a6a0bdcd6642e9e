"""PhraseCut per-subset results on a fixture, against figures computed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from builders.phrasecut import make_phrasecut, rect

from tseg.data.base import DatasetError
from tseg.data.paper.phrasecut import PhraseCutDataset
from tseg.eval.phrasecut_subsets import (
    SUBSETS,
    category_ranking_path,
    load_category_ranking,
    phrasecut_breakdown,
    task_subsets,
)


def _ps(name: str, atts: list[str], rels: list[list[str]], kind: str) -> dict[str, Any]:
    return {
        "name": name,
        "attributes": atts,
        "relation_ids": [],
        "relation_descriptions": rels,
        "type": kind,
    }


def _task(task_id: str, image_id: int, phrase: str, rects: list[tuple], ps: Any) -> dict:
    task = {
        "task_id": task_id,
        "image_id": image_id,
        "ann_ids": list(range(len(rects))),
        "phrase": phrase,
        "instance_boxes": [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in rects],
        "Polygons": [[rect(*r)] for r in rects],
    }
    if ps is not None:
        task["phrase_structure"] = ps
    return task


# Images 1 (20 x 30 = 600 px) and 2 (12 x 16 = 192 px). A rect(x0, y0, x1, y1) polygon covers
# the inclusive pixel box, (x1 - x0 + 1) * (y1 - y0 + 1) pixels.
TASKS = [
    # 9 px / 600 = 0.015: small; one instance; name only.
    _task("1__a", 1, "dog", [(0, 0, 2, 2)], _ps("dog", [], [], "name")),
    # 200 / 600: large; two instances; an attribute.
    _task(
        "1__b",
        1,
        "white cat",
        [(0, 0, 9, 9), (20, 0, 29, 9)],
        _ps("cat", ["white"], [], "attribute"),
    ),
    # 5 x 4 px = 20 / 600 = 0.033: mid; five instances; two attributes and a relation.
    _task(
        "1__c",
        1,
        "big red car near tree",
        [(0, 12, 1, 13), (4, 12, 5, 13), (8, 12, 9, 13), (12, 12, 13, 13), (16, 12, 17, 13)],
        _ps("car", ["big", "red"], [["near", "tree"]], "relation"),
    ),
    # 32 / 192 = 0.167: mid; two relations; verbose.
    _task(
        "2__d",
        2,
        "sign on pole by road",
        [(0, 0, 7, 3)],
        _ps("sign", [], [["on", "pole"], ["by", "road"]], "verbose"),
    ),
    # The whole image: large; no phrase_structure at all.
    _task("2__e", 2, "zebra", [(0, 0, 15, 11)], None),
]
# (IoU, intersection, union) of each task, as an evaluation would give them.
RESULTS = {
    "1__a": (0.5, 10, 20),
    "1__b": (0.25, 30, 120),
    "1__c": (0.0, 0, 50),
    "2__d": (0.8, 40, 50),
    "2__e": (1.0, 100, 100),
}


def _ranking() -> dict[str, list[list[Any]]]:
    """dog rank 0, cat rank 50, car rank 250; "sign" is not ranked (rank 501)."""
    names = ["dog"] + [f"n{i}" for i in range(1, 50)] + ["cat"]
    names += [f"m{i}" for i in range(51, 250)] + ["car"] + [f"k{i}" for i in range(251, 600)]
    return {"cat": [[n, 10_000 - i] for i, n in enumerate(names)], "att": [], "rel": []}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_phrasecut(tmp_path / "VGPhraseCut_v0", tasks={"val": TASKS})
    category_ranking_path(root).write_text(json.dumps(_ranking()))
    return root


def test_subsets_of_each_task(root: Path) -> None:
    ds = PhraseCutDataset(root, "val")
    ranks = load_category_ranking(root)
    assert (ranks["dog"], ranks["cat"], ranks["car"]) == (0, 50, 250) and "sign" not in ranks
    got = {}
    for t in ds.iter_tasks():
        ps = ds.phrase_structure(t.task_id)
        rank = None if ps is None else ranks.get(ps["name"], 501)
        size = ds.task_mask(t.task_id).mean()
        got[t.task_id] = task_subsets(ps, ds.instance_count(t.task_id), size, rank)
    assert got == {
        "1__a": ["all", "c20", "c100", "c500", "i_single", "p_name", "s_small"],
        "1__b": ["all", "c100", "c500", "c21-100", "i_multi", "p_att", "p_att+", "s_large"],
        "1__c": [
            "all",
            "c500",
            "c101-500",
            "i_many",
            "p_att",
            "p_rel",
            "p_rel+",
            "p_attm",
            "s_mid",
            "p_att_rel",
        ],
        "2__d": ["all", "c500+", "i_single", "p_rel", "p_verbose", "p_relm", "s_mid"],
        "2__e": ["all", "i_single", "s_large"],
    }


def test_breakdown_figures_by_hand(root: Path) -> None:
    ds = PhraseCutDataset(root, "val")
    out = phrasecut_breakdown(ds, RESULTS, load_category_ranking(root))
    assert list(out) == [s for s in SUBSETS if s in out]
    assert set(out) == set(SUBSETS)  # the fixture fills every subset
    a = out["all"]
    assert a["count"] == 5
    assert a["mean_iou"] == pytest.approx((0.5 + 0.25 + 0 + 0.8 + 1) / 5)
    assert a["cum_iou"] == pytest.approx(180 / 340)
    assert (a["prec@0.5"], a["prec@0.7"], a["prec@0.9"]) == pytest.approx((0.4, 0.4, 0.2))
    expect = {  # subset: (count, mean IoU, cumulative IoU)
        "c20": (1, 0.5, 10 / 20),
        "c100": (2, 0.375, 40 / 140),
        "c500": (3, 0.25, 40 / 190),
        "c21-100": (1, 0.25, 30 / 120),
        "c101-500": (1, 0.0, 0.0),
        "c500+": (1, 0.8, 40 / 50),
        "i_single": (3, 2.3 / 3, 150 / 170),
        "i_multi": (1, 0.25, 30 / 120),
        "i_many": (1, 0.0, 0.0),
        "p_name": (1, 0.5, 0.5),
        "p_att": (2, 0.125, 30 / 170),
        "p_rel": (2, 0.4, 40 / 100),
        "p_verbose": (1, 0.8, 0.8),
        "s_small": (1, 0.5, 0.5),
        "s_mid": (2, 0.4, 40 / 100),
        "s_large": (2, 0.625, 130 / 220),
    }
    for s, (n, miou, ciou) in expect.items():
        assert (out[s]["count"], out[s]["mean_iou"], out[s]["cum_iou"]) == pytest.approx(
            (n, miou, ciou)
        ), s
    # Without the ranking file there is no category-frequency subset.
    plain = phrasecut_breakdown(ds, RESULTS)
    assert not any(s.startswith("c") for s in plain)
    assert plain["all"] == out["all"]
    # Only the tasks given are counted.
    some = phrasecut_breakdown(ds, {"1__a": RESULTS["1__a"]})
    assert set(some) == {"all", "i_single", "p_name", "s_small"}


def test_bin_edges() -> None:
    ps = _ps("x", [], [], "name")

    def subsets(rank: int | None = 0, n: int = 1, size: float = 0.1) -> set[str]:
        return set(task_subsets(ps, n, size, rank))

    assert {"c20", "c100", "c500"} <= subsets(19)
    assert "c21-100" in subsets(20) and "c100" in subsets(99)
    assert {"c101-500", "c500"} <= subsets(100) and "c100" not in subsets(100)
    assert "c500" in subsets(499) and "c500+" in subsets(500) and "c500" not in subsets(500)
    assert not any(s.startswith("c") for s in subsets(None))
    assert "s_mid" in subsets(size=0.02) and "s_small" in subsets(size=0.0199)
    assert "s_mid" in subsets(size=0.2) and "s_large" in subsets(size=0.2001)
    assert "i_multi" in subsets(n=4) and "i_many" in subsets(n=5)
    assert "p_name" not in set(task_subsets(_ps("x", [], [], "other"), 1, 0.1, 0))


def test_bad_fields_are_named(root: Path, tmp_path: Path) -> None:
    ds = PhraseCutDataset(root, "val")
    with pytest.raises(KeyError, match="nope"):
        phrasecut_breakdown(ds, {"nope": (0.0, 0, 1)})
    broken = [dict(t) for t in TASKS]
    broken[1]["phrase_structure"] = {"name": "cat", "attributes": [], "type": "name"}
    broken[2]["phrase_structure"] = "car"
    other = make_phrasecut(tmp_path / "b", tasks={"val": broken})
    ds2 = PhraseCutDataset(other, "val")
    with pytest.raises(
        DatasetError, match=r"refer_val\.json: task '1__b'.*'relation_descriptions'"
    ):
        phrasecut_breakdown(ds2, {"1__b": RESULTS["1__b"]})
    with pytest.raises(DatasetError, match="task '1__c': phrase_structure must be an object"):
        ds2.phrase_structure("1__c")
    with pytest.raises(DatasetError, match=r"name_att_rel_count\.json: file not found"):
        load_category_ranking(other)
    category_ranking_path(other).write_text(json.dumps({"cat": [["dog", 3], ["cat"]]}))
    with pytest.raises(DatasetError, match=r"cat\[1\] is not a \[name, count\] pair"):
        load_category_ranking(other)
    category_ranking_path(other).write_text(json.dumps({"att": []}))
    with pytest.raises(DatasetError, match="missing list 'cat'"):
        load_category_ranking(other)
