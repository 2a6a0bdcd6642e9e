"""Presence gating: the threshold rule and the gate, on hand-made confidences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tseg.eval.presence import apply_presence_gate, choose_presence_threshold, gated


def test_separable_split_gets_the_middle_of_the_gap() -> None:
    # Absent 0.1, 0.2; present 0.8, 0.9. Candidates 0, 0.15, 0.5, 0.85 score
    # 0+1, 0.5+1, 1+1, 1+0.5: the middle of the gap, 0.5, wins.
    c = choose_presence_threshold([0.1, 0.8, 0.2, 0.9], [0, 1, 0, 1])
    assert c.threshold == pytest.approx(0.5)
    assert (c.n_acc, c.t_acc, c.present, c.absent) == (1.0, 1.0, 2, 2)


def test_overlap_by_hand_and_ties_go_to_the_lower_threshold() -> None:
    # Absent: 0.2, 0.4, 0.6; present: 0.3, 0.7.
    # t:      0     0.25  0.35  0.5   0.65  (midpoints of 0.2 .3 .4 .6 .7)
    # N-acc:  0     1/3   1/3   2/3   1
    # T-acc:  1     1     1/2   1/2   1/2
    # sum:    1     4/3   5/6   7/6   3/2   -> 0.65
    c = choose_presence_threshold([0.2, 0.3, 0.4, 0.6, 0.7], [0, 1, 0, 0, 1])
    assert c.threshold == pytest.approx(0.65)
    assert c.n_acc == 1.0 and c.t_acc == 0.5
    # Absent 0.2, 0.6; present 0.4, 0.8: t = 0.3 (1/2 + 1) and t = 0.7 (1 + 1/2) tie for the
    # best score (0.5 scores 1/2 + 1/2); the lower, 0.3, is chosen.
    tie = choose_presence_threshold([0.2, 0.4, 0.6, 0.8], [0, 1, 0, 1])
    assert tie.threshold == pytest.approx(0.3)
    assert (tie.n_acc, tie.t_acc) == (0.5, 1.0)


def test_no_useful_gate_keeps_it_off() -> None:
    # Every absent pair is more confident than every present one: nothing beats t = 0.
    c = choose_presence_threshold([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1])
    assert c.threshold == 0.0
    assert (c.n_acc, c.t_acc) == (0.0, 1.0)


def test_equal_confidences_and_repeated_levels() -> None:
    c = choose_presence_threshold([0.5, 0.5, 0.5], [1, 0, 1])
    assert c.threshold == 0.0  # a single level: only t = 0 is a candidate
    d = choose_presence_threshold([0.3, 0.3, 0.7, 0.7, 0.7], [0, 0, 1, 1, 0])
    assert d.threshold == pytest.approx(0.5)
    assert (d.n_acc, d.t_acc) == (pytest.approx(2 / 3), 1.0)


def test_matches_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(2, 30))
        conf = np.round(rng.random(n), 2)  # many ties
        lab = rng.random(n) < 0.5
        lab[0], lab[1] = True, False
        c = choose_presence_threshold(conf, lab)
        best = max(
            ((conf[~lab] < t).mean() + (conf[lab] >= t).mean(), -t) for t in np.linspace(0, 1, 2001)
        )
        assert (conf[~lab] < c.threshold).mean() + (conf[lab] >= c.threshold).mean() == (
            pytest.approx(best[0])
        )


@pytest.mark.parametrize(
    ("conf", "labels", "needle"),
    [
        ([0.2, 0.3], [1, 1], "present and absent"),
        ([0.2, 0.3], [0, 0], "present and absent"),
        ([0.2], [1, 0], "equal length"),
        ([0.2, math.nan], [1, 0], "finite"),
        ([0.2, 1.5], [1, 0], r"\[0, 1\]"),
    ],
)
def test_bad_input(conf: list, labels: list, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        choose_presence_threshold(conf, labels)


def test_gate_empties_low_confidence_masks_only() -> None:
    masks = np.ones((3, 2, 2), bool)
    out = apply_presence_gate(masks, [0.9, 0.4, 0.5], 0.5)
    assert out[:, 0, 0].tolist() == [True, False, True]  # 0.5 is not below 0.5
    assert masks.all()  # a copy
    probs = np.full((2, 3, 3), 0.8)
    assert apply_presence_gate(probs, [0.1, 0.9], 0.5)[0].max() == 0.0
    assert (apply_presence_gate(masks, [0.0, 0.0, 0.0], 0.0) == masks).all()  # 0: off
    assert gated([0.0, 0.2], 0.0).tolist() == [False, False]
    with pytest.raises(ValueError, match="do not match"):
        apply_presence_gate(masks, [0.9, 0.4], 0.5)
