"""Numba kernels for LayerNorm, GroupNorm and InstanceNorm (optional; ``numba`` must be
installed): the compiled twin of the NumPy code in :mod:`gammabeta.nn.layernorm`.

The three layers normalize *rows*: the input, C-contiguous, is viewed as ``(M, K)``, one row
per normalization group (a sample's last axes for LayerNorm; a sample's group of channels for
GroupNorm; one channel of one sample for InstanceNorm). A row holds ``P`` segments of ``S``
values; segment ``p`` of row ``r`` belongs to channel ``c = (r mod G)·P + p``, which indexes γ
and β (LayerNorm: ``G = 1``, ``S = 1``, one "channel" per value of the row).

* forward, per row, with the row in cache: the mean of ``x − k`` (``k`` = the row's first
  value: a large common offset cancels exactly), then the sum of squared deviations from it
  (an exact two-pass algorithm), then ``y = (x − k)·A_c + B_c`` per segment with
  ``A_c = γ_c/σ`` and ``B_c = β_c − d·A_c`` (``d`` = mean − k), or
  ``y = ((x − k) − d)/σ · γ + β`` elementwise; rows of at most ``PREFETCH_MAX`` bytes
  prefetch the next row of x and y;
* backward, per row: ``Σ dy`` and ``Σ dy·x̂`` per segment (they give dβ and dγ, and the row's
  ``Σ ĝ`` and ``Σ ĝ·x̂`` with ``ĝ = γ·dy``), then, re-reading the row from cache,
  ``dx = (ĝ − Σĝ/K − x̂·Σ(ĝ·x̂)/K)/σ``.

So a training step reads x twice, dy once and writes y and dx once: the floor of a forward
and a backward that keep only x. Partial sums of at most ``BLOCK`` values are taken in the
input's dtype (SIMD lanes, ``fastmath`` reassociation only), totals in float64 (with a γ per
value, each value's dγ/dβ terms over ``ROWS_ACC`` rows in the input's dtype, then float64).
A kernel call covers rows ``r0:r1``. Inputs of ``PARALLEL_MIN`` values or more are cut into
row ranges shared over threads (:mod:`gammabeta.nn._row_pool`; the kernels release the GIL),
each range writing its own rows and its own partial dγ/dβ. Compiled code is cached on disk
(``cache=True``).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._row_pool import PARALLEL_MIN, row_ranges, run, threads

__all__ = ["norm_forward", "norm_backward", "threads", "PARALLEL_MIN"]

_FM = {"reassoc", "contract"}
BLOCK = 512  # values per partial sum in the input's dtype
PREFETCH_MAX = 2048  # forward: rows of at most this many bytes are prefetched a row ahead


# ----- prefetching the next row --------------------------------------------------------------
# Measured (1 thread, 8-32 MB inputs): the forward on rows of 1 KB (LayerNorm(256),
# InstanceNorm on 16×16) is 13-24% faster when it prefetches the next row of x and y; on rows
# of 4-8 KB, and in the backward, prefetching was neutral or slower (the hardware prefetcher
# already streams long rows), so only the forward on short rows does it.
def _prefetch_intrinsic(write: int):
    """``f(a, i)``: ask the CPU to bring the cache line of ``a[i]`` in (``llvm.prefetch``; a
    hint that never faults), for reading or, with ``write``, for writing."""

    @intrinsic
    def prefetch(typingctx, arr, idx):
        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
            builder.call(fn, [ptr, ir.Constant(i32, write), ir.Constant(i32, 3),
                              ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.none(arr, types.intp), codegen

    return prefetch


_prefetch_read = _prefetch_intrinsic(0)
_prefetch_write = _prefetch_intrinsic(1)


@njit(nogil=True, inline="always")
def _prefetch(a, write):
    """Prefetch the 1-D array ``a`` (the next row of the input, or of the output)."""
    for j in range(0, a.shape[0], 64 // a.itemsize):
        if write:
            _prefetch_write(a, j)
        else:
            _prefetch_read(a, j)


# ----- sums along a row ----------------------------------------------------------------------
# Inlined into the kernels (a call per row cost ~30% on rows of 256 values). Loops run over
# range(len) of slices: a loop from a nonzero start does not vectorize (index wraparound).
@njit(nogil=True, fastmath=_FM, inline="always")
def _sum_shifted(a, k):
    """Σ (a[i] − k), float64 (partial sums of BLOCK values in a's dtype)."""
    s = 0.0
    for j0 in range(0, a.shape[0], BLOCK):
        blk = a[j0:j0 + BLOCK]
        p = k - k
        for i in range(blk.shape[0]):
            p += blk[i] - k
        s += p
    return s


@njit(nogil=True, fastmath=_FM, inline="always")
def _sum_squares(a, k, dt):
    """Σ ((a[i] − k) − dt)², float64."""
    s = 0.0
    for j0 in range(0, a.shape[0], BLOCK):
        blk = a[j0:j0 + BLOCK]
        p = k - k
        for i in range(blk.shape[0]):
            v = (blk[i] - k) - dt
            p += v * v
        s += p
    return s


@njit(nogil=True, fastmath=_FM, inline="always")
def _sums_dy(x, dy, k):
    """(Σ dy, Σ dy·(x − k)), float64."""
    s0 = 0.0
    s1 = 0.0
    for j0 in range(0, x.shape[0], BLOCK):
        xb = x[j0:j0 + BLOCK]
        gb = dy[j0:j0 + BLOCK]
        p0 = k - k
        p1 = k - k
        for i in range(xb.shape[0]):
            g = gb[i]
            p0 += g
            p1 += g * (xb[i] - k)
        s0 += p0
        s1 += p1
    return s0, s1


@njit(nogil=True, fastmath=_FM, inline="always")
def _row_stats(xr, eps, inv_width, cast):
    """``(k, d, d in x's dtype, var, 1/√(var + ε))`` of one row (exact two-pass, shifted)."""
    k = xr[0]
    d = _sum_shifted(xr, k) * inv_width
    cast[0] = d
    dt = cast[0]
    var = _sum_squares(xr, k, dt) * inv_width
    return k, d, dt, var, 1.0 / np.sqrt(var + eps)


# ----- forward -------------------------------------------------------------------------------
@njit(nogil=True, fastmath=_FM, cache=True)
def _forward_rows(x, w, b, eps, groups, seg, y, kk, dd, vv, rstd, r0, r1):
    """Rows ``r0:r1`` of the forward: statistics into ``kk`` (x's dtype), ``dd`` (mean − k),
    ``vv`` (σ², biased) and ``rstd`` (1/√(σ² + ε)), float64; the output into ``y``
    (γ = ``w``, β = ``b`` per channel, in x's dtype)."""
    m, width = x.shape
    nseg = width // seg
    inv_width = 1.0 / width
    cast = np.empty(2, dtype=x.dtype)  # float64 values rounded to x's dtype
    ahead = width * x.itemsize <= PREFETCH_MAX  # short rows: the next one is fetched ahead
    for r in range(r0, r1):
        if ahead and r + 1 < m:
            _prefetch(x[r + 1], False)
            _prefetch(y[r + 1], True)
        xr = x[r]
        yr = y[r]
        k, d, dt, var, inv = _row_stats(xr, eps, inv_width, cast)
        kk[r], dd[r], vv[r], rstd[r] = k, d, var, inv
        c0 = (r % groups) * nseg
        if seg == 1:  # one γ per value (LayerNorm): y = ((x − k) − d)/σ · γ + β
            cast[1] = inv
            it = cast[1]
            wr = w[c0:c0 + width]
            br = b[c0:c0 + width]
            for i in range(width):
                yr[i] = ((xr[i] - k) - dt) * it * wr[i] + br[i]
        else:  # one γ per segment (GroupNorm, InstanceNorm): y = (x − k)·A + B
            for p in range(nseg):
                a = inv * w[c0 + p]
                cast[0] = a
                cast[1] = b[c0 + p] - d * a
                at = cast[0]
                bt = cast[1]
                xs = xr[p * seg:(p + 1) * seg]
                ys = yr[p * seg:(p + 1) * seg]
                for i in range(seg):
                    ys[i] = (xs[i] - k) * at + bt


# ----- backward ------------------------------------------------------------------------------
ROWS_ACC = 32  # rows whose dγ/dβ terms are added in x's dtype before the float64 total


@njit(nogil=True, fastmath=_FM, inline="always")
def _grad_sums(xr, gr, wr, k, dt, it, ag, ab):
    """One row with a γ per value: ``ag += dy·x̂``, ``ab += dy``; returns (Σ ĝ, Σ ĝ·x̂) with
    ĝ = γ·dy, float64."""
    sg = 0.0
    sgx = 0.0
    for j0 in range(0, xr.shape[0], BLOCK):
        xb = xr[j0:j0 + BLOCK]
        gb = gr[j0:j0 + BLOCK]
        wb = wr[j0:j0 + BLOCK]
        agb = ag[j0:j0 + BLOCK]
        abb = ab[j0:j0 + BLOCK]
        p0 = k - k
        p1 = k - k
        for i in range(xb.shape[0]):
            g = gb[i]
            xh = ((xb[i] - k) - dt) * it
            agb[i] += g * xh
            abb[i] += g
            g = g * wb[i]
            p0 += g
            p1 += g * xh
        sg += p0
        sgx += p1
    return sg, sgx


@njit(nogil=True, fastmath=_FM, cache=True)
def _backward_short_rows(x, dy, w, groups, kk, dd, rstd, dx, part, r0, r1):
    """:func:`_backward_rows` for rows of at most ``BLOCK`` values with a γ per value
    (LayerNorm): one partial sum per row, and no branch or slice inside the row loop (either
    made the loops ~40% slower on rows of 256 values, measured in cache)."""
    width = x.shape[1]
    inv_width = 1.0 / width
    cast = np.empty(2, dtype=x.dtype)  # float64 values rounded to x's dtype
    acc = np.zeros((2, part.shape[2]), dtype=x.dtype)
    ag, ab = acc[0], acc[1]
    for r in range(r0, r1):
        xr, gr, dxr = x[r], dy[r], dx[r]
        k = kk[r]
        cast[0] = dd[r]
        cast[1] = rstd[r]
        dt = cast[0]
        it = cast[1]
        c0 = (r % groups) * width
        wr, agr, abr = w[c0:c0 + width], ag[c0:c0 + width], ab[c0:c0 + width]
        p0 = k - k  # Σ ĝ and Σ ĝ·x̂, ĝ = γ·dy
        p1 = k - k
        for i in range(width):
            g = gr[i]
            xh = ((xr[i] - k) - dt) * it
            agr[i] += g * xh
            abr[i] += g
            g = g * wr[i]
            p0 += g
            p1 += g * xh
        if (r - r0) % ROWS_ACC == ROWS_ACC - 1 or r == r1 - 1:
            for c in range(ag.shape[0]):
                part[0, 0, c] += ag[c]
                part[1, 0, c] += ab[c]
                ag[c] = 0.0
                ab[c] = 0.0
        cast[0] = float(p0) * inv_width
        cast[1] = float(p1) * inv_width
        mg = cast[0]
        mgx = cast[1]
        for i in range(width):
            dxr[i] = (gr[i] * wr[i] - mg - ((xr[i] - k) - dt) * it * mgx) * it


@njit(nogil=True, fastmath=_FM, cache=True)
def _backward_rows(x, dy, w, groups, seg, kk, dd, rstd, dx, part, r0, r1):
    """Rows ``r0:r1`` of the backward into ``dx``. ``part`` (float64) receives the parameter
    gradients: with ``seg == 1`` a ``(2, 1, C)`` sum over this range's rows (Σ dy·x̂, Σ dy);
    otherwise ``(2, M, P)``: Σ dy·x̂ and Σ dy per row and segment."""
    m, width = x.shape
    if seg == 1 and width <= BLOCK:
        _backward_short_rows(x, dy, w, groups, kk, dd, rstd, dx, part, r0, r1)
        return
    nseg = width // seg
    inv_width = 1.0 / width
    cast = np.empty(3, dtype=x.dtype)  # float64 values rounded to x's dtype
    acc = np.zeros((2, part.shape[2]), dtype=x.dtype) if seg == 1 \
        else np.zeros((2, 0), dtype=x.dtype)
    for r in range(r0, r1):
        xr, gr, dxr = x[r], dy[r], dx[r]
        k, d, inv = kk[r], dd[r], rstd[r]
        cast[0] = d
        cast[1] = inv
        dt = cast[0]
        it = cast[1]
        c0 = (r % groups) * nseg
        if seg == 1:
            wr = w[c0:c0 + width]
            sg, sgx = _grad_sums(xr, gr, wr, k, dt, it, acc[0, c0:c0 + width],
                                 acc[1, c0:c0 + width])
            if (r - r0) % ROWS_ACC == ROWS_ACC - 1 or r == r1 - 1:
                for c in range(acc.shape[1]):
                    part[0, 0, c] += acc[0, c]
                    part[1, 0, c] += acc[1, c]
                    acc[0, c] = 0.0
                    acc[1, c] = 0.0
            cast[0] = sg * inv_width
            cast[1] = sgx * inv_width
            mg = cast[0]
            mgx = cast[1]
            for i in range(width):
                dxr[i] = (gr[i] * wr[i] - mg - ((xr[i] - k) - dt) * it * mgx) * it
        else:
            sg = 0.0  # Σ ĝ
            sgx = 0.0  # Σ ĝ·x̂
            for p in range(nseg):
                s0, s1 = _sums_dy(xr[p * seg:(p + 1) * seg], gr[p * seg:(p + 1) * seg], k)
                sx = (s1 - d * s0) * inv  # Σ dy·x̂
                part[0, r, p] = sx
                part[1, r, p] = s0
                sg += w[c0 + p] * s0
                sgx += w[c0 + p] * sx
            bcoef = -inv * inv * sgx * inv_width  # dx = dy·γ/σ + (x − k)·B + C
            cast[1] = bcoef
            cast[2] = -inv * sg * inv_width - bcoef * d
            bt = cast[1]
            ct = cast[2]
            for p in range(nseg):
                cast[0] = inv * w[c0 + p]
                at = cast[0]
                xs = xr[p * seg:(p + 1) * seg]
                gs = gr[p * seg:(p + 1) * seg]
                ds = dxr[p * seg:(p + 1) * seg]
                for i in range(seg):
                    ds[i] = gs[i] * at + (xs[i] - k) * bt + ct


def _gamma_beta(x, w, b, groups, seg):
    """γ and β as arrays of x's dtype (ones and zeros for absent ones)."""
    c = groups * x.shape[1] // seg
    return (np.ones(c, dtype=x.dtype) if w is None else w,
            np.zeros(c, dtype=x.dtype) if b is None else b)


def norm_forward(x, w, b, eps, groups, seg, y):
    """The forward on C-contiguous ``(M, K)`` rows ``x`` into ``y``; ``w``/``b``: γ and β of
    length ``groups·K/seg`` in x's dtype, or ``None``. Returns ``(k, d, var, rstd)`` per row:
    the shift (x's dtype), mean − shift, the biased variance and 1/√(σ² + ε) (float64)."""
    m = x.shape[0]
    k = np.empty(m, dtype=x.dtype)
    d, var, rstd = np.empty(m), np.empty(m), np.empty(m)
    w, b = _gamma_beta(x, w, b, groups, seg)
    run(_forward_rows, row_ranges(m, x.size),
         lambda i: (x, w, b, float(eps), groups, seg, y, k, d, var, rstd))
    return k, d, var, rstd


def norm_backward(x, dy, w, groups, seg, k, d, rstd, dx):
    """The backward into ``dx``; returns ``(Σ dy·x̂, Σ dy)`` (float64) per channel with
    ``seg == 1``, else per row and segment, ``(M, P)`` (the caller sums each channel's rows)."""
    m, width = x.shape
    ranges = row_ranges(m, x.size)
    w, _ = _gamma_beta(x, w, w, groups, seg)
    if seg == 1:
        parts = np.zeros((len(ranges), 2, 1, groups * width))
        run(_backward_rows, ranges,
             lambda i: (x, dy, w, groups, seg, k, d, rstd, dx, parts[i]))
        total = parts.sum(axis=0) if len(ranges) > 1 else parts[0]
        return total[0, 0], total[1, 0]
    part = np.empty((2, m, width // seg))
    run(_backward_rows, ranges, lambda i: (x, dy, w, groups, seg, k, d, rstd, dx, part))
    return part[0], part[1]
