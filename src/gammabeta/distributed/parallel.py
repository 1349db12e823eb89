r"""Data parallelism over MPI: every rank holds the whole model and a share of every batch.

One training step on ``P`` ranks, for a global batch of ``B`` samples split into shares
``n_r`` (``Σ n_r = B``; :meth:`DataParallel.share`, the first ``B mod P`` ranks one more)::

    rank r:  ŷ_r = f(x_r)                       forward on its own rows (SyncBatchNorm
                                                exchanges per-channel statistics)
             L_r = (1/n_r) Σ ℓ(ŷ_r, y_r)        its mean loss
             dŷ_r = (n_r / B) · ∂L_r/∂ŷ_r        scaled: the global loss is Σ_r (n_r/B) L_r
             g_r = backward(dŷ_r)
    all:     g = Σ_r g_r                        one MPI Allreduce (SUM) per bucket of
                                                gradients (:meth:`allreduce_gradients`)
             θ ← step(θ, g)                     identical on every rank

so ``g`` is exactly the gradient of the mean loss over the global batch — what one process
training on the whole batch computes — and with SyncBatchNorm (and Dropout drawing its
global mask, :func:`gammabeta.nn.mode.batch_shard`) the run follows the single-process one
up to float32 summation order. With per-worker BatchNorm (Goyal et al. 2017) each rank
normalizes with its own share's statistics.

Every decision that could differ between ranks (a non-finite loss on one share, a stop
request) goes through a small all-reduce first (:meth:`any`, :meth:`reduce`), so the ranks
never take different branches and wait on each other forever.
"""

from __future__ import annotations

import numpy as np

from .world import comm_world

__all__ = ["DataParallel"]

_BUCKET_BYTES = 4 * 2**20  # gradients are summed in buckets of about this size


class DataParallel:
    """The communicator and the collective operations of data-parallel training.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Defaults to ``MPI.COMM_WORLD``.
    bucket_bytes : int
        Size of a gradient bucket: one ``Allreduce`` per bucket, not per parameter.
    """

    def __init__(self, comm=None, bucket_bytes: int = _BUCKET_BYTES):
        self.comm = comm if comm is not None else comm_world()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        self.bucket_bytes = int(bucket_bytes)
        self.allreduce_calls = 0  # counted, for the tests and the benchmark
        self.threads = self._share_cores()

    def _share_cores(self) -> int:
        """Limit BLAS and the kernels' threads to this node's cores / ranks on this node.

        Ranks on one machine that each start one thread per core fight over the cores (and
        a waiting thread that spins takes the core its peer needs): measured on 2 cores with
        2 ranks, a step took 16× as long as with one thread per rank.
        """
        from mpi4py import MPI

        from ..autothreads import usable_cores

        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            on_node = local.Get_size()
        finally:
            local.Free()
        n = max(1, usable_cores() // on_node)
        try:
            from threadpoolctl import threadpool_limits

            self._blas_limit = threadpool_limits(limits=n)
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            self._blas_limit = None
        try:
            import numba

            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # pragma: no cover - numba is optional
            pass
        return n

    # ----- batches ---------------------------------------------------------------------------
    def share(self, n: int) -> tuple[int, int]:
        """Rows ``start:stop`` of a global batch of ``n`` that this rank trains on."""
        base, extra = divmod(int(n), self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def min_share(self, n: int) -> int:
        """The smallest share of a batch of ``n`` (what per-worker BatchNorm must normalize)."""
        return int(n) // self.size

    # ----- parameters and buffers --------------------------------------------------------------
    def broadcast_model(self, model) -> None:
        """Every parameter and buffer takes rank 0's values (the same start everywhere)."""
        for p in model.parameters():
            self.comm.Bcast(p.data, root=0)
        self.broadcast_buffers(model)

    def broadcast_buffers(self, model) -> None:
        """Buffers (running statistics) take rank 0's values, as PyTorch's DDP does with
        ``broadcast_buffers=True``: per-worker BatchNorm then evaluates and saves rank 0's."""
        for m in model.modules():
            for k, b in m._buffers.items():
                if b is None:
                    continue
                arr = np.array(b, copy=True, order="C")  # 0-d stays 0-d
                self.comm.Bcast(arr, root=0)
                m._buffers[k] = arr

    def allreduce_gradients(self, params) -> None:
        """Sum every parameter's gradient over the ranks, in place, bucket by bucket.

        A parameter without a gradient on this rank contributes zeros (every rank must take
        part in every bucket). Each bucket is one contiguous float32/float64 buffer.
        """
        params = [p for p in params if p.requires_grad]
        buckets: list[list] = [[]]
        size = 0
        for p in params:
            if buckets[-1] and (size + p.data.nbytes > self.bucket_bytes
                                or p.data.dtype != buckets[-1][0].data.dtype):
                buckets.append([])
                size = 0
            buckets[-1].append(p)
            size += p.data.nbytes
        from mpi4py import MPI

        for bucket in buckets:
            if not bucket:
                continue
            flat = np.concatenate([
                (p.grad if p.grad is not None else np.zeros_like(p.data)).ravel()
                for p in bucket]).astype(bucket[0].data.dtype, copy=False)
            self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            self.allreduce_calls += 1
            at = 0
            for p in bucket:
                p.grad = flat[at:at + p.data.size].reshape(p.data.shape).copy()
                at += p.data.size

    # ----- agreement ---------------------------------------------------------------------------
    def reduce(self, values) -> np.ndarray:
        """Element-wise sum over the ranks of a short float64 vector."""
        from mpi4py import MPI

        buf = np.asarray(values, dtype=np.float64).copy()
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        return bool(self.reduce([1.0 if flag else 0.0])[0] > 0)

    def first(self, message: str | None) -> str | None:
        """The message of the lowest rank that has one (prefixed with its rank), on every rank;
        None if no rank has one."""
        messages = self.comm.allgather(message)
        for r, m in enumerate(messages):
            if m is not None:
                return m if self.size == 1 else f"rank {r}: {m}"
        return None
