"""Numba kernels for BatchNorm: the NumPy-only fast path (optional; ``numba`` must be installed).

Every kernel works on C-contiguous ``(N, C, L)`` arrays of one float dtype (float32 or float64)
and streams them in memory order, so each pass reads or writes each array once;
:mod:`gammabeta.nn.batchnorm` holds the NumPy twin of every formula.

* :func:`bn_stats` — per channel mean and biased variance. The batch is cut into blocks of
  samples (~128 KiB, cache-resident). For each block, the mean of ``x − K`` (``K`` = the
  channel's first value, which removes any large common offset exactly), then — re-reading the
  block from cache — the sum of squared deviations from that mean: an exact two-pass algorithm
  per block. Blocks are merged with Chan et al.'s pairwise update
  (``M2 = M2_a + M2_b + δ² n_a n_b / (n_a + n_b)``), which keeps the two-pass accuracy; sums
  are float64 (values within a row, or over at most 64 samples per position, are added in the
  input's dtype first).
* :func:`bn_normalize` — ``y = (x − K) · s + (β − d · s)``, ``s = γ · inv_std``, ``d = μ − K``.
* :func:`bn_backward_sums` — ``Σ dy`` and ``Σ dy · ((x − K) − d)`` per channel.
* :func:`bn_backward_dx` — ``dx = a · dy + b · (x − K) + (c − b · d)`` per channel.
* :func:`running_update` — the running statistics, in float64 arithmetic.

Inner loops run over the contiguous axis: along ``L`` per channel when ``L >= ROW_MIN``, else
along the flattened ``C·L`` sample row with per-position copies of the channel constants.
Reductions use ``fastmath`` reassociation only (SIMD partial sums; nothing that changes NaN or
Inf semantics). The kernels release the GIL; for arrays of ``PARALLEL_MIN`` elements or more
the two reductions are split along the batch axis over :func:`threads` threads (this thread and
persistent workers that sleep when idle — numba's OpenMP pool spins after each region and,
measured, slowed NumPy's BLAS threads in a training step 2×); the passes that write a new
array stay on one thread (split, they page-fault the fresh output and gain nothing). Compiled
code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._threads import PARALLEL_MIN, threads  # noqa: F401  (re-exported)
from ._threads import run as _run
from ._threads import split as _split

__all__ = ["bn_stats", "bn_normalize", "bn_backward_sums", "bn_backward_dx", "running_update",
           "ROW_MIN", "PARALLEL_MIN"]

_FM = {"reassoc", "contract"}
ROW_MIN = 64  # L at or above which the inner loop runs along L, per channel
_BLOCK_BYTES = 128 * 1024
_COL_ROWS = 64  # column form: samples per block (partial sums in x's dtype)


def _rows(x, arrays: int = 1) -> int:
    """Samples per cache-resident block of a reduction over ``x``'s batch axis."""
    n, c, length = x.shape
    rows = max(1, min(n, _BLOCK_BYTES // max(arrays * c * length * x.itemsize, 1)))
    return min(rows, _COL_ROWS) if length < ROW_MIN else rows


@njit(nogil=True, fastmath=_FM, cache=True)
def _block_stats(x, k, n0, n1, row_form, mean, m2, kj, acc, dmj):
    """Mean of ``x − k`` and Σ squared deviations, per channel, over samples n0:n1 (at most
    ``_COL_ROWS`` of them in the column form, whose per-position sums ``acc`` are in x's
    dtype; the per-channel totals are float64)."""
    _, c, length = x.shape
    cnt = (n1 - n0) * length
    if row_form:
        for ch in range(c):
            kc = k[ch]
            s = 0.0
            for i in range(n0, n1):
                p = kc - kc
                for j in range(length):
                    p += x[i, ch, j] - kc
                s += p
            dm = s / cnt
            dmj[0] = dm  # cast to x's dtype
            dmc = dmj[0]
            q = 0.0
            for i in range(n0, n1):
                p = kc - kc
                for j in range(length):
                    v = (x[i, ch, j] - kc) - dmc
                    p += v * v
                q += p
            mean[ch] = dm
            m2[ch] = q
        return
    cl = c * length
    x2 = x.reshape(x.shape[0], cl)
    acc[:] = 0.0
    i = n0
    while i + 4 <= n1:  # 4 rows at a time: one accumulator update per 4 values
        for j in range(cl):
            kk = kj[j]
            acc[j] += ((x2[i, j] - kk) + (x2[i + 1, j] - kk)) \
                + ((x2[i + 2, j] - kk) + (x2[i + 3, j] - kk))
        i += 4
    while i < n1:
        for j in range(cl):
            acc[j] += x2[i, j] - kj[j]
        i += 1
    inv = 1.0 / cnt
    if length == 1:  # one position per channel: plain (vectorized) loops
        for ch in range(c):
            mean[ch] = acc[ch] * inv
            dmj[ch] = mean[ch]
    else:
        for ch in range(c):
            s = 0.0
            for j in range(ch * length, (ch + 1) * length):
                s += acc[j]
            mean[ch] = s * inv
            for j in range(ch * length, (ch + 1) * length):
                dmj[j] = s * inv
    acc[:] = 0.0
    i = n0
    while i + 4 <= n1:
        for j in range(cl):
            kk, dd = kj[j], dmj[j]
            v0 = (x2[i, j] - kk) - dd
            v1 = (x2[i + 1, j] - kk) - dd
            v2 = (x2[i + 2, j] - kk) - dd
            v3 = (x2[i + 3, j] - kk) - dd
            acc[j] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
        i += 4
    while i < n1:
        for j in range(cl):
            v = (x2[i, j] - kj[j]) - dmj[j]
            acc[j] += v * v
        i += 1
    if length == 1:
        for ch in range(c):
            m2[ch] = acc[ch]
    else:
        for ch in range(c):
            q = 0.0
            for j in range(ch * length, (ch + 1) * length):
                q += acc[j]
            m2[ch] = q


@njit(nogil=True, fastmath=_FM, cache=True)
def _stats(x, k, rows, row_form):
    """``(mean of x − k, Σ squared deviations)`` per channel (float64) over all of ``x``."""
    n, c, length = x.shape
    cl = 1 if row_form else c * length
    kj = np.empty(cl, dtype=x.dtype)
    dmj = np.empty(max(cl, 1), dtype=x.dtype)
    acc = np.empty(cl, dtype=x.dtype)
    if not row_form:
        for j in range(cl):
            kj[j] = k[j // length]
    bmean = np.empty(c)
    bm2 = np.empty(c)
    mean = np.zeros(c)
    m2 = np.zeros(c)
    na = 0.0
    for n0 in range(0, n, rows):
        n1 = min(n, n0 + rows)
        _block_stats(x, k, n0, n1, row_form, bmean, bm2, kj, acc, dmj)
        nb = (n1 - n0) * length
        tot = na + nb
        fa = nb / tot
        fb = na * nb / tot
        for ch in range(c):  # Chan et al.: merge (na, mean, m2) with the block
            delta = bmean[ch] - mean[ch]
            mean[ch] += delta * fa
            m2[ch] += bm2[ch] + delta * delta * fb
        na = tot
    return mean, m2


def bn_stats(x):
    """``(K, d, var)``: the shift ``K = x[0, :, 0]`` (x's dtype), ``d = mean − K`` and the
    biased variance (float64, shape ``(C,)``) of a C-contiguous ``(N, C, L)`` array."""
    k = np.ascontiguousarray(x[0, :, 0])
    rows, row_form, split = _rows(x), x.shape[2] >= ROW_MIN, _split(x)
    parts = _run(_stats, [(x[a:b], k, rows, row_form) for a, b in split])
    if len(parts) == 1:
        d, m2 = parts[0]
        return k, d, m2 / (x.shape[0] * x.shape[2])
    # Chan et al. across the parts (each measured from the same shift K)
    counts = np.array([(b - a) * x.shape[2] for a, b in split], dtype=np.float64)
    means = np.stack([p[0] for p in parts])
    total = counts.sum()
    d = counts @ means / total
    m2 = sum(p[1] for p in parts) + counts @ ((means - d) ** 2)
    return k, d, m2 / total


@njit(nogil=True, fastmath=_FM, cache=True)
def _affine(x, k, d, inv, w, b, y, row_form):
    n, c, length = x.shape
    # per-channel constants in x's dtype: shift k, scale s = w · inv, offset t = b − d · s
    # (y = ((x − k) − d) · s + b = (x − k) · s + t; x − k is exact, |d| is about σ)
    kt = np.empty(c, dtype=x.dtype)
    st = np.empty(c, dtype=x.dtype)
    tt = np.empty(c, dtype=x.dtype)
    for ch in range(c):
        sc = w[ch] * inv[ch]
        kt[ch], st[ch], tt[ch] = k[ch], sc, b[ch] - d[ch] * sc
    if row_form:
        for i in range(n):
            for ch in range(c):
                kc, sc, tc = kt[ch], st[ch], tt[ch]
                for j in range(length):
                    y[i, ch, j] = (x[i, ch, j] - kc) * sc + tc
    else:
        cl = c * length
        x2 = x.reshape(n, cl)
        y2 = y.reshape(n, cl)
        kj = np.empty(cl, dtype=x.dtype)
        sj = np.empty(cl, dtype=x.dtype)
        tj = np.empty(cl, dtype=x.dtype)
        for j in range(cl):
            ch = j // length
            kj[j], sj[j], tj[j] = kt[ch], st[ch], tt[ch]
        for i in range(n):
            for j in range(cl):
                y2[i, j] = (x2[i, j] - kj[j]) * sj[j] + tj[j]


def bn_normalize(x, k, d, inv, w, b, out):
    """``out = ((x − k) − d) · (w · inv) + b`` per channel (``k`` in x's dtype, ``d`` and
    ``inv`` float64, ``w``/``b`` the affine parameters or ones/zeros); returns ``out``."""
    _affine(x, k, d, inv, w, b, out, x.shape[2] >= ROW_MIN)
    return out


@njit(cache=True)
def running_update(rm, rv, k, d, var, alpha, unbias):
    """``rm ← (1 − α) rm + α (k + d)``, ``rv ← (1 − α) rv + α · var · unbias`` (float64 math)."""
    for ch in range(rm.shape[0]):
        rm[ch] = (1 - alpha) * rm[ch] + alpha * (k[ch] + d[ch])
        rv[ch] = (1 - alpha) * rv[ch] + alpha * (var[ch] * unbias)


@njit(nogil=True, fastmath=_FM, cache=True)
def _block_sums(x, dy, k, d, n0, n1, row_form, s1, s2, kj, dj, a1, a2):
    """Σ dy and Σ dy·((x − k) − d) per channel over samples n0:n1, added into s1, s2
    (float64; per-position partial sums over at most ``_COL_ROWS`` samples in x's dtype)."""
    _, c, length = x.shape
    if row_form:
        for ch in range(c):
            kc, dc = k[ch], d[ch]
            t1 = 0.0
            t2 = 0.0
            for i in range(n0, n1):
                p1 = kc - kc
                p2 = kc - kc
                for j in range(length):
                    g = dy[i, ch, j]
                    p1 += g
                    p2 += g * ((x[i, ch, j] - kc) - dc)
                t1 += p1
                t2 += p2
            s1[ch] += t1
            s2[ch] += t2
        return
    cl = c * length
    x2 = x.reshape(x.shape[0], cl)
    g2 = dy.reshape(x.shape[0], cl)
    a1[:] = 0.0
    a2[:] = 0.0
    i = n0
    while i + 4 <= n1:
        for j in range(cl):
            kk, dd = kj[j], dj[j]
            g0, g1, g2_, g3 = g2[i, j], g2[i + 1, j], g2[i + 2, j], g2[i + 3, j]
            a1[j] += (g0 + g1) + (g2_ + g3)
            a2[j] += (g0 * ((x2[i, j] - kk) - dd) + g1 * ((x2[i + 1, j] - kk) - dd)) \
                + (g2_ * ((x2[i + 2, j] - kk) - dd) + g3 * ((x2[i + 3, j] - kk) - dd))
        i += 4
    while i < n1:
        for j in range(cl):
            g = g2[i, j]
            a1[j] += g
            a2[j] += g * ((x2[i, j] - kj[j]) - dj[j])
        i += 1
    if length == 1:
        for ch in range(c):
            s1[ch] += a1[ch]
            s2[ch] += a2[ch]
    else:
        for ch in range(c):
            t1 = 0.0
            t2 = 0.0
            for j in range(ch * length, (ch + 1) * length):
                t1 += a1[j]
                t2 += a2[j]
            s1[ch] += t1
            s2[ch] += t2


@njit(nogil=True, fastmath=_FM, cache=True)
def _bwd_sums(x, dy, k, d, rows, row_form):
    n, c, length = x.shape
    sdy = np.zeros(c)
    sdx = np.zeros(c)
    dt = np.empty(c, dtype=x.dtype)  # d = mean − k in x's dtype
    for ch in range(c):
        dt[ch] = d[ch]
    cl = 1 if row_form else c * length
    kj = np.empty(cl, dtype=x.dtype)
    dj = np.empty(cl, dtype=x.dtype)
    a1 = np.empty(cl, dtype=x.dtype)
    a2 = np.empty(cl, dtype=x.dtype)
    if not row_form:
        for j in range(cl):
            kj[j], dj[j] = k[j // length], dt[j // length]
    for n0 in range(0, n, rows):
        _block_sums(x, dy, k, dt, n0, min(n, n0 + rows), row_form, sdy, sdx, kj, dj, a1, a2)
    return sdy, sdx


def bn_backward_sums(x, dy, k, d):
    """``(Σ dy, Σ dy · ((x − k) − d))`` per channel, float64, for C-contiguous (N, C, L)."""
    rows, row_form = _rows(x, arrays=2), x.shape[2] >= ROW_MIN
    parts = _run(_bwd_sums, [(x[a:b], dy[a:b], k, d, rows, row_form) for a, b in _split(x)])
    if len(parts) == 1:
        return parts[0]
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


@njit(nogil=True, fastmath=_FM, cache=True)
def _dx(x, dy, k, d, inv, w, sdy, sdx, m, use_batch, dx, row_form):
    n, c, length = x.shape
    # dx = a·dy + b·((x − k) − d) + c0 = a·dy + b·(x − k) + (c0 − b·d), with a = w·inv,
    # b = −a·inv·(Σ dy·x̂)/m, c0 = −a·Σdy/m (b = c0 = 0 with constant statistics);
    # the coefficients in x's dtype
    kt = np.empty(c, dtype=x.dtype)
    at = np.empty(c, dtype=x.dtype)
    bt = np.empty(c, dtype=x.dtype)
    ct = np.empty(c, dtype=x.dtype)
    for ch in range(c):
        a = w[ch] * inv[ch]
        kt[ch], at[ch] = k[ch], a
        if use_batch:
            bb = -a * inv[ch] * (sdx[ch] * inv[ch]) / m
            bt[ch] = bb
            ct[ch] = -a * sdy[ch] / m - bb * d[ch]
        else:
            bt[ch] = 0.0
            ct[ch] = 0.0
    if row_form:
        for i in range(n):
            for ch in range(c):
                kc, ac, bc, cc = kt[ch], at[ch], bt[ch], ct[ch]
                for j in range(length):
                    dx[i, ch, j] = ac * dy[i, ch, j] + bc * (x[i, ch, j] - kc) + cc
    else:
        cl = c * length
        x2 = x.reshape(n, cl)
        g2 = dy.reshape(n, cl)
        o2 = dx.reshape(n, cl)
        kj = np.empty(cl, dtype=x.dtype)
        aj = np.empty(cl, dtype=x.dtype)
        bj = np.empty(cl, dtype=x.dtype)
        cj = np.empty(cl, dtype=x.dtype)
        for j in range(cl):
            ch = j // length
            kj[j], aj[j], bj[j], cj[j] = kt[ch], at[ch], bt[ch], ct[ch]
        for i in range(n):
            for j in range(cl):
                o2[i, j] = aj[j] * g2[i, j] + bj[j] * (x2[i, j] - kj[j]) + cj[j]


def bn_backward_dx(x, dy, k, d, inv, w, sdy, sdx, m, use_batch, out):
    """``out = dx`` of the module docstring of :mod:`gammabeta.nn.batchnorm`, from the sums
    of :func:`bn_backward_sums` (``use_batch=False``: ``dx = w · inv · dy``)."""
    _dx(x, dy, k, d, inv, w, sdy, sdx, float(m), bool(use_batch), out, x.shape[2] >= ROW_MIN)
    return out
