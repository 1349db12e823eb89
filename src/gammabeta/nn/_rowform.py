"""Row-form BatchNorm kernels: inputs with many positions per channel (``L >= ROW_MIN``).

The inner loop runs along the ``L`` positions of one channel of one sample, with the channel's
constants in registers. Called by :mod:`gammabeta.nn._kernels` on one part of the batch;
numerics as described there (partial sums along a row in the input's dtype, per-channel totals
in float64, two-pass statistics per cache-sized block merged with Chan et al.'s formula).
"""

from __future__ import annotations

from numba import njit

ROW_MIN = 64  # L at or above which the inner loop runs along L, per channel
BLOCK_BYTES = 128 * 1024  # bytes of x (and dy) per block of a reduction
_FM = {"reassoc", "contract"}


@njit(nogil=True, cache=True)
def block_rows(x, arrays):
    """Samples per cache-resident block of a reduction over ``arrays`` arrays like ``x``."""
    n, c, length = x.shape
    return max(1, min(n, BLOCK_BYTES // max(arrays * c * length * x.itemsize, 1)))


@njit(nogil=True, fastmath=_FM, cache=True)
def row_stats(x, k, wx, out):
    """``out[0]`` = mean of x − k, ``out[1]`` = Σ squared deviations, per channel (float64):
    per block of samples an exact two-pass sum per channel, blocks merged with Chan et al.
    (``wx``: a workspace row of x's dtype; kernels allocate nothing, see ``_colform``)."""
    n, c, length = x.shape
    rows = block_rows(x, 1)
    mean, m2 = out[0], out[1]
    mean[:] = 0.0
    m2[:] = 0.0
    dmj = wx[0]
    na = 0.0
    for n0 in range(0, n, rows):
        n1 = min(n, n0 + rows)
        nb = (n1 - n0) * length
        tot = na + nb
        fa = nb / tot
        fb = na * nb / tot
        for ch in range(c):
            kc = k[ch]
            s = 0.0
            for i in range(n0, n1):
                p = kc - kc  # a zero of x's dtype: partial sums along a row in x's dtype
                for j in range(length):
                    p += x[i, ch, j] - kc
                s += p
            dm = s / nb
            dmj[0] = dm
            dmc = dmj[0]  # the block mean in x's dtype
            q = 0.0
            for i in range(n0, n1):
                p = kc - kc
                for j in range(length):
                    v = (x[i, ch, j] - kc) - dmc
                    p += v * v
                q += p
            delta = dm - mean[ch]  # Chan et al.: merge (na, mean, m2) with the block
            mean[ch] += delta * fa
            m2[ch] += q + delta * delta * fb
        na = tot


@njit(nogil=True, fastmath=_FM, cache=True)
def row_affine(x, kt, st, tt, y):
    """``y = (x − k) · s + t`` with per-channel ``kt``, ``st``, ``tt`` in x's dtype."""
    n, c, length = x.shape
    for i in range(n):
        for ch in range(c):
            kc, sc, tc = kt[ch], st[ch], tt[ch]
            for j in range(length):
                y[i, ch, j] = (x[i, ch, j] - kc) * sc + tc


@njit(nogil=True, fastmath=_FM, cache=True)
def row_bwd_sums(x, dy, k, d, out):
    """``out[0]`` = Σ dy, ``out[1]`` = Σ dy · ((x − k) − d) per channel (float64); ``d`` in
    x's dtype."""
    n, c, length = x.shape
    rows = block_rows(x, 2)
    sdy, sdx = out[0], out[1]
    sdy[:] = 0.0
    sdx[:] = 0.0
    for n0 in range(0, n, rows):
        n1 = min(n, n0 + rows)
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
            sdy[ch] += t1
            sdx[ch] += t2


@njit(nogil=True, fastmath=_FM, cache=True)
def row_dx(x, dy, kt, at, bt, ct, dx):
    """``dx = a · dy + b · (x − k) + c`` with per-channel coefficients in x's dtype."""
    n, c, length = x.shape
    for i in range(n):
        for ch in range(c):
            kc, ac, bc, cc = kt[ch], at[ch], bt[ch], ct[ch]
            for j in range(length):
                dx[i, ch, j] = ac * dy[i, ch, j] + bc * (x[i, ch, j] - kc) + cc
