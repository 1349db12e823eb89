r"""Batch normalization (Ioffe & Szegedy 2015, arXiv:1502.03167) with PyTorch's exact semantics.

The formulas (training, evaluation, running averages, the closed-form backward), the momentum
convention and the defaults are documented on :class:`BatchNorm1d` and :class:`BatchNorm2d`.

Numerics. Statistics are computed in float32 or wider (float16 inputs work; the output keeps
the input's dtype) with a shifted two-pass algorithm: the first sample ``K`` of each channel
is subtracted before the mean, so a large common offset (1e4 and beyond) keeps its precision;
E[x²] − E[x]² is never used. Sums are accumulated in float64 (short partial sums, along one
row of a channel, in the compute dtype). Error bounds, tested in ``tests/test_numerics.py``
against float64 (offsets 0 … 1e6, standard deviations 0 and 1e-4 … 1e4, N = 2 and 64)::

    dtype     y, dγ, dβ, running stats (relative)    dx (relative to |dy|·|γ|/√(σ²+ε))
    float32   2e-6   (measured ≤ 3e-7)                2e-6
    float16   1e-3   (one float16 rounding of y)      1e-3

(running_mean relative to momentum · max|x|). A constant channel gives exactly β and finite
gradients.

Implementation. The input is viewed as ``(N, C, L)``, everything written in ``x − K`` and
``d = μ − K``: ``y = ((x − K) − d) · a + β`` and ``dx = a · dy + b · ((x − K) − d) + c``
with ``a = γ/√(σ²+ε)``, ``b = −a · Σ(dy·x̂) / (m √(σ²+ε))``, ``c = −a · Σdy / m``: four
passes over memory per training step. Forward caches a reference to ``x`` (as PyTorch does),
not a new x̂; backward releases it (a second backward needs a new forward). With Numba the
forward and the backward are one compiled call each (:mod:`gammabeta.nn._kernels`, chosen by
:func:`gammabeta.backend.kernels`), which reuses this layer's previous output (and dx) buffer
when nothing references it any more (checked by its reference count: an output you keep is
never overwritten). Otherwise (or with ``GAMMABETA_JIT=off``) the same formulas run as NumPy
array operations (global two-pass statistics, BLAS GEMV sums, one temporary of the input's
size).
"""

from __future__ import annotations

from ._bn_base import _BatchNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "_BatchNorm"]


class BatchNorm1d(_BatchNorm):
    """Batch normalization over ``(N, C)`` or ``(N, C, L)`` inputs, per channel, as in PyTorch.

    Batch normalization works differently in training and in evaluation. Statistics are per
    channel (axis 1), over that channel's m values in the batch: m = N, or N·L.

    **In training** (after ``train()``, the default; and in every mode when
    ``track_running_stats=False``) the layer normalizes with the current batch's statistics
    (m > 1 is required):

        μ  = (1/m) Σ x                  batch mean
        σ² = (1/m) Σ (x − μ)²           biased batch variance (used to normalize)
        x̂  = (x − μ) / √(σ² + ε)
        y  = γ · x̂ + β

    and, in training with ``track_running_stats=True``, updates its buffers:

        running_mean ← (1 − momentum) · running_mean + momentum · μ
        running_var  ← (1 − momentum) · running_var  + momentum · σ² · m/(m − 1)   (unbiased)
        num_batches_tracked ← num_batches_tracked + 1

    ``momentum`` is the weight of the *new* batch (PyTorch's convention; Keras's
    ``momentum=0.99`` is ``momentum=0.01`` here). ``momentum=None`` uses 1/num_batches_tracked
    instead: a cumulative moving average, every batch so far weighted equally.

    **In evaluation** (after ``eval()``, with ``track_running_stats=True``) the layer is a
    fixed per-channel affine map and leaves its buffers alone:

        y = γ · (x − running_mean) / √(running_var + ε) + β

    Backward, closed form (Σ over the channel's m values; dγ and dβ are added to
    ``weight.grad`` and ``bias.grad``):

        dβ = Σ dy,      dγ = Σ dy · x̂
        dx = γ / √(σ² + ε) · (dy − dβ/m − x̂ · dγ/m)      (batch statistics: Σ dx = 0)
        dx = γ · dy / √(running_var + ε)                  (eval: the statistics are constants)

    Defaults as in PyTorch: ``eps=1e-5``, ``momentum=0.1``, γ = 1, β = 0, running_mean = 0,
    running_var = 1. Numerics and implementation: see :mod:`gammabeta.nn.batchnorm`.

    Parameters
    ----------
    num_features : int
        C, the number of channels (features) on axis 1.
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of the new batch in the running averages, in [0, 1]; ``None``: cumulative.
    affine : bool, default True
        Learn γ (``weight``) and β (``bias``); ``False``: γ = 1 and β = 0, fixed.
    track_running_stats : bool, default True
        Keep the running statistics and use them in evaluation; ``False``: no buffers, batch
        statistics in every mode.
    gamma_init : initializer, default "ones"
        Initial γ: any spec of :func:`gammabeta.init.get` (``"uniform"``, ``0.5``, ``"dcgan"``).
    beta_init : initializer, default "zeros"
        Initial β, likewise.
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ, β and the running statistics.

    Attributes
    ----------
    weight : Parameter or None
        γ, shape ``(C,)``; ``None`` when ``affine=False``.
    bias : Parameter or None
        β, shape ``(C,)``; ``None`` when ``affine=False``.
    running_mean : numpy.ndarray or None
        Buffer ``(C,)``, starts at 0; ``None`` when ``track_running_stats=False``.
    running_var : numpy.ndarray or None
        Buffer ``(C,)`` of unbiased variances, starts at 1; ``None`` likewise.
    num_batches_tracked : numpy.ndarray or None
        Buffer, a 0-d int64 count of training batches; ``None`` likewise.

    Shape
    -----
    - Input: ``(N, C)`` or ``(N, C, L)``, floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network Training by
      Reducing Internal Covariate Shift", ICML, arXiv:1502.03167.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import BatchNorm1d
    >>> bn = BatchNorm1d(3)
    >>> x = np.random.default_rng(0).normal(5.0, 2.0, size=(64, 3)).astype(np.float32)
    >>> y = bn(x)  # training: the batch's statistics
    >>> y.shape, bool(np.allclose(y.mean(0), 0, atol=1e-5)), bool(np.allclose(y.std(0), 1))
    ((64, 3), True, True)
    >>> bool(np.allclose(bn.running_mean, 0.9 * 0 + 0.1 * x.mean(0)))
    True
    >>> bool(np.allclose(bn.running_var, 0.9 * 1 + 0.1 * x.var(0, ddof=1)))  # unbiased
    True
    >>> dx = bn.backward(np.random.default_rng(1).standard_normal((64, 3)).astype(np.float32))
    >>> bool(np.allclose(dx.sum(0), 0, atol=1e-4)), int(bn.num_batches_tracked)
    (True, 1)
    >>> bn.eval()(x[:2]).shape  # evaluation: the running statistics, any batch size
    (2, 3)
    """

    _ndims = (2, 3)
    _layout = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization over ``(N, C, H, W)`` inputs, per channel, as in PyTorch.

    Statistics are per channel (axis 1) over batch and space: m = N·H·W values. **In
    training** (and in every mode when ``track_running_stats=False``) the layer normalizes
    with the batch's mean μ and biased variance σ² (m > 1 is required); in training with
    ``track_running_stats=True`` it also updates its buffers, ``momentum`` weighing the *new*
    batch (``momentum=None``: 1/num_batches_tracked, a cumulative average):

        μ = (1/m) Σ x,   σ² = (1/m) Σ (x − μ)²,   x̂ = (x − μ) / √(σ² + ε),   y = γ · x̂ + β
        running_mean ← (1 − momentum) · running_mean + momentum · μ
        running_var  ← (1 − momentum) · running_var  + momentum · σ² · m/(m − 1)   (unbiased)
        num_batches_tracked ← num_batches_tracked + 1

    **In evaluation** (``eval()`` with ``track_running_stats=True``) a fixed affine map:

        y = γ · (x − running_mean) / √(running_var + ε) + β

    Backward, closed form (Σ over the channel's m values):

        dβ = Σ dy,   dγ = Σ dy · x̂,   dx = γ / √(σ² + ε) · (dy − dβ/m − x̂ · dγ/m)
        eval: dx = γ · dy / √(running_var + ε)

    Defaults as in PyTorch: ``eps=1e-5``, ``momentum=0.1``, γ = 1, β = 0, running_mean = 0,
    running_var = 1. Everything else as :class:`BatchNorm1d`.

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

    Attributes
    ----------
    weight, bias : Parameter or None
        γ and β, shape ``(C,)``; ``None`` when ``affine=False``.
    running_mean, running_var : numpy.ndarray or None
        Buffers ``(C,)`` (starting at 0 and 1); ``None`` when ``track_running_stats=False``.
    num_batches_tracked : numpy.ndarray or None
        Buffer, a 0-d int64 count of training batches; ``None`` likewise.

    Shape
    -----
    - Input: ``(N, C, H, W)``, floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network Training by
      Reducing Internal Covariate Shift", ICML, arXiv:1502.03167.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import BatchNorm2d
    >>> rng = np.random.default_rng(0)
    >>> bn = BatchNorm2d(4, momentum=None)  # a cumulative average of the batches
    >>> a, b = (rng.standard_normal((8, 4, 5, 5)).astype(np.float32) for _ in range(2))
    >>> bn(a).shape, bn(b).shape
    ((8, 4, 5, 5), (8, 4, 5, 5))
    >>> mean_ab = (a.mean(axis=(0, 2, 3)) + b.mean(axis=(0, 2, 3))) / 2
    >>> bool(np.allclose(bn.running_mean, mean_ab, atol=1e-6)), int(bn.num_batches_tracked)
    (True, 2)
    >>> bn.eval()
    BatchNorm2d(4, momentum=None)
    >>> ref = (a - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + 1e-5)
    >>> bool(np.allclose(bn(a), ref, atol=1e-5))  # γ = 1, β = 0
    True
    """

    _ndims = (4,)
    _layout = "4-D (N, C, H, W)"
