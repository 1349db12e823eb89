"""Column-form BatchNorm kernels: inputs with few positions per channel (``L < ROW_MIN``).

For ``(N, C)`` (``L = 1``) or short ``(N, C, L)`` inputs the inner loop runs along a whole
sample, the flattened row of ``C·L`` positions, with a per-position copy of each channel
constant (shift, scale, …) or accumulator. Called by :mod:`gammabeta.nn._kernels` on one
chunk of the batch.

Alignment. NumPy arrays start 16 bytes past a 64-byte boundary as a rule, and vector loads
that straddle cache lines made these loops 1.4–1.6× slower (measured on this project's AMD
EPYC, AVX-512). The elementwise passes (output, dx) therefore walk the flat array in rows of
``C·L`` values that start at its first cache line boundary ``p``, with the per-position
constants rotated to match (the first ``p`` values and the rest of the last sample are done
separately); each value is computed by the same formula whatever the walk, so the result
does not depend on ``p``. The reductions walk whole samples (position order and grouping of
every sum fixed, so results do not depend on where the input sits either); splitting their
rows at the boundary cost more than the aligned loads saved. (When a row is not a whole
number of cache lines long, rows start at different offsets and ``p = 0``.)

Numerics are those of :mod:`gammabeta.nn._kernels`: per-position partial sums over at most
``BLOCK`` samples (4 at a time) in the input's dtype, per-channel totals in float64,
two-pass statistics per block of samples merged with Chan et al.'s formula.
"""

from __future__ import annotations

from numba import njit

ALIGN = 64  # bytes: a cache line
BLOCK = 64  # samples per block of a reduction
BLOCK_BYTES = 256 * 1024  # ... and at most this many bytes of x per block
# No fast-math here: every loop runs across positions (lanes are independent and vectorize
# without reassociation), and exact IEEE arithmetic makes a position's result the same
# whether the vectorized body or a scalar remainder loop computes it — so the ``p`` split,
# which moves that boundary, cannot change a bit.
_FM = {"reassoc", "contract"}


@njit(nogil=True, cache=True)
def _split(x2):
    """``p``: the position where every row of the 2-D ``x2`` reaches a cache line boundary
    (0 when rows do not all start at the same offset from one)."""
    cl, it = x2.shape[1], x2.itemsize
    r = x2.ctypes.data % ALIGN
    if (cl * it) % ALIGN or r % it:
        return 0
    return min(((ALIGN - r) % ALIGN) // it, cl)


@njit(nogil=True, cache=True)
def _like(w, n, x2, p):
    """``n`` values of the workspace row ``w`` (x2's dtype, ``n + ALIGN`` bytes long at
    least), the one at ``p`` starting a cache line (so it lines up with position ``p`` of
    x2's rows). Workspaces come from the caller: kernels allocate nothing (allocations in a
    worker thread went to its own malloc arena, which returned the pages after each call:
    ~40 page faults per call, measured)."""
    s = ((ALIGN - (w.ctypes.data + p * x2.itemsize) % ALIGN) % ALIGN) // x2.itemsize
    return w[s:s + n]


@njit(nogil=True, cache=True)
def _fold(acc, length, out):
    """``out[ch] = Σ acc`` over each channel's positions (in position order), float64."""
    if length == 1:  # (N, C): a plain, vectorized copy
        for ch in range(out.shape[0]):
            out[ch] = acc[ch]
        return
    for ch in range(out.shape[0]):
        s = 0.0
        for j in range(ch * length, (ch + 1) * length):
            s += acc[j]
        out[ch] = s


@njit(nogil=True, cache=True)
def _unfold(v, length, out):
    """``out[j] = v[channel of j]`` (x's dtype): the inverse spread of :func:`_fold`."""
    if length == 1:
        for ch in range(v.shape[0]):
            out[ch] = v[ch]
        return
    for ch in range(v.shape[0]):
        for j in range(ch * length, (ch + 1) * length):
            out[j] = v[ch]


@njit(nogil=True, cache=True)
def _spread(v, length, w, x2, p):
    """Per-channel values ``v`` repeated over each channel's ``length`` positions, in the
    workspace row ``w`` placed like x2's rows (see :func:`_like`)."""
    out = _like(w, v.shape[0] * length, x2, p)
    _unfold(v, length, out)
    return out


@njit(nogil=True, cache=True)
def _rotate(v, length, p, out):
    """``out[q] = v[channel of position (p + q) mod C·L]``: per-channel values laid out for
    rows that start at position ``p`` (counted up, without a division per position)."""
    c = v.shape[0]
    ch, pos = p // length, p % length
    for q in range(c * length):
        out[q] = v[ch]
        pos += 1
        if pos == length:
            pos = 0
            ch += 1
            if ch == c:
                ch = 0
    return out


@njit(nogil=True, cache=True)
def _block(x, arrays):
    """Samples per block of a reduction: cache-resident, and at most ``BLOCK``."""
    n, c, length = x.shape
    return max(1, min(n, BLOCK, BLOCK_BYTES // max(arrays * c * length * x.itemsize, 1)))


@njit(nogil=True, fastmath=_FM, cache=True)
def _sum_rows(x2, i0, i1, kj, acc, j0, j1):
    """For positions j0:j1: acc[j] += Σ (x − k) over rows i0:i1, 4 rows at a time."""
    ks, a = kj[j0:j1], acc[j0:j1]  # (indices from 0: no negative-index checks in the loops)
    i = i0
    while i + 4 <= i1:
        xa, xb, xc, xd = x2[i][j0:j1], x2[i + 1][j0:j1], x2[i + 2][j0:j1], x2[i + 3][j0:j1]
        for j in range(ks.shape[0]):
            kk = ks[j]
            a[j] += ((xa[j] - kk) + (xb[j] - kk)) + ((xc[j] - kk) + (xd[j] - kk))
        i += 4
    while i < i1:
        xa = x2[i][j0:j1]
        for j in range(ks.shape[0]):
            a[j] += xa[j] - ks[j]
        i += 1


@njit(nogil=True, fastmath=_FM, cache=True)
def _sq_rows(x2, i0, i1, kj, dj, acc, j0, j1):
    """For positions j0:j1: acc[j] += Σ ((x − k) − d)² over rows i0:i1, 4 rows at a time."""
    ks, ds, a = kj[j0:j1], dj[j0:j1], acc[j0:j1]
    i = i0
    while i + 4 <= i1:
        xa, xb, xc, xd = x2[i][j0:j1], x2[i + 1][j0:j1], x2[i + 2][j0:j1], x2[i + 3][j0:j1]
        for j in range(ks.shape[0]):
            kk, dd = ks[j], ds[j]
            v0, v1 = (xa[j] - kk) - dd, (xb[j] - kk) - dd
            v2, v3 = (xc[j] - kk) - dd, (xd[j] - kk) - dd
            a[j] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
        i += 4
    while i < i1:
        xa = x2[i][j0:j1]
        for j in range(ks.shape[0]):
            v = (xa[j] - ks[j]) - ds[j]
            a[j] += v * v
        i += 1


@njit(nogil=True, fastmath=_FM, cache=True)
def col_stats(x, k, wx, wd, out):
    """``out[0]`` = mean of x − k, ``out[1]`` = Σ squared deviations, per channel (float64):
    per block of samples an exact two-pass computation (the second pass from cache).
    Workspaces: ``wx`` (3 rows, x's dtype), ``wd`` (2 rows of C, float64).

    Whole rows here, not split at a cache line: splitting cost more than the aligned loads
    saved (measured), and the sums' order is then plainly the same wherever ``x`` is."""
    n, c, length = x.shape
    cl = c * length
    x2 = x.reshape(n, cl)
    rows = _block(x, 1)
    kj = _spread(k, length, wx[0], x2, 0)
    dj = _like(wx[1], cl, x2, 0)
    acc = _like(wx[2], cl, x2, 0)
    mean, m2 = out[0], out[1]
    mean[:] = 0.0
    m2[:] = 0.0
    bmean, bm2 = wd[0], wd[1]
    na = 0.0
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        cnt = (i1 - i0) * length
        acc[:] = 0.0
        _sum_rows(x2, i0, i1, kj, acc, 0, cl)
        _fold(acc, length, bmean)
        bmean /= cnt
        _unfold(bmean, length, dj)  # the block mean in x's dtype
        acc[:] = 0.0
        _sq_rows(x2, i0, i1, kj, dj, acc, 0, cl)
        _fold(acc, length, bm2)
        tot = na + cnt  # Chan et al.: merge (na, mean, m2) with the block
        fa, fb = cnt / tot, na * cnt / tot
        for ch in range(c):
            delta = bmean[ch] - mean[ch]
            mean[ch] += delta * fa
            m2[ch] += bm2[ch] + delta * delta * fb
        na = tot


@njit(nogil=True, fastmath=_FM, cache=True)
def col_affine(x, kt, st, tt, y, wx):
    """``y = (x − k) · s + t`` with per-channel ``kt``, ``st``, ``tt`` in x's dtype
    (workspace ``wx``: 3 rows). Elementwise, so walked in rows of C·L values that start at
    the input's first cache line boundary ``p`` (the per-position constants rotated to
    match; the first ``p`` and the last ``C·L − p`` values separately): one loop per row,
    every vector load whole-line, and each value computed exactly as in any other walk."""
    n, c, length = x.shape
    cl = c * length
    x2 = x.reshape(n, cl)
    x1, y1 = x.reshape(n * cl), y.reshape(n * cl)
    p = _split(x2)
    kr = _rotate(kt, length, p, _like(wx[0], cl, x2, 0))
    sr = _rotate(st, length, p, _like(wx[1], cl, x2, 0))
    tr = _rotate(tt, length, p, _like(wx[2], cl, x2, 0))
    rows = n - 1 if p else n
    for r in range(rows):
        xa, ya = x1[p + r * cl:p + (r + 1) * cl], y1[p + r * cl:p + (r + 1) * cl]
        for q in range(cl):
            ya[q] = (xa[q] - kr[q]) * sr[q] + tr[q]
    for f in range(p):  # positions 0…p−1 of the first sample
        q = cl - p + f
        y1[f] = (x1[f] - kr[q]) * sr[q] + tr[q]
    for q in range(cl - p if p else 0):  # positions p… of the last sample
        f = p + rows * cl + q
        y1[f] = (x1[f] - kr[q]) * sr[q] + tr[q]


@njit(nogil=True, fastmath=_FM, cache=True)
def _bwd_rows(x2, g2, i0, i1, kj, dj, a1, a2, j0, j1):
    """For positions j0:j1: a1[j] += Σ dy and a2[j] += Σ dy·((x − k) − d) over rows i0:i1."""
    ks, ds, b1, b2 = kj[j0:j1], dj[j0:j1], a1[j0:j1], a2[j0:j1]
    i = i0
    while i + 4 <= i1:
        xa, xb, xc, xd = x2[i][j0:j1], x2[i + 1][j0:j1], x2[i + 2][j0:j1], x2[i + 3][j0:j1]
        ga, gb, gc, gd = g2[i][j0:j1], g2[i + 1][j0:j1], g2[i + 2][j0:j1], g2[i + 3][j0:j1]
        for j in range(ks.shape[0]):
            kk, dd = ks[j], ds[j]
            b1[j] += (ga[j] + gb[j]) + (gc[j] + gd[j])
            b2[j] += (ga[j] * ((xa[j] - kk) - dd) + gb[j] * ((xb[j] - kk) - dd)) \
                + (gc[j] * ((xc[j] - kk) - dd) + gd[j] * ((xd[j] - kk) - dd))
        i += 4
    while i < i1:
        xa, ga = x2[i][j0:j1], g2[i][j0:j1]
        for j in range(ks.shape[0]):
            b1[j] += ga[j]
            b2[j] += ga[j] * ((xa[j] - ks[j]) - ds[j])
        i += 1


@njit(nogil=True, fastmath=_FM, cache=True)
def col_bwd_sums(x, dy, k, d, wx, wd, out):
    """``out[0]`` = Σ dy, ``out[1]`` = Σ dy · ((x − k) − d) per channel (float64); ``d`` in
    x's dtype. Whole rows, as in :func:`col_stats`; workspaces ``wx`` (4 rows), ``wd`` (2)."""
    n, c, length = x.shape
    cl = c * length
    x2, g2 = x.reshape(n, cl), dy.reshape(n, cl)
    rows = _block(x, 2)
    kj, dj = _spread(k, length, wx[0], x2, 0), _spread(d, length, wx[1], x2, 0)
    a1, a2 = _like(wx[2], cl, x2, 0), _like(wx[3], cl, x2, 0)
    s1, s2 = out[0], out[1]
    s1[:] = 0.0
    s2[:] = 0.0
    t1, t2 = wd[0], wd[1]
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        a1[:] = 0.0
        a2[:] = 0.0
        _bwd_rows(x2, g2, i0, i1, kj, dj, a1, a2, 0, cl)
        _fold(a1, length, t1)
        _fold(a2, length, t2)
        s1 += t1
        s2 += t2


@njit(nogil=True, fastmath=_FM, cache=True)
def col_dx(x, dy, kt, at, bt, ct, dx, wx):
    """``dx = a · dy + b · (x − k) + c`` with per-channel coefficients in x's dtype
    (workspace ``wx``: 4 rows); walked like :func:`col_affine`."""
    n, c, length = x.shape
    cl = c * length
    x2 = x.reshape(n, cl)
    x1, g1, o1 = x.reshape(n * cl), dy.reshape(n * cl), dx.reshape(n * cl)
    p = _split(x2)
    kr = _rotate(kt, length, p, _like(wx[0], cl, x2, 0))
    ar = _rotate(at, length, p, _like(wx[1], cl, x2, 0))
    br = _rotate(bt, length, p, _like(wx[2], cl, x2, 0))
    cr = _rotate(ct, length, p, _like(wx[3], cl, x2, 0))
    rows = n - 1 if p else n
    for r in range(rows):
        b0 = p + r * cl
        xa, ga, oa = x1[b0:b0 + cl], g1[b0:b0 + cl], o1[b0:b0 + cl]
        for q in range(cl):
            oa[q] = ar[q] * ga[q] + br[q] * (xa[q] - kr[q]) + cr[q]
    for f in range(p):
        q = cl - p + f
        o1[f] = ar[q] * g1[f] + br[q] * (x1[f] - kr[q]) + cr[q]
    for q in range(cl - p if p else 0):
        f = p + rows * cl + q
        o1[f] = ar[q] * g1[f] + br[q] * (x1[f] - kr[q]) + cr[q]
