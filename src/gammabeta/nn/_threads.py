"""Worker threads for the BatchNorm kernels: a pass split over the cores for a few µs.

A pass over the batch is cut into *chunks* of samples (a few per thread). The caller writes a
job descriptor (an int64 array: kind of pass, dtype, shape, addresses of the arrays) and
publishes it in one atomic word, ``NEXT = seq · 2⁴⁰ + chunks · 2²⁰ + next chunk``. Worker
threads — compiled loops that run without the GIL — and the caller itself then claim chunks
with compare-and-swap on that word and run them; the caller returns when every chunk is done.
So the work balances itself: a worker that starts late or shares its core with another
program's thread takes fewer chunks, and the pass is never much slower than on one thread.
A claim is valid only for the job in the same word, so a late worker never runs a chunk of a
job that has moved on.

An idle worker spins for ``LINGER_US`` (the next pass of a layer follows within microseconds),
yielding its core to any other runnable thread at every turn (``sched_yield``: BLAS threads
are not slowed), then sleeps on a queue until a caller wakes it. Measured on this project's
2-core VM: Python-level hand-offs (a queue per part, the GIL passed back and forth) cost
10–50 µs per pass, which is why the hand-off happens in compiled code here; numba's OpenMP
pool, spinning after each region, slowed NumPy's BLAS threads in a training step 2×.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time

import numba
import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..backend import kernel_threads
from ._colform import col_affine, col_bwd_sums, col_dx, col_stats
from ._rowform import ROW_MIN, row_affine, row_bwd_sums, row_dx, row_stats

__all__ = ["threads", "chunks", "workers", "run_kind", "run_parallel", "PARALLEL_MIN"]

PARALLEL_MIN = 1 << 17  # arrays smaller than this (elements) run on one thread
CHUNK_MIN = 1 << 18  # elements per chunk, at least (each chunk costs a little set-up)
CHUNKS_PER_THREAD = 4
LINGER_US = 200.0  # how long an idle worker waits for the next pass before it sleeps

STATS, AFFINE, SUMS, DX = 1, 2, 3, 4  # kinds of pass
(_NEXT, _DONE, _STOP, _KIND, _DTYPE, _N, _C, _L, _X, _DY, _OUT, _P0, _P1, _P2, _P3, _RES, _WX,
 _WD, _W) = range(19)
_FIELDS = 20
_M20 = (1 << 20) - 1
_HAVE_YIELD = sys.platform.startswith(("linux", "darwin", "freebsd"))


# ----- atomics on an int64 array, arrays from addresses, yielding the core ----------------------
def _slot(context, builder, arr, ary, idx):
    return builder.gep(context.make_array(arr)(context, builder, ary).data, [idx])


@intrinsic
def _load(typingctx, arr, idx):
    """``arr[idx]`` with an atomic acquire load (never hoisted out of a loop)."""
    def codegen(context, builder, sig, args):
        return builder.load_atomic(_slot(context, builder, arr, *args), "acquire", 8)
    return types.int64(arr, idx), codegen


@intrinsic
def _store(typingctx, arr, idx, value):
    """``arr[idx] = value`` with an atomic release store (earlier writes become visible)."""
    def codegen(context, builder, sig, args):
        builder.store_atomic(args[2], _slot(context, builder, arr, args[0], args[1]),
                             "release", 8)
        return context.get_dummy_value()
    return types.none(arr, idx, value), codegen


@intrinsic
def _cas(typingctx, arr, idx, old, new):
    """Atomically: if ``arr[idx] == old``, set it to ``new``; whether it did."""
    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, arr, args[0], args[1])
        return builder.extract_value(builder.cmpxchg(ptr, args[2], args[3], "acq_rel",
                                                     "acquire"), 1)
    return types.boolean(arr, idx, old, new), codegen


@intrinsic
def _add(typingctx, arr, idx, value):
    """Atomically ``arr[idx] += value``."""
    def codegen(context, builder, sig, args):
        builder.atomic_rmw("add", _slot(context, builder, arr, args[0], args[1]), args[2],
                           "acq_rel")
        return context.get_dummy_value()
    return types.none(arr, idx, value), codegen


@intrinsic
def _yield(typingctx):
    """Let another runnable thread have this core (``sched_yield``; a no-op elsewhere)."""
    def codegen(context, builder, sig, args):
        if _HAVE_YIELD:
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.IntType(32), []),
                                                "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


def _pointer(nbtype, irtype):
    @intrinsic
    def to_pointer(typingctx, addr):
        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], ir.PointerType(irtype))
        return types.CPointer(nbtype)(addr), codegen
    return to_pointer


_ptr32 = _pointer(types.float32, ir.FloatType())
_ptr64 = _pointer(types.float64, ir.DoubleType())


# ----- one pass on one chunk ----------------------------------------------------------------------
@njit(nogil=True, cache=True)
def run_kind(kind, x, dy, out, p0, p1, p2, p3, res, wx, wd):
    """Run pass ``kind`` on ``x`` (and ``dy``, ``out``); per-channel arrays ``p0…p3`` in x's
    dtype; results of the reductions into ``res`` (float64, ``(2, C)``); workspaces ``wx``
    (4 rows, x's dtype) and ``wd`` (4 rows of C, float64) for this thread."""
    row = x.shape[2] >= ROW_MIN
    if kind == STATS:
        if row:
            row_stats(x, p0, wx, res)
        else:
            col_stats(x, p0, wx, wd, res)
    elif kind == AFFINE:
        if row:
            row_affine(x, p0, p1, p2, out)
        else:
            col_affine(x, p0, p1, p2, out, wx)
    elif kind == SUMS:
        if row:
            row_bwd_sums(x, dy, p0, p1, res)
        else:
            col_bwd_sums(x, dy, p0, p1, wx, wd, res)
    else:
        if row:
            row_dx(x, dy, p0, p1, p2, p3, out)
        else:
            col_dx(x, dy, p0, p1, p2, p3, out, wx)


@njit(nogil=True, cache=True)
def _run_chunk(kind, i, nch, x, dy, out, p0, p1, p2, p3, res, wx, wd):
    n = x.shape[0]
    a, b = i * n // nch, (i + 1) * n // nch
    run_kind(kind, x[a:b], dy[a:b], out[a:b], p0, p1, p2, p3, res[i], wx, wd)


@njit(nogil=True, cache=True)
def _claim(job):
    """Claim the next chunk of the published job: ``(chunk, chunks)``, chunk −1 when none."""
    while True:
        v = _load(job, _NEXT)
        i, nch = v & _M20, (v >> 20) & _M20
        if i >= nch:
            return -1, nch
        if _cas(job, _NEXT, v, v + 1):
            return i, nch


@njit(nogil=True, cache=True)
def _work_on(job, slot):
    """Run chunks of the published job (its arrays rebuilt from their addresses) with the
    workspaces of thread ``slot``, until none is left; whether any ran."""
    ran = False
    while True:
        i, nch = _claim(job)
        if i < 0:
            return ran
        n, c, length, kind, width = job[_N], job[_C], job[_L], job[_KIND], job[_W]
        res = carray(_ptr64(job[_RES]), (nch, 2, c))
        wd = carray(_ptr64(job[_WD]), (slot + 1, 4, c))[slot]
        if job[_DTYPE] == 4:
            _run_chunk(kind, i, nch, carray(_ptr32(job[_X]), (n, c, length)),
                       carray(_ptr32(job[_DY]), (n, c, length)),
                       carray(_ptr32(job[_OUT]), (n, c, length)), carray(_ptr32(job[_P0]), c),
                       carray(_ptr32(job[_P1]), c), carray(_ptr32(job[_P2]), c),
                       carray(_ptr32(job[_P3]), c), res,
                       carray(_ptr32(job[_WX]), (slot + 1, 4, width))[slot], wd)
        else:
            _run_chunk(kind, i, nch, carray(_ptr64(job[_X]), (n, c, length)),
                       carray(_ptr64(job[_DY]), (n, c, length)),
                       carray(_ptr64(job[_OUT]), (n, c, length)), carray(_ptr64(job[_P0]), c),
                       carray(_ptr64(job[_P1]), c), carray(_ptr64(job[_P2]), c),
                       carray(_ptr64(job[_P3]), c), res,
                       carray(_ptr64(job[_WX]), (slot + 1, 4, width))[slot], wd)
        _add(job, _DONE, 1)
        ran = True


@njit(nogil=True, cache=True)
def _serve(job, slot, linger):
    """Worker ``slot``'s loop: run chunks as they are published; return after ``linger``
    idle turns (1 when told to stop)."""
    idle = 0
    while idle < linger:
        if _load(job, _STOP):
            return 1
        if _work_on(job, slot):
            idle = 0
        else:
            idle += 1
            _yield()
    return 0


@njit(nogil=True, cache=True)
def run_parallel(job, nch, kind, x, dy, out, p0, p1, p2, p3, res, wx, wd):
    """Run pass ``kind`` over ``x`` in ``nch`` chunks of samples, on this thread (workspaces
    ``wx[0]``, ``wd[0]``) and the workers (``wx[w + 1]``…); results of chunk i into
    ``res[i]``."""
    n, c, length = x.shape
    job[_KIND], job[_DTYPE], job[_N], job[_C], job[_L] = kind, x.itemsize, n, c, length
    job[_X], job[_DY], job[_OUT] = x.ctypes.data, dy.ctypes.data, out.ctypes.data
    job[_P0], job[_P1], job[_P2], job[_P3] = p0.ctypes.data, p1.ctypes.data, p2.ctypes.data, \
        p3.ctypes.data
    job[_RES], job[_WX], job[_WD], job[_W] = res.ctypes.data, wx.ctypes.data, wd.ctypes.data, \
        wx.shape[2]
    _store(job, _DONE, 0)
    seq = (_load(job, _NEXT) >> 40) + 1
    _store(job, _NEXT, (seq << 40) | (nch << 20))  # publish: chunks may be claimed from now
    while True:
        i, _ = _claim(job)
        if i < 0:
            break
        _run_chunk(kind, i, nch, x, dy, out, p0, p1, p2, p3, res, wx[0], wd[0])
        _add(job, _DONE, 1)
    while _load(job, _DONE) < nch:  # chunks the workers claimed, still running
        _yield()


@njit(nogil=True, cache=True)
def _idle_turns(job, turns):
    """``turns`` idle turns of :func:`_serve` (to calibrate the linger)."""
    s = 0
    for _ in range(turns):
        s += _load(job, _STOP)
        _yield()
    return s


# ----- the pool -------------------------------------------------------------------------------
class _Pool:
    """``size`` worker threads serving one job descriptor; ``lock`` is held by the caller
    whose job it is (another thread's call meanwhile runs on its own thread only)."""

    def __init__(self, size: int):
        self.pid = os.getpid()
        self.size = size
        self.job = np.zeros(_FIELDS, dtype=np.int64)
        self.lock = threading.Lock()
        self._scratch: dict = {}
        self.asleep = [True] * size
        self.wake = [queue.SimpleQueue() for _ in range(size)]
        _idle_turns(self.job, 10)  # compile or load
        t0 = time.perf_counter()
        _idle_turns(self.job, 2000)
        per_turn_us = max((time.perf_counter() - t0) * 1e6 / 2000, 1e-3)
        self.linger = max(1, int(LINGER_US / per_turn_us))
        for w in range(size):
            threading.Thread(target=self._work, args=(w,), daemon=True,
                             name=f"gammabeta-kernels-{w}").start()

    def _work(self, w: int) -> None:
        while True:
            self.wake[w].get()
            if _serve(self.job, w + 1, self.linger):
                return
            self.asleep[w] = True

    def awake(self) -> None:
        """Wake the sleeping workers (they join within microseconds; chunks they miss run on
        the caller's thread)."""
        for w in range(self.size):
            if self.asleep[w]:
                self.asleep[w] = False
                self.wake[w].put(None)

    def scratch(self, name: str, shape, dtype) -> np.ndarray:
        """A scratch array for the caller holding ``lock``, kept for the next call."""
        a = self._scratch.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._scratch[name] = np.empty(shape, dtype=dtype)
        return a

    def stop(self) -> None:
        self.job[_STOP] = 1
        for w in range(self.size):
            self.wake[w].put(None)


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """The child has none of the parent's threads: forget the pool (and a lock that another
    thread may have held at the fork)."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threads() -> int:
    """Threads the kernels use for arrays of ``PARALLEL_MIN`` elements or more: numba's
    setting (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``)."""
    return kernel_threads(numba.get_num_threads())  # (fewer while the tuner says so)


def chunks(x) -> int:
    """How many chunks of samples a pass over ``x`` runs as (1: on this thread only):
    ``CHUNKS_PER_THREAD`` per thread, of at least ``CHUNK_MIN`` elements each."""
    if x.size < PARALLEL_MIN:
        return 1
    nthreads = threads()
    if nthreads == 1:
        return 1
    per = max(1, min(CHUNKS_PER_THREAD, x.size // (CHUNK_MIN * nthreads)))
    return max(1, min(x.shape[0], per * nthreads, _M20))


def workers():
    """The pool for this process (made or remade as needed), its workers awake, or ``None``
    when another thread's pass holds it. The caller must release ``pool.lock``."""
    global _pool
    size = threads() - 1
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid() or _pool.size != size:
            if _pool is not None and _pool.pid == os.getpid():
                _pool.stop()
            _pool = _Pool(size)
        pool = _pool
    if not pool.lock.acquire(blocking=False):
        return None
    pool.awake()
    return pool
