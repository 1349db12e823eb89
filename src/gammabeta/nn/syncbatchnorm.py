r"""SyncBatchNorm: batch normalization whose batch statistics are exact over all MPI ranks.

mpi4py is imported lazily, only when ``comm=None`` is resolved to ``MPI.COMM_WORLD`` at the
first forward that needs it; importing :mod:`gammabeta.nn` never imports it.
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import ConfigError, ShapeError
from .batchnorm import _BatchNorm
from .module import Module, is_grad_enabled

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]

_COMM_METHODS = ("Get_size", "Get_rank", "Allgather", "Allreduce")


class SyncBatchNorm(_BatchNorm):
    r"""Batch normalization whose batch statistics are exact over all ranks of a communicator.

    Inputs are ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``; the statistics are those of the
    batch concatenated over every rank of ``comm``.
    Each rank holds a share of the global batch (shares may differ, one may be empty). The
    layer computes exactly what :class:`BatchNorm1d`/:class:`BatchNorm2d` computes on the
    concatenated batch, on every rank, with the same running statistics everywhere.

    Forward (training, or any mode with ``track_running_stats=False``). Per channel, rank r
    computes in float64 (shifted two-pass) its count ``n_r`` (N·L or N·H·W), mean ``μ_r`` and
    ``M2_r = Σ (x − μ_r)²``; one ``Allgather`` of a small float64 array gives every rank all of
    them, and every rank merges them in rank order, skipping ranks with ``n_r = 0``, by the
    pairwise formula of Chan, Golub & LeVeque (1979):

        n = n_a + n_b,   δ = μ_b − μ_a,   μ = μ_a + δ·n_b/n,   M2 = M2_a + M2_b + δ²·n_a·n_b/n

    The array is ``(4, C)``, not ``(3, C)``: each mean travels as an unevaluated sum
    ``μ_hi + μ_lo`` (TwoSum), and the merge and ``x − μ = (x − μ_hi) − μ_lo`` keep it so. A
    mean rounded to one float64 is off by up to half an ulp of the data's offset (9e-13 at
    1e4), which alone put float64 errors at 4e-12 against BatchNorm's shifted statistics.

    With the global count ``M`` (``M ≤ 1`` raises :class:`ShapeError` on every rank):

        σ² = M2 / M,   x̂ = (x − μ) / √(σ² + ε),   y = γ · x̂ + β     (y in the input's dtype)
        running_mean ← (1 − momentum) · running_mean + momentum · μ
        running_var  ← (1 − momentum) · running_var  + momentum · σ² · M/(M − 1)  (unbiased)
        num_batches_tracked ← num_batches_tracked + 1

    ``momentum`` weighs the *new* batch (PyTorch's convention); ``momentum=None`` uses
    1/num_batches_tracked, a cumulative average. Defaults as BatchNorm: ``eps=1e-5``,
    ``momentum=0.1``, γ = 1, β = 0, running_mean = 0, running_var = 1.

    Backward: the local per-channel sums ``Σdy`` and ``Σdy·x̂`` (float64), one ``Allreduce``
    (SUM) of the stacked ``(2, C)`` array, then:

        dx = γ/√(σ² + ε) · (dy − Σdy_global/M − x̂·Σ(dy·x̂)_global/M)

    ``weight.grad`` and ``bias.grad`` receive the *local* sums ``Σ_local dy·x̂`` and
    ``Σ_local dy``: the training loop's gradient all-reduce adds them over the ranks, exactly
    as it does for every other parameter.

    Evaluation with ``track_running_stats=True`` is BatchNorm's (running statistics, no
    communication): ``y = γ · (x − running_mean) / √(running_var + ε) + β``, and in backward
    ``dx = γ · dy / √(running_var + ε)``. With a communicator of size 1 the layer *is*
    BatchNorm: forward and backward run :class:`BatchNorm1d`'s code (as PyTorch falls back,
    pytorch#89706).

    Pitfalls this implementation avoids:

    * Counts differ between ranks: the merge and the unbiased ``M2/(M − 1)`` use the global
      count, never a local one (PyTorch issue #22192, running_var off for uneven inputs).
    * ``dx`` must divide the all-reduced sums by the *global* ``M``; per-rank means of ``dy``
      are wrong for uneven shares (PyTorch #36382; see also #37133).
    * A rank with 0 samples still joins every collective, forward and backward, contributes
      nothing to the merge and returns empty arrays of its input's shape (PyTorch #74944);
      a rank that skipped a collective would hang the others.
    * ``E[x²] − E[x]²`` cancels catastrophically for a large mean: never used.
    * Reducing the γ/β gradients here as well as in the training loop would count them twice.
    * Every rank must call forward and backward the same number of times with the same C.

    Parameters
    ----------
    num_features : int
        C, the number of channels on axis 1.
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of the new batch in the running averages, in [0, 1]; ``None``: cumulative.
    affine : bool, default True
        Learn γ (``weight``) and β (``bias``); ``False``: γ = 1 and β = 0, fixed.
    track_running_stats : bool, default True
        Keep and use the running statistics; ``False``: batch statistics in every mode.
    gamma_init : initializer, default "ones"
        Initial γ: any spec of :func:`gammabeta.init.get`.
    beta_init : initializer, default "zeros"
        Initial β, likewise.
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ, β and the running statistics.
    comm : mpi4py.MPI.Comm, optional
        The ranks that share the batch (anything with ``Get_size``, ``Get_rank``,
        ``Allgather`` and ``Allreduce``). ``None``: ``MPI.COMM_WORLD``, resolved at first use;
        without mpi4py that raises :class:`ConfigError`.

    Attributes
    ----------
    weight, bias : Parameter or None
        γ and β, shape ``(C,)``; ``None`` when ``affine=False``.
    running_mean, running_var : numpy.ndarray or None
        Buffers ``(C,)`` (starting at 0 and 1), identical on every rank; ``None`` when
        ``track_running_stats=False``.
    num_batches_tracked : numpy.ndarray or None
        Buffer, a 0-d int64 count of training batches; ``None`` likewise.

    Shape
    -----
    - Input: ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``, this rank's share (N may be 0).
    - Output: the input's shape and dtype.

    References
    ----------
    - Ioffe & Szegedy (2015), "Batch Normalization", ICML, arXiv:1502.03167.
    - Chan, Golub & LeVeque (1979), "Updating Formulae and a Pairwise Algorithm for Computing
      Sample Variances", Stanford CS tech. report STAN-CS-79-773.

    Examples
    --------
    Under MPI each rank runs the same script (``mpirun -n 4 python train.py``) with
    ``comm=None`` (``MPI.COMM_WORLD``). Here a one-rank stand-in for a communicator shows
    that the layer then is :class:`BatchNorm1d` on the whole batch:

    >>> import numpy as np
    >>> from gammabeta.nn import BatchNorm1d, SyncBatchNorm
    >>> class OneRank:  # what mpi4py's MPI.COMM_SELF would do
    ...     def Get_size(self): return 1
    ...     def Get_rank(self): return 0
    ...     def Allgather(self, send, recv): recv[0] = send
    ...     def Allreduce(self, send, recv): recv[...] = send
    >>> sync, bn = SyncBatchNorm(3, comm=OneRank()), BatchNorm1d(3)
    >>> x = np.random.default_rng(0).standard_normal((16, 3, 5)).astype(np.float32)
    >>> bool(np.allclose(sync(x), bn(x), atol=1e-6))
    True
    >>> bool(np.allclose(sync.running_var, bn.running_var)), int(sync.num_batches_tracked)
    (True, 1)
    >>> sync.backward(np.ones_like(x)).shape
    (16, 3, 5)
    """

    _ndims = (2, 3, 4)
    _layout = "2-D (N, C), 3-D (N, C, L) or 4-D (N, C, H, W)"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, gamma_init="ones",
                 beta_init="zeros", rng=None, dtype=np.float32, comm=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         gamma_init, beta_init, rng, dtype)
        if comm is not None and not all(hasattr(comm, a) for a in _COMM_METHODS):
            raise ConfigError(f"SyncBatchNorm: comm is a {type(comm).__name__}; expected an "
                              "mpi4py communicator (e.g. MPI.COMM_WORLD) or None")
        self.comm = comm

    def __deepcopy__(self, memo):
        """Copies share the communicator (a handle: a duplicated one cannot be pickled)."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = value if key == "comm" else copy.deepcopy(value, memo)
        return new

    def communicator(self):
        """``comm``, resolving ``None`` to ``MPI.COMM_WORLD`` (importing mpi4py) once."""
        if self.comm is None:
            try:
                from mpi4py import MPI  # noqa: PLC0415 - optional, lazy on purpose
            except ImportError as e:
                raise ConfigError(f"{self.describe()}: comm=None needs mpi4py for "
                                  "MPI.COMM_WORLD; pip install 'gammabeta[mpi]' (or pass "
                                  "comm=...)") from e
            self.comm = MPI.COMM_WORLD
        return self.comm

    # ----- forward ---------------------------------------------------------------------------
    def forward(self, x):
        self._check_input(x)
        use_batch = self.training or not self.track_running_stats
        c, length = self.num_features, int(np.prod(x.shape[2:], dtype=np.int64))
        n_local = x.shape[0] * length
        if not use_batch and n_local > 0:
            return super().forward(x)  # BatchNorm's eval: running statistics, no communication
        x3 = x.reshape(x.shape[0], c, length)
        if not use_batch:  # an empty input in eval: nothing to compute
            inv_std = 1.0 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
            return self._finish(x, np.zeros(x3.shape), inv_std, False, 0)
        comm = self.communicator()
        size = comm.Get_size()
        if size == 1 and n_local > 1:
            return super().forward(x)  # one rank: exactly BatchNorm
        # Elementwise work in float64 for float64 inputs, else in float32 (statistics and
        # every sum in float64 either way): x is shifted by its first sample K, which is
        # exact, then by d = μ_local − K rounded to the compute dtype; the rounding of d is
        # undone exactly in M2 and in the global centring below.
        ct = np.float64 if x.dtype == np.float64 else np.float32
        xs = x3.astype(ct, copy=True)
        stats = np.zeros((4, c))  # rows: n, μ as hi + lo (exact for a large offset), M2
        k, dc = np.zeros(c), np.zeros(c)
        if n_local > 0:
            k = xs[0, :, 0].astype(np.float64)
            xs -= xs[0, :, 0][None, :, None].copy()
            d = xs.sum(axis=(0, 2), dtype=np.float64) / n_local
            dc = d.astype(ct).astype(np.float64)  # the shift actually applied
            xs -= dc.astype(ct)[None, :, None]
            m2 = np.einsum("ncl,ncl->c", xs, xs) if ct == np.float64 else \
                np.square(xs).sum(axis=(0, 2), dtype=np.float64)
            stats[0], stats[3] = n_local, m2 - n_local * (d - dc) ** 2
            stats[1], stats[2] = _two_sum(k, d)
        gathered = np.empty((size, 4, c))
        comm.Allgather(stats, gathered)
        m, hi, lo, m2 = _merge(gathered)
        if m <= 1:
            raise ShapeError(f"{self.describe()}: expected more than 1 value per channel when "
                             f"training, got {m} over {size} ranks (this rank's input has "
                             f"shape {x.shape})")
        inv_std = 1.0 / np.sqrt(m2 / m + self.eps)
        if self.training and self.track_running_stats:
            alpha = self._next_alpha()
            rm, rv = self.running_mean, self.running_var
            rm[...] = (1 - alpha) * rm + alpha * (hi + lo)
            rv[...] = (1 - alpha) * rv + alpha * (m2 / (m - 1))
        xs -= (((hi - k) + lo) - dc).astype(ct)[None, :, None]  # now x − μ (global)
        return self._finish(x, xs, inv_std, True, m)

    def _finish(self, x, xc, inv_std, use_batch, m):
        """``y = γ·x̂ + β`` from ``xc = x − μ`` (in the compute dtype, overwritten: it becomes
        x̂); cache what backward needs."""
        ct = xc.dtype
        xhat = xc
        xhat *= inv_std.astype(ct)[None, :, None]
        y = xhat
        if self.affine:
            y = xhat * self.weight.data.astype(ct)[None, :, None] \
                + self.bias.data.astype(ct)[None, :, None]
        self._cache = _SyncCache(xhat, inv_std, use_batch, m, x.shape, x.dtype) \
            if is_grad_enabled() else None
        return y.reshape(x.shape).astype(x.dtype, copy=False)

    # ----- backward --------------------------------------------------------------------------
    def backward(self, dy):
        cache = self._saved()
        if not isinstance(cache, _SyncCache):
            return super().backward(dy)
        if tuple(dy.shape) != tuple(cache.shape):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {cache.shape}")
        self._cache = None
        xhat = cache.xhat
        ct = xhat.dtype
        dy3 = np.asarray(dy).reshape(xhat.shape).astype(ct, copy=False)
        dyx = np.einsum("ncl,ncl->c", dy3, xhat) if ct == np.float64 else \
            (dy3 * xhat).sum(axis=(0, 2), dtype=np.float64)
        local = np.stack([dy3.sum(axis=(0, 2), dtype=np.float64), dyx])
        self._accumulate(local[0], local[1])  # local sums: the loop's all-reduce adds them
        g = cache.inv_std * (self.weight.data.astype(np.float64) if self.affine else 1.0)
        if cache.use_batch:
            total = np.empty_like(local)
            self.communicator().Allreduce(local, total)  # default op: SUM
            mdy, mdyx = (total / cache.m).astype(ct)
            dx = g.astype(ct)[None, :, None] * (dy3 - mdy[None, :, None]
                                                - xhat * mdyx[None, :, None])
        else:
            dx = dy3 * g.astype(ct)[None, :, None]
        return dx.reshape(cache.shape).astype(cache.dtype, copy=False)

    # ----- conversion ------------------------------------------------------------------------
    @classmethod
    def convert_sync_batchnorm(cls, module: Module, comm=None) -> Module:
        """Replace every BatchNorm1d/2d in ``module``'s tree by a :class:`SyncBatchNorm`.

        As PyTorch's ``SyncBatchNorm.convert_sync_batchnorm``: each new layer shares the old
        one's parameters and buffers (the same objects) and keeps its ``eps``, ``momentum``,
        ``affine``, ``track_running_stats``, dtype and train/eval mode; a BatchNorm root is
        itself replaced. Also available as ``gammabeta.nn.convert_sync_batchnorm``.

        Parameters
        ----------
        module : Module
            Converted in place (its children are replaced); the root is returned or replaced.
        comm : mpi4py.MPI.Comm, optional
            Given to every new SyncBatchNorm (``None``: ``MPI.COMM_WORLD`` at first use).

        Returns
        -------
        Module
            The converted root: a new SyncBatchNorm if ``module`` itself was a BatchNorm.

        Examples
        --------
        >>> import numpy as np
        >>> from gammabeta.nn import BatchNorm2d, Conv2d, ReLU, Sequential, convert_sync_batchnorm
        >>> conv = Conv2d(3, 8, 3, rng=np.random.default_rng(0))
        >>> model = Sequential(conv, BatchNorm2d(8), ReLU())
        >>> bn = model[1]
        >>> model = convert_sync_batchnorm(model)  # comm=None: MPI.COMM_WORLD at first use
        >>> model[1]
        SyncBatchNorm(8)
        >>> model[1].weight is bn.weight, model[1].running_mean is bn.running_mean
        (True, True)
        >>> convert_sync_batchnorm(BatchNorm2d(4, momentum=None).eval()).training
        False
        """
        from .batchrenorm import _BatchRenorm
        from .ghostbatchnorm import _GhostBatchNorm

        out = module
        if isinstance(module, _BatchNorm) and not isinstance(
                module, (SyncBatchNorm, _BatchRenorm, _GhostBatchNorm)):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, dtype=module._param_dtype(), comm=comm)
            out._parameters.update(module._parameters)  # the same Parameter objects
            out._buffers.update(module._buffers)
            out._non_persistent.update(module._non_persistent)
            object.__setattr__(out, "training", module.training)
        for name, child in list(module._modules.items()):
            if child is not None:
                out._modules[name] = cls.convert_sync_batchnorm(child, comm)
        return out


convert_sync_batchnorm = SyncBatchNorm.convert_sync_batchnorm
"""Replace every BatchNorm1d/2d in a model by a SyncBatchNorm (PyTorch's API, as a function).

``convert_sync_batchnorm(module, comm=None)`` is :meth:`SyncBatchNorm.convert_sync_batchnorm`
(the classmethod, documented there with its parameters and an example).
"""


class _SyncCache:
    """What a synchronized forward leaves for backward (``xhat`` is float64, (N, C, L))."""

    __slots__ = ("xhat", "inv_std", "use_batch", "m", "shape", "dtype")

    def __init__(self, xhat, inv_std, use_batch, m, shape, dtype):
        self.xhat, self.inv_std, self.use_batch = xhat, inv_std, use_batch
        self.m, self.shape, self.dtype = m, shape, dtype


def _two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e = a + b`` exactly (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _merge(gathered):
    """Chan et al.'s pairwise merge of per-rank ``(n, μ_hi, μ_lo, M2)`` rows, in rank order,
    skipping empty ranks: ``(M, μ_hi, μ_lo, M2)`` (``M`` an int, the rest per channel)."""
    c = gathered.shape[2]
    n, hi, lo, m2 = 0.0, np.zeros(c), np.zeros(c), np.zeros(c)
    for nb_row, hi_b, lo_b, m2_b in gathered:
        nb = float(nb_row[0])
        if nb == 0:
            continue
        if n == 0:
            n, hi, lo, m2 = nb, hi_b.copy(), lo_b.copy(), m2_b.copy()
            continue
        total = n + nb
        delta = (hi_b - hi) + (lo_b - lo)
        hi, lo = _two_sum(hi, lo + delta * (nb / total))
        m2 = m2 + m2_b + delta * delta * (n * nb / total)
        n = total
    return int(n), hi, lo, m2
