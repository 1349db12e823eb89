"""Numba kernels for BatchNorm: the compiled fast path (optional; ``numba`` must be installed).

:func:`bn_forward` and :func:`bn_backward` are a whole forward and backward each, computing
the formulas of :mod:`gammabeta.nn.batchnorm` (which also holds their NumPy twin) on
C-contiguous ``(N, C, L)`` arrays of one float dtype (float32 or float64), in passes that
stream the arrays in memory order:

* statistics — per channel mean and biased variance. The batch is cut into cache-resident
  blocks of samples; per block the mean of ``x − K`` (``K`` = the channel's first value, which
  removes any large common offset exactly), then — re-reading the block from cache — the sum
  of squared deviations from it: an exact two-pass algorithm per block. Blocks (and parts of
  the batch on other threads) are merged with Chan et al.'s pairwise update
  (``M2 = M2_a + M2_b + δ² n_a n_b / (n_a + n_b)``), which keeps the two-pass accuracy; sums
  are float64 (values within a row, or over at most 64 samples per position, are added in the
  input's dtype first);
* output — ``y = (x − K) · s + (β − d · s)``, ``s = γ · inv_std``, ``d = μ − K``;
* backward sums — ``Σ dy`` and ``Σ dy · ((x − K) − d)`` per channel;
* dx — ``dx = a · dy + b · (x − K) + (c − b · d)`` per channel.

So a training step reads or writes memory in four passes (the floor is two reads of x for
the statistics and the output, plus dy and dx). Inner loops run over the contiguous axis:
along ``L`` per channel when ``L >= ROW_MIN`` (:mod:`gammabeta.nn._rowform`), else along the
flattened ``C·L`` sample with per-position copies of the channel constants, aligned to cache
lines (:mod:`gammabeta.nn._colform`). Reductions use ``fastmath`` reassociation only (SIMD
partial sums; nothing that changes NaN or Inf semantics). Arrays of ``PARALLEL_MIN`` elements
or more are split along the batch axis over :func:`threads` threads
(:mod:`gammabeta.nn._threads`). Compiled code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._colform import ALIGN
from ._rowform import ROW_MIN
from ._threads import (
    AFFINE,
    DX,
    PARALLEL_MIN,
    STATS,
    SUMS,
    chunks,
    run_kind,
    run_parallel,
    threads,
    workers,
)

__all__ = ["bn_forward", "bn_backward", "empty_like", "threads", "ROW_MIN", "PARALLEL_MIN"]

_FM = {"reassoc", "contract"}


def empty_like(x, spare=None):
    """``(out, buffer)``: an array like ``x`` starting at the same offset from a cache line
    (so the kernels' aligned loads of ``x`` go with aligned stores) and the buffer that holds
    it. ``spare``, a buffer from an earlier call that nothing references any more, is reused
    when it fits: no allocation, and no page faults on memory the allocator gave back."""
    it = x.itemsize
    n = x.size + ALIGN // it
    if spare is not None and spare.size == n and spare.dtype == x.dtype:
        buf = spare
    else:
        buf = np.empty(n, dtype=x.dtype)
    s = ((_address(x) - _address(buf)) % ALIGN) // it
    return buf[s:s + x.size].reshape(x.shape), buf


@njit(cache=True)
def _address(a):
    """The address of ``a``'s first element (6× faster than ``a.ctypes.data``)."""
    return a.ctypes.data


# ----- per-channel pieces ----------------------------------------------------------------------
@njit(nogil=True, cache=True)
def _running_update(rm, rv, k, d, var, alpha, unbias):
    """``rm ← (1 − α) rm + α (k + d)``, ``rv ← (1 − α) rv + α · var · unbias`` (float64 math)."""
    for ch in range(rm.shape[0]):
        rm[ch] = (1 - alpha) * rm[ch] + alpha * (k[ch] + d[ch])
        rv[ch] = (1 - alpha) * rv[ch] + alpha * (var[ch] * unbias)


@njit(nogil=True, cache=True)
def _normalizer(x, k, d, var, eps, w, b):
    """``inv_std`` and the output's per-channel shift k, scale s = w · inv_std and offset
    t = b − d · s in x's dtype (y = ((x − k) − d) · s + b = (x − k) · s + t; x − k is exact,
    |d| is about σ)."""
    c = k.shape[0]
    inv = np.empty(c)
    kt = np.empty(c, dtype=x.dtype)
    st = np.empty(c, dtype=x.dtype)
    tt = np.empty(c, dtype=x.dtype)
    for ch in range(c):
        inv[ch] = 1.0 / np.sqrt(var[ch] + eps)
        sc = w[ch] * inv[ch]
        kt[ch], st[ch], tt[ch] = k[ch], sc, b[ch] - d[ch] * sc
    return inv, kt, st, tt


@njit(nogil=True, cache=True)
def _dx_coefs(x, k, d, inv, w, sdy, sdx, m, use_batch):
    """dx = a·dy + b·((x − k) − d) + c0 = a·dy + b·(x − k) + (c0 − b·d), with a = w·inv,
    b = −a·inv·(Σ dy·x̂)/m, c0 = −a·Σdy/m (b = c0 = 0 with constant statistics); the
    per-channel coefficients (k, a, b, c0 − b·d) in x's dtype."""
    c = k.shape[0]
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
    return kt, at, bt, ct


@njit(nogil=True, cache=True)
def _merge_stats(res, n, nchunks, length):
    """``(d, M2)`` of the whole batch from each chunk's ``(mean, M2)`` in ``res`` (Chan et
    al.; every chunk measured from the same shift K)."""
    c = res.shape[2]
    counts = np.empty(nchunks)
    for i in range(nchunks):
        counts[i] = ((i + 1) * n // nchunks - i * n // nchunks) * length
    total = counts.sum()
    d = np.zeros(c)
    for i in range(nchunks):
        d += counts[i] * res[i, 0]
    d /= total
    m2 = np.zeros(c)
    for i in range(nchunks):
        delta = res[i, 0] - d
        m2 += res[i, 1] + counts[i] * delta * delta
    return d, m2


# ----- whole forward and backward --------------------------------------------------------------
@njit(cache=True)
def _workspace_width(c, length, itemsize):
    """Length of a workspace row: a C·L row plus room to place it on a cache line for the
    column form; one cache line (a scalar cast buffer) for the row form."""
    return c * length + ALIGN // itemsize if length < ROW_MIN else ALIGN // itemsize


@njit(nogil=True, cache=True)
def _workspaces(x, nslots):
    """Per-thread workspaces for the passes (kernels allocate nothing themselves)."""
    n, c, length = x.shape
    width = _workspace_width(c, length, x.itemsize)
    return np.empty((nslots, 4, width), dtype=x.dtype), np.empty((nslots, 4, c))


@njit(nogil=True, cache=True)
def _pass(job, nchunks, kind, x, dy, out, p0, p1, p2, p3, res, wx, wd):
    """One pass: on this thread alone, or in chunks on the worker pool."""
    if nchunks == 1:
        run_kind(kind, x, dy, out, p0, p1, p2, p3, res[0], wx[0], wd[0])
    else:
        run_parallel(job, nchunks, kind, x, dy, out, p0, p1, p2, p3, res, wx, wd)


@njit(nogil=True, fastmath=_FM, cache=True)
def _forward(job, nchunks, res, wx, wd, x, w, b, eps, use_batch, update, rm, rv, alpha, unbias,
             out):
    n, c, length = x.shape
    k = np.empty(c, dtype=x.dtype)
    var = np.empty(c)
    if res.shape[0] == 0:  # one thread: small scratch of its own
        res = np.empty((1, 2, c))
        wx, wd = _workspaces(x, 1)
    if use_batch:
        for ch in range(c):
            k[ch] = x[0, ch, 0]
        _pass(job, nchunks, STATS, x, x, x, k, k, k, k, res, wx, wd)
        d, m2 = _merge_stats(res, n, nchunks, length)
        for ch in range(c):
            var[ch] = m2[ch] / (n * length)
        if update:
            _running_update(rm, rv, k, d, var, alpha, unbias)
    else:
        d = np.zeros(c)
        for ch in range(c):
            k[ch] = rm[ch]
            var[ch] = rv[ch]
    inv, kt, st, tt = _normalizer(x, k, d, var, eps, w, b)
    _pass(job, nchunks, AFFINE, x, x, out, kt, st, tt, tt, res, wx, wd)
    return k, d, inv


def bn_forward(x, w, b, eps, use_batch, rm, rv, alpha, unbias, out):
    """The whole forward into ``out``: batch statistics (``use_batch``) or the running ones
    (``rm``, ``rv``), the running update when ``use_batch`` and ``alpha >= 0`` (with the
    unbiasing factor ``unbias`` = m / (m − 1)), and ``y``; returns ``(k, d, inv_std)``.
    ``w``/``b`` are γ and β, or ones and zeros."""
    args = (x, w, b, float(eps), bool(use_batch), bool(use_batch and alpha >= 0), rm, rv,
            float(alpha), float(unbias), out)
    return _on_threads(_forward, x, args)


def _on_threads(kernel, x, args):
    """``kernel(job, chunks, res, wx, wd, *args)``: on the worker pool when ``x`` is large
    enough, with the pool's scratch arrays (reused from call to call: allocating them fresh
    page-faulted ~30 times per call, measured)."""
    nch = chunks(x)
    pool = workers() if nch > 1 else None
    if pool is None:
        return kernel(_NO_JOB, 1, _NO_RES, _NO_WX[x.dtype.char], _NO_WD, *args)
    try:
        n, c, length = x.shape
        width = int(_workspace_width(c, length, x.itemsize))
        res = pool.scratch("res", (nch, 2, c), np.float64)
        wx = pool.scratch("wx", (pool.size + 1, 4, width), x.dtype)
        wd = pool.scratch("wd", (pool.size + 1, 4, c), np.float64)
        return kernel(pool.job, nch, res, wx, wd, *args)
    finally:
        pool.lock.release()


@njit(nogil=True, fastmath=_FM, cache=True)
def _backward(job, nchunks, res, wx, wd, x, dy, k, d, inv, w, m, use_batch, out):
    n, c, length = x.shape
    if d.shape[0] == 0:  # constant statistics: no shift d to undo
        d = np.zeros(c)
    dt = np.empty(c, dtype=x.dtype)
    for ch in range(c):
        dt[ch] = d[ch]
    if res.shape[0] == 0:  # one thread: small scratch of its own
        res = np.empty((1, 2, c))
        wx, wd = _workspaces(x, 1)
    _pass(job, nchunks, SUMS, x, dy, x, k, dt, dt, dt, res, wx, wd)
    sdy = np.zeros(c)
    sdx = np.zeros(c)
    for i in range(nchunks):
        sdy += res[i, 0]
        sdx += res[i, 1]
    kt, at, bt, ct = _dx_coefs(x, k, d, inv, w, sdy, sdx, m, use_batch)
    _pass(job, nchunks, DX, x, dy, out, kt, at, bt, ct, res, wx, wd)
    return sdy, sdx * inv


def bn_backward(x, dy, k, d, inv, w, m, use_batch, out):
    """The whole backward into ``out`` (= dx); returns ``(dβ, dγ) = (Σ dy, Σ dy · x̂)``,
    float64 (``d`` empty: zero). ``use_batch=False`` (statistics were constants):
    ``dx = w · inv · dy``."""
    return _on_threads(_backward, x, (x, dy, k, d, inv, w, float(m), bool(use_batch), out))


_NO_JOB = np.zeros(20, dtype=np.int64)
_NO_RES, _NO_WD = np.zeros((0, 2, 1)), np.zeros((0, 4, 1))
_NO_WX = {np.dtype(t).char: np.zeros((0, 4, 1), dtype=t) for t in (np.float32, np.float64)}
