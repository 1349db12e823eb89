"""Persistent worker threads for the BatchNorm kernels' two reductions (nogil, no spinning).

numba's OpenMP pool spins after each parallel region and, measured, slowed NumPy's BLAS threads
in a training step 2×; these workers block on a queue instead. See :mod:`gammabeta.nn._kernels`.
"""

from __future__ import annotations

import os
import queue
import threading

import numba

__all__ = ["threads", "split", "run", "PARALLEL_MIN"]

PARALLEL_MIN = 1 << 21  # arrays smaller than this (elements) run on one thread


class _Pool:
    """Persistent worker threads that run nogil kernels on parts of the batch.

    The caller runs the first part itself; idle workers block on a queue (no spinning, so
    they never compete with NumPy's BLAS threads for the cores). Recreated after a fork.
    """

    def __init__(self, workers: int):
        self.pid = os.getpid()
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.size = workers
        for _ in range(workers):
            threading.Thread(target=self._work, daemon=True,
                             name="gammabeta-kernels").start()

    def _work(self):
        while True:
            fn, args, done = self.tasks.get()
            try:
                done.put((True, fn(*args)))
            except BaseException as exc:  # handed back to the caller
                done.put((False, exc))


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def threads() -> int:
    """Threads the kernels use for arrays of ``PARALLEL_MIN`` elements or more: numba's
    setting (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``)."""
    return max(1, numba.get_num_threads())


def _workers(n: int) -> _Pool | None:
    global _pool
    if n <= 0:
        return None
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid() or _pool.size < n:
            _pool = _Pool(n)
        return _pool


def split(x) -> list[tuple[int, int]]:
    """Contiguous parts of the batch axis, one per thread (one part below PARALLEL_MIN)."""
    n = x.shape[0]
    parts = min(threads(), n) if x.size >= PARALLEL_MIN else 1
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def run(fn, arg_sets: list[tuple]) -> list:
    """``[fn(*args) for args in arg_sets]``, the first on this thread, the rest on workers."""
    if len(arg_sets) == 1:
        return [fn(*arg_sets[0])]
    pool = _workers(len(arg_sets) - 1)
    dones = []
    for args in arg_sets[1:]:
        done: queue.SimpleQueue = queue.SimpleQueue()
        pool.tasks.put((fn, args, done))
        dones.append(done)
    results = [fn(*arg_sets[0])]
    for done in dones:
        ok, value = done.get()
        if not ok:
            raise value
        results.append(value)
    return results
