"""The torch inference maths in numpy: resizing, eval size, pooling heads and probability maps.

Each function mirrors one in the torch path (named in its docstring) closely enough that the
ONNX Runtime path gives the same probabilities to about 1e-6; ``tests/test_export_onnx.py``
compares them on random inputs. Only numpy is imported here, never torch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def eval_size(h: int, w: int, size: int, multiple: int) -> tuple[int, int]:
    """Copy of ``tseg.data.transforms.eval_size`` (which imports torch): shorter side ``size``,
    both sides rounded to multiples of ``multiple`` (Python's round, ties to even)."""
    scale = size / min(h, w)

    def snap(v: float) -> int:
        return max(multiple, int(round(v / multiple)) * multiple)

    return snap(h * scale), snap(w * scale)


# The weights below are computed in float32 with aten's formulas and operation order: aten does
# so for float32 images, and float64 weights would differ from its own by up to 2e-5.
_F = np.float32


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix of ``F.interpolate(mode="bilinear", align_corners=False)`` along one axis."""
    scale = float(_F(n_in) / _F(n_out))
    # aten: float scale times (int64 index + double 0.5), in double, then stored as float.
    src = (scale * (np.arange(n_out) + 0.5) - 0.5).astype(_F)
    src = np.maximum(src, _F(0.0))  # clamped below, as aten does for linear modes
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = np.clip(src - i0.astype(_F), _F(0.0), _F(1.0))
    w = np.zeros((n_out, n_in), _F)
    rows = np.arange(n_out)
    np.add.at(w, (rows, i0), _F(1.0) - frac)
    np.add.at(w, (rows, i1), frac)
    return w


def _antialias_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix of aten's antialiased bilinear resize (``antialias=True``) along one
    axis: a triangle filter widened by the shrink factor, each row normalised to sum 1 (as PIL)."""
    scale = _F(n_in) / _F(n_out)
    # Support: interp_size / 2 = 1 for bilinear, widened by the factor when shrinking.
    support = scale if scale >= 1.0 else _F(1.0)
    invscale = _F(1.0) / scale if scale >= 1.0 else _F(1.0)
    w = np.zeros((n_out, n_in), _F)
    for i in range(n_out):
        center = scale * _F(i + 0.5)
        lo = max(int(center - support + _F(0.5)), 0)  # int() truncates, as the C++ cast does
        hi = min(int(center + support + _F(0.5)), n_in)
        j = np.arange(hi - lo, dtype=_F)
        k = np.maximum(_F(1.0) - np.abs((j + _F(lo) - center + _F(0.5)) * invscale), _F(0.0))
        total = _F(0.0)
        for v in k:  # sequential sum, as aten
            total += v
        w[i, lo:hi] = k / total if total != 0 else k
    return w


@lru_cache(maxsize=64)
def resize_weights(n_in: int, n_out: int, antialias: bool) -> np.ndarray:
    """[n_out, n_in] float32 interpolation matrix along one axis (read-only; cached: the
    antialiased one is built in a Python loop, 7 ms per 640 x 480 photo, and a folder's photos
    mostly share their sizes)."""
    w = _antialias_weights(n_in, n_out) if antialias else _bilinear_weights(n_in, n_out)
    w.setflags(write=False)
    return w


@lru_cache(maxsize=64)
def resize_taps(n_in: int, n_out: int, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero band of ``resize_weights``: per output index its K taps, as source indices
    [n_out, K] (int64) and weights [n_out, K] (float32; padded taps have weight 0 and index 0).
    A row's nonzeros are contiguous, K = the widest row (3-4 for a 1.25x shrink)."""
    w = resize_weights(n_in, n_out, antialias)  # [n_out, n_in]
    nz = w != 0
    first = np.where(nz.any(axis=1), nz.argmax(axis=1), 0)  # [n_out]
    last = n_in - 1 - nz[:, ::-1].argmax(axis=1)
    k = max(1, int((last - first + 1).max()))
    idx = np.minimum(first[:, None] + np.arange(k), n_in - 1)  # [n_out, K]
    taps = np.take_along_axis(w, idx, axis=1)
    taps[first[:, None] + np.arange(k) > last[:, None]] = 0.0  # past a row's band
    idx.setflags(write=False)
    taps.setflags(write=False)
    return idx, taps


def _banded(x: np.ndarray, n_out: int, axis: int, antialias: bool) -> np.ndarray:
    """Resize ``x`` along ``axis`` (-1 or -2) with K gathers and multiply-adds: n_out x K work
    per line instead of the dense product's n_out x n_in (a 640 -> 512 shrink: 4 taps, not 640)."""
    idx, taps = resize_taps(x.shape[axis], n_out, antialias)
    out = None
    for k in range(idx.shape[1]):
        if axis == -1:
            term = x[..., idx[:, k]] * taps[:, k]  # [..., n_out]
        else:
            term = x[..., idx[:, k], :] * taps[:, k, None]  # [..., n_out, W]
        if out is None:
            out = term
        else:
            out += term
    return out  # type: ignore[return-value]


def resize(x: np.ndarray, size: tuple[int, int], antialias: bool = False) -> np.ndarray:
    """Bilinear resize of the last two axes of ``x`` [..., H, W] -> [..., h, w] (float32).

    ``F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=antialias)``; both
    are separable, so the result is one matrix product per axis.
    """
    wh = resize_weights(x.shape[-2], size[0], antialias)  # [h, H]
    ww = resize_weights(x.shape[-1], size[1], antialias)  # [w, W]
    # float32 throughout, as torch computes it; rows first keeps the big intermediate small.
    return wh @ (x.astype(np.float32, copy=False) @ ww.T)  # [..., h, w]


def resize_image(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``tseg.data.transforms.resize`` for an image [3, H, W]: antialiased when either side shrinks.

    Banded (``_banded``), columns first: a photo's sides are long and each output pixel has a
    few taps, so the dense products of ``resize`` spent ~27 ms per 640 x 480 photo on zeros.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    x = x.astype(np.float32, copy=False)
    return _banded(_banded(x, size[1], -1, shrink), size[0], -2, shrink)  # [3, h, w]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a negative number only, so large |x| neither overflows nor warns.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def pool_scores(
    s: np.ndarray, head: str, lam: float = 0.01, p: float = 5.0, eps: float = 1e-5
) -> np.ndarray:
    """``tseg.models.pooling.pool(...)["scores"]``: S [B, N, L] -> z [B, L] (eqs. 2-8)."""
    if head == "gap":
        return s.mean(axis=1)
    if head == "gmp":
        return s.max(axis=1)
    if head == "mpa":
        m = sigmoid(s)  # eq. 6
    elif head == "spa":
        bg = np.zeros(s.shape[:-1] + (1,), s.dtype)
        m = softmax(np.concatenate([bg, s], axis=-1), axis=-1)[..., 1:]  # eq. 5
    else:
        raise ValueError(f"unknown pooling head {head!r}: choose one of gap, gmp, spa, mpa")
    w = m / (m.sum(axis=1, keepdims=True) + eps)  # eq. 4
    mbar = m.mean(axis=1)  # [B, L]
    penalty = (1.0 - mbar) ** p * np.log(np.maximum(lam + mbar, 1e-12))  # eq. 7
    return (w * s).sum(axis=1) + penalty


def probability_maps(
    s: np.ndarray, head: str, size: tuple[int, int], cam_threshold: float = 0.5
) -> np.ndarray:
    """``tseg.models.pooling.probability_maps``: S as a grid [B, L, h, w] -> maps [B, L, H, W]
    in [0, 1], each thresholded at 0.5 to give the mask (see that function for each head)."""

    def up(x: np.ndarray) -> np.ndarray:
        return resize(x, size, antialias=False)

    if head == "mpa":
        m = up(sigmoid(s))
        return np.clip(m, 0.0, 1.0, out=m)  # in place: the maps can be 100s of MB
    if head == "spa":
        bg = np.zeros((s.shape[0], 1) + s.shape[2:], s.dtype)
        prob = up(softmax(np.concatenate([bg, s], axis=1), axis=1))  # [B, 1 + L, H, W]
        winner = prob.argmax(axis=1)[:, None]  # [B, 1, H, W]; first maximum wins, as in torch
        idx = np.arange(1, prob.shape[1]).reshape(1, -1, 1, 1)
        wins = winner == idx  # [B, L, H, W]
        p = np.clip(prob[:, 1:], 0.0, 1.0)
        return np.where(wins, 0.5 + 0.5 * np.maximum(p, 1e-6), 0.5 * p).astype(np.float32)
    if head in ("gap", "gmp"):
        cam = np.maximum(up(s), 0.0)
        peak = cam.reshape(cam.shape[0], cam.shape[1], -1).max(axis=2)[:, :, None, None]
        cam = cam / np.maximum(peak, 1e-6)  # [B, L, H, W] in [0, 1]
        t = min(max(cam_threshold, 1e-6), 1 - 1e-6)
        return np.where(cam > t, 0.5 + 0.5 * (cam - t) / (1 - t), 0.5 * cam / t).astype(np.float32)
    raise ValueError(f"unknown pooling head {head!r}: choose one of gap, gmp, spa, mpa")
