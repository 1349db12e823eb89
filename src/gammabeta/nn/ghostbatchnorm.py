r"""Ghost batch normalization (Hoffer, Hubara & Soudry 2017, arXiv:1705.08741): BatchNorm whose
training statistics come from "virtual" batches of ``virtual_batch_size`` samples.

Each virtual batch runs :class:`~gammabeta.nn.BatchNorm1d`'s (or ``2d``'s) own forward and
backward, so everything per chunk (numerics, kernels, running update) is BatchNorm's.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from . import _args
from ._bn_base import _BatchNorm
from .batchnorm import BatchNorm1d, BatchNorm2d

__all__ = ["GhostBatchNorm1d", "GhostBatchNorm2d"]


class _GhostBatchNorm(_BatchNorm):
    """Shared implementation of :class:`GhostBatchNorm1d` and :class:`GhostBatchNorm2d`."""

    def __init__(self, num_features: int, virtual_batch_size: int = 128, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, gamma_init="ones", beta_init="zeros",
                 rng=None, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         gamma_init, beta_init, rng, dtype)
        self.virtual_batch_size = _args.integer(type(self).__name__, "virtual_batch_size",
                                                virtual_batch_size)

    def extra_repr(self) -> str:
        base = super().extra_repr()
        first, _, rest = base.partition(", ")
        return f"{first}, virtual_batch_size={self.virtual_batch_size}" + \
            (f", {rest}" if rest else "")

    def virtual_batches(self, n: int, length: int = 1) -> list[tuple[int, int]]:
        """The ``(start, stop)`` rows of each virtual batch of an ``n``-sample input whose
        samples hold ``length`` values per channel (L, or H·W).

        Chunks of ``virtual_batch_size`` rows, the last one shorter; a last chunk with at most
        one value per channel (one row of ``length`` 1) joins the chunk before it.
        """
        v = self.virtual_batch_size
        spans = [(a, min(a + v, n)) for a in range(0, n, v)]
        if len(spans) > 1 and (spans[-1][1] - spans[-1][0]) * length <= 1:
            spans[-2:] = [(spans[-2][0], n)]
        return spans

    def forward(self, x):
        if not (self.training or not self.track_running_stats):
            return super().forward(x)  # evaluation: BatchNorm's, with the running statistics
        self._check_input(x)
        length = math.prod(x.shape[2:])
        spans = self.virtual_batches(x.shape[0], length)
        if len(spans) == 1:
            return super().forward(x)  # the whole batch is one virtual batch: BatchNorm
        if self.virtual_batch_size * length <= 1:
            raise ShapeError(f"{self.describe()}: virtual_batch_size="
                             f"{self.virtual_batch_size} leaves 1 value per channel in each "
                             f"virtual batch of an input of shape {x.shape}; expected more "
                             "than 1")
        y, caches = None, []
        for a, b in spans:
            yc = super().forward(x[a:b])  # BatchNorm on the chunk: one running update
            if y is None:
                y = np.empty(x.shape, dtype=yc.dtype)
            y[a:b] = yc
            caches.append(self.__dict__.get("_cache"))
        self._cache = _GhostCache(spans, caches, x.shape) if caches[0] is not None else None
        return y

    def backward(self, dy):
        cache = self._saved()
        if not isinstance(cache, _GhostCache):
            return super().backward(dy)  # one virtual batch, or evaluation
        if tuple(dy.shape) != tuple(cache.shape):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {cache.shape}")
        dx = None
        for (a, b), chunk in zip(cache.spans, cache.caches, strict=True):
            self._cache = chunk
            dxc = super().backward(dy[a:b])  # BatchNorm's closed form; γ/β grads add up
            if dx is None:
                dx = np.empty(cache.shape, dtype=dxc.dtype)
            dx[a:b] = dxc
        self._cache = None
        return dx


class _GhostCache:
    """The virtual batches' spans and the BatchNorm cache of each."""

    __slots__ = ("spans", "caches", "shape")

    def __init__(self, spans, caches, shape):
        self.spans, self.caches, self.shape = spans, caches, shape


class GhostBatchNorm1d(_GhostBatchNorm, BatchNorm1d):
    r"""Ghost batch normalization over ``(N, C)`` or ``(N, C, L)`` inputs, per channel.

    **In training** (and in every mode when ``track_running_stats=False``) the batch is split
    along axis 0 into virtual batches of ``virtual_batch_size`` samples, in order; the last
    is shorter, and a last one that would hold at most one value per channel (one sample of
    L = 1) joins the one before it. Each virtual batch b is normalized by
    :class:`BatchNorm1d` with its own statistics (m_b values per channel):

        μ_b = (1/m_b) Σ x,   σ²_b = (1/m_b) Σ (x − μ_b)²,   y = γ · (x − μ_b)/√(σ²_b + ε) + β

    and updates the running statistics once, in order, as BatchNorm does for a batch:

        running_mean ← (1 − momentum) · running_mean + momentum · μ_b
        running_var  ← (1 − momentum) · running_var  + momentum · σ²_b · m_b/(m_b − 1)
        num_batches_tracked ← num_batches_tracked + 1     (it counts virtual batches)

    so one step of k virtual batches moves the averages k times (with ``momentum=None`` every
    virtual batch weighs the same in the cumulative average). Backward is BatchNorm's closed
    form per virtual batch, and dγ, dβ are the sums over all of them:

        dx = γ/√(σ²_b + ε) · (dy − Σ_b dy/m_b − x̂ · Σ_b (dy·x̂)/m_b),   dγ = Σ dy·x̂,   dβ = Σ dy

    A batch of at most ``virtual_batch_size`` samples is one virtual batch: exactly
    :class:`BatchNorm1d`. **In evaluation** it is :class:`BatchNorm1d` with the running
    statistics. Hoffer et al. normalize large batches (4096) over ghost batches of 128 to
    recover the generalization of small-batch training; 128 is the default here as in theirs.

    Parameters
    ----------
    num_features : int
        C, the number of channels on axis 1.
    virtual_batch_size : int, default 128
        Samples per virtual batch, >= 1 (Keras's name).
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of each virtual batch in the running averages, in [0, 1]; ``None``: cumulative.
    affine : bool, default True
        Learn γ (``weight``) and β (``bias``); ``False``: γ = 1 and β = 0, fixed.
    track_running_stats : bool, default True
        Keep and use the running statistics; ``False``: virtual-batch statistics in every mode.
    gamma_init : initializer, default "ones"
        Initial γ: any spec of :func:`gammabeta.init.get`.
    beta_init : initializer, default "zeros"
        Initial β, likewise.
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ, β and the running statistics.

    Attributes
    ----------
    weight, bias : Parameter or None
        γ and β, shape ``(C,)``; ``None`` when ``affine=False``.
    running_mean, running_var : numpy.ndarray or None
        Buffers ``(C,)`` (starting at 0 and 1); ``None`` when ``track_running_stats=False``.
    num_batches_tracked : numpy.ndarray or None
        Buffer, a 0-d int64 count of virtual batches; ``None`` likewise.
    virtual_batch_size : int
        As given.

    Shape
    -----
    - Input: ``(N, C)`` or ``(N, C, L)``, floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - Hoffer, Hubara & Soudry (2017), "Train longer, generalize better: closing the
      generalization gap in large batch training of neural networks", NeurIPS,
      arXiv:1705.08741.
    - Ioffe & Szegedy (2015), "Batch Normalization", ICML, arXiv:1502.03167.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> gbn = nn.GhostBatchNorm1d(3, virtual_batch_size=4)
    >>> gbn.virtual_batches(10), gbn.virtual_batches(9)  # 9 = 4 + 4 + 1: the 1 joins
    ([(0, 4), (4, 8), (8, 10)], [(0, 4), (4, 9)])
    >>> x = np.random.default_rng(0).normal(2.0, 3.0, size=(10, 3)).astype(np.float32)
    >>> y = gbn(x)
    >>> bool(np.allclose(y[:4].mean(0), 0, atol=1e-5)), int(gbn.num_batches_tracked)
    (True, 3)
    >>> gbn.backward(np.ones_like(y)).shape
    (10, 3)
    >>> bn = nn.BatchNorm1d(3)
    >>> _ = bn.load_state_dict(gbn.state_dict())
    >>> bool(np.array_equal(gbn.eval()(x), bn.eval()(x)))  # evaluation: BatchNorm
    True
    """


class GhostBatchNorm2d(_GhostBatchNorm, BatchNorm2d):
    r"""Ghost batch normalization over ``(N, C, H, W)`` inputs, per channel.

    :class:`GhostBatchNorm1d` for images: in training the batch is split along axis 0 into
    virtual batches of ``virtual_batch_size`` samples (the last shorter; it joins the one
    before only if it would hold one value per channel, i.e. one 1×1 sample), each
    normalized by :class:`BatchNorm2d` with its own mean μ_b and biased variance σ²_b over
    its m_b = n_b·H·W values, each updating the running statistics once (``momentum`` per
    virtual batch; ``num_batches_tracked`` counts virtual batches):

        y = γ · (x − μ_b)/√(σ²_b + ε) + β
        running_var ← (1 − momentum) · running_var + momentum · σ²_b · m_b/(m_b − 1)

    Backward is BatchNorm's closed form per virtual batch (dγ, dβ summed over them). A batch
    of at most ``virtual_batch_size`` samples, and evaluation, are exactly
    :class:`BatchNorm2d`.

    Parameters
    ----------
    num_features : int
        C, the number of channels on axis 1.
    virtual_batch_size : int, default 128
        Samples per virtual batch, >= 1.
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of each virtual batch in the running averages, in [0, 1]; ``None``: cumulative.
    affine : bool, default True
        Learn γ (``weight``) and β (``bias``); ``False``: γ = 1 and β = 0, fixed.
    track_running_stats : bool, default True
        Keep and use the running statistics; ``False``: virtual-batch statistics in every mode.
    gamma_init : initializer, default "ones"
        Initial γ: any spec of :func:`gammabeta.init.get`.
    beta_init : initializer, default "zeros"
        Initial β, likewise.
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ, β and the running statistics.

    Attributes
    ----------
    weight, bias : Parameter or None
        γ and β, shape ``(C,)``; ``None`` when ``affine=False``.
    running_mean, running_var : numpy.ndarray or None
        Buffers ``(C,)`` (starting at 0 and 1); ``None`` when ``track_running_stats=False``.
    num_batches_tracked : numpy.ndarray or None
        Buffer, a 0-d int64 count of virtual batches; ``None`` likewise.
    virtual_batch_size : int
        As given.

    Shape
    -----
    - Input: ``(N, C, H, W)``, floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - Hoffer, Hubara & Soudry (2017), "Train longer, generalize better", NeurIPS,
      arXiv:1705.08741.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> gbn = nn.GhostBatchNorm2d(4, virtual_batch_size=2, momentum=None)
    >>> x = np.random.default_rng(0).standard_normal((5, 4, 3, 3)).astype(np.float32)
    >>> gbn.virtual_batches(5, 3 * 3)  # a last sample of 9 values per channel stays alone
    [(0, 2), (2, 4), (4, 5)]
    >>> gbn(x).shape, int(gbn.num_batches_tracked)
    ((5, 4, 3, 3), 3)
    >>> means = [x[a:b].mean(axis=(0, 2, 3)) for a, b in [(0, 2), (2, 4), (4, 5)]]
    >>> bool(np.allclose(gbn.running_mean, np.mean(means, axis=0), atol=1e-6))
    True
    """
