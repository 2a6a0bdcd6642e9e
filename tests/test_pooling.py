"""Each pooling head against its formula (paper eqs. 2-8) on hand-made similarities."""

import math

import pytest
import torch

from tseg.models.pooling import HEADS, pool, probability_maps, size_penalty

S = torch.tensor([[[2.0, -1.0], [0.0, 3.0], [-2.0, 1.0]]])  # [B=1, N=3, L=2]


def test_gap_is_mean_over_patches():
    out = pool(S, "gap")
    assert torch.allclose(out["scores"], torch.tensor([[0.0, 1.0]]))


def test_gmp_is_max_over_patches():
    assert torch.allclose(pool(S, "gmp")["scores"], torch.tensor([[2.0, 3.0]]))


def _manual(s_col, m_col, lam, p, eps):
    w = [m / (sum(m_col) + eps) for m in m_col]
    gwp = sum(wi * si for wi, si in zip(w, s_col))
    mbar = sum(m_col) / len(m_col)
    return gwp + (1 - mbar) ** p * math.log(lam + mbar)


def test_mpa_matches_eqs_4_6_7_8():
    lam, p, eps = 0.01, 5.0, 1e-5
    out = pool(S, "mpa", lam=lam, p=p, eps=eps)
    for j in range(2):
        s_col = S[0, :, j].tolist()
        m_col = [math.exp(s) / (math.exp(0.0) + math.exp(s)) for s in s_col]  # eq. 6, s_bg = 0
        assert out["masks"][0, :, j].tolist() == pytest.approx(m_col, rel=1e-6)
        assert out["scores"][0, j].item() == pytest.approx(
            _manual(s_col, m_col, lam, p, eps), rel=1e-5
        )


def test_spa_matches_eqs_4_5_7_8():
    lam, p, eps = 0.1, 3.0, 1e-5
    out = pool(S, "spa", lam=lam, p=p, eps=eps)
    for j in range(2):
        s_col = S[0, :, j].tolist()
        m_col = []
        for i in range(3):
            row = S[0, i].tolist()
            m_col.append(
                math.exp(row[j]) / (math.exp(0.0) + sum(math.exp(v) for v in row))
            )  # eq. 5
        assert out["masks"][0, :, j].tolist() == pytest.approx(m_col, rel=1e-6)
        assert out["scores"][0, j].item() == pytest.approx(
            _manual(s_col, m_col, lam, p, eps), rel=1e-5
        )


def test_spa_masks_with_background_sum_to_one_and_mpa_masks_overlap():
    s = torch.randn(2, 5, 4) * 3
    spa_m = pool(s, "spa")["masks"]
    bg = 1 - spa_m.sum(-1)
    assert (bg > 0).all() and (bg < 1).all()
    # MPA lets one patch belong to several expressions at once (the point of the paper).
    both = pool(torch.full((1, 1, 2), 4.0), "mpa")["masks"]
    assert (both > 0.98).all()
    spa_both = pool(torch.full((1, 1, 2), 4.0), "spa")["masks"]
    assert (spa_both < 0.5).all()


def test_size_penalty_is_negative_for_small_masks_and_zero_for_full():
    m_small = torch.full((1, 10, 1), 0.01)
    assert size_penalty(m_small, 0.01, 5.0).item() < -1.0
    m_full = torch.ones(1, 10, 1)
    assert size_penalty(m_full, 0.01, 5.0).item() == pytest.approx(0.0, abs=1e-6)
    # p = 0 drops the focal factor: the penalty is log(lambda + mbar).
    assert size_penalty(m_small, 0.0, 0.0).item() == pytest.approx(math.log(0.01), rel=1e-5)


def test_heads_registry_and_unknown_head():
    assert set(HEADS) == {"gap", "gmp", "spa", "mpa"}
    with pytest.raises(ValueError, match="unknown pooling head 'max'"):
        pool(S, "max")


def test_all_heads_are_differentiable():
    for head in HEADS:
        s = torch.randn(2, 6, 3, requires_grad=True)
        pool(s, head)["scores"].sum().backward()
        assert s.grad is not None and torch.isfinite(s.grad).all()


def test_mask_inference_mpa_thresholds_at_background_score():
    s = torch.tensor([[[[1.0, -1.0], [0.5, -0.5]]]])  # [B=1, L=1, h=2, w=2]
    prob = probability_maps(s, "mpa", (2, 2))
    assert ((prob > 0.5) == (s > 0)).all()


def test_mask_inference_spa_is_argmax_with_background():
    # Two expressions; pixel 0: expr 0 wins, pixel 1: expr 1 wins, pixel 2: background wins.
    s = torch.tensor([[[[3.0, 1.0, -2.0]], [[1.0, 2.0, -1.0]]]])  # [1, L=2, 1, 3]
    masks = probability_maps(s, "spa", (1, 3)) > 0.5
    assert masks[0, 0, 0].tolist() == [True, False, False]
    assert masks[0, 1, 0].tolist() == [False, True, False]


def test_mask_inference_cam_normalisation():
    s = torch.tensor([[[[4.0, 2.0, 1.0, -3.0]]]])  # normalised CAM: 1, .5, .25, 0
    masks = probability_maps(s, "gap", (1, 4), cam_threshold=0.4) > 0.5
    assert masks[0, 0, 0].tolist() == [True, True, False, False]
    masks = probability_maps(s, "gmp", (1, 4), cam_threshold=0.6) > 0.5
    assert masks[0, 0, 0].tolist() == [True, False, False, False]


def test_mask_inference_upsamples_bilinearly_to_image_size():
    s = torch.randn(2, 3, 4, 5)
    for head in HEADS:
        prob = probability_maps(s, head, (37, 41))
        assert prob.shape == (2, 3, 37, 41)
        assert prob.min() >= 0 and prob.max() <= 1
