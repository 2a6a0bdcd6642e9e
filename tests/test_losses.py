"""The three training losses against their formulas, on hand-made tensors."""

import math

import pytest
import torch

from tseg.train.losses import box_loss, dice_loss, soft_margin_loss


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_soft_margin_is_the_mean_binary_log_loss_of_the_scores():
    # Section 3.3: -1/(B L) sum_ij [t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))].
    z = [[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]]
    t = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.25]]  # a soft (tf-idf) target too
    want = 0.0
    for zr, tr in zip(z, t):
        for zi, ti in zip(zr, tr):
            want -= ti * math.log(sigmoid(zi)) + (1 - ti) * math.log(1 - sigmoid(zi))
    want /= 6
    got = soft_margin_loss(torch.tensor(z), torch.tensor(t)).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_dice_is_one_minus_the_smoothed_overlap_ratio_averaged_over_pairs():
    # Eq. 9 on sigmoid(logits), eps = 1: 1 - (2 sum(m t) + 1) / (sum m + sum t + 1), then mean.
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 1.0]], [[-3.0, -3.0], [-3.0, -3.0]]])  # [P=2, 2, 2]
    target = torch.tensor([[[0, 1], [0, 1]], [[0, 0], [0, 0]]], dtype=torch.bool)
    want = []
    for lp, tp in zip(logits.tolist(), target.tolist()):
        m = [sigmoid(v) for row in lp for v in row]
        t = [float(v) for row in tp for v in row]
        inter = sum(a * b for a, b in zip(m, t))
        want.append(1 - (2 * inter + 1) / (sum(m) + sum(t) + 1))
    assert dice_loss(logits, target).item() == pytest.approx(sum(want) / 2, rel=1e-6)
    # A perfect, confident prediction costs almost nothing; an empty target is defined.
    sure = torch.tensor([[[-20.0, 20.0], [-20.0, 20.0]]])
    assert dice_loss(sure, target[:1]).item() == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(dice_loss(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)).item())


def test_box_loss_is_the_mean_patch_binary_cross_entropy():
    # Table 2e: each patch of a positive pair predicts "inside the box" from its similarity.
    s = [[1.5, -0.5, 0.0, 4.0], [-2.0, 2.0, 0.5, -1.0]]  # [P=2, N=4]
    inside = [[1, 0, 0, 1], [0, 1, 1, 0]]
    want = 0.0
    for sr, br in zip(s, inside):
        for si, bi in zip(sr, br):
            want -= bi * math.log(sigmoid(si)) + (1 - bi) * math.log(1 - sigmoid(si))
    want /= 8
    got = box_loss(torch.tensor(s), torch.tensor(inside, dtype=torch.uint8)).item()
    assert got == pytest.approx(want, rel=1e-6)
