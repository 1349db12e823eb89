"""Row ranges of a LayerNorm/GroupNorm/InstanceNorm kernel call shared over threads.

A large input is cut into ``CHUNKS_PER_THREAD`` row ranges per thread, claimed one at a time
by whichever thread is free: the caller and a small pool of Python threads, which block
(no spinning) while there is no work. The kernels release the GIL, so the threads run in
parallel; a worker that starts late or shares its core with another program does less of
the work.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

from ..backend import kernel_threads

__all__ = ["threads", "row_ranges", "run", "PARALLEL_MIN"]

PARALLEL_MIN = 1 << 20  # inputs of at least this many values are split over threads
ROWS_PER_PART = 8  # at least this many rows per range of rows run on one thread
CHUNKS_PER_THREAD = 4  # a large input is cut into this many row ranges per thread
_pool = [None, None, 0]  # (ThreadPoolExecutor, pid that made it, its size)
_pool_lock = threading.Lock()


def threads() -> int:
    """Threads for inputs of ``PARALLEL_MIN`` values or more: numba's setting
    (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``), as for the BatchNorm kernels."""
    return kernel_threads(numba.get_num_threads())  # (fewer while the tuner says so)


def _executor(size: int):
    with _pool_lock:
        pool, pid, have = _pool
        if pool is None or pid != os.getpid() or have < size:  # (a forked child: a new pool)
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="gammabeta-norm")
            _pool[:] = [pool, os.getpid(), size]
        return pool


def row_ranges(m: int, size: int) -> list[tuple[int, int]]:
    """Row ranges of ``m`` rows (``size`` values in all): one for a small input, else
    ``CHUNKS_PER_THREAD`` per thread (at least ``ROWS_PER_PART`` rows each)."""
    nthreads = threads() if size >= PARALLEL_MIN else 1
    parts = max(1, min(nthreads * (CHUNKS_PER_THREAD if nthreads > 1 else 1),
                       m // ROWS_PER_PART))
    return [(i * m // parts, (i + 1) * m // parts) for i in range(parts)]


class _Job:
    """Row ranges claimed one at a time by whichever thread is free (the caller included),
    so a worker that starts late or shares its core does less of the work."""

    def __init__(self, kernel, ranges, make_args):
        self.kernel, self.ranges, self.make_args = kernel, ranges, make_args
        self.todo = iter(range(len(ranges)))  # next() is atomic under the GIL
        self.left = len(ranges)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error = None

    def work(self) -> None:
        for i in self.todo:
            try:
                self.kernel(*self.make_args(i), *self.ranges[i])
            except BaseException as e:  # pragma: no cover - re-raised by the caller
                self.error = e
            with self.lock:
                self.left -= 1
                if self.left == 0:
                    self.done.set()


def run(kernel, ranges, make_args):
    """``kernel(*make_args(i), r0, r1)`` for every range ``i``: on this thread alone, or
    shared with the worker threads; returns when every range is done."""
    if len(ranges) == 1:
        kernel(*make_args(0), *ranges[0])
        return
    job = _Job(kernel, ranges, make_args)
    helpers = min(threads(), len(ranges)) - 1
    pool = _executor(helpers)
    for _ in range(helpers):
        pool.submit(job.work)
    job.work()
    job.done.wait()
    if job.error is not None:  # pragma: no cover
        raise job.error


