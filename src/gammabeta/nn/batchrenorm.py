r"""Batch renormalization (Ioffe 2017, arXiv:1702.03275): BatchNorm whose training output is
corrected toward the running statistics by two per-channel constants, r and d.

The layers subclass :class:`~gammabeta.nn.BatchNorm1d` / :class:`~gammabeta.nn.BatchNorm2d`:
evaluation, the state dict (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``), ``load_state_dict``'s checks, export and folding are BatchNorm's.
Only the training forward and its backward differ; they run as NumPy array operations on the
``(N, C, L)`` view, with the same shifted two-pass statistics as BatchNorm.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import _args
from ._bn_base import (
    _affine,
    _BatchNorm,
    _centered,
    _chan_dot,
    _chan_sum,
    _col,
    _compute_dtype,
    _stats,
)
from .batchnorm import BatchNorm1d, BatchNorm2d
from .module import is_grad_enabled

__all__ = ["BatchRenorm1d", "BatchRenorm2d"]

#: Defaults of the r/d schedule, in training batches (see the class docstrings).
WARMUP_STEPS, RAMP_STEPS = 200, 800


class _BatchRenorm(_BatchNorm):
    """Shared implementation of :class:`BatchRenorm1d` and :class:`BatchRenorm2d`."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.01,
                 affine: bool = True, r_max: float = 3.0, d_max: float = 5.0,
                 warmup_steps: int = WARMUP_STEPS, ramp_steps: int = RAMP_STEPS,
                 gamma_init="ones", beta_init="zeros", rng=None, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, True, gamma_init, beta_init,
                         rng, dtype)
        name = type(self).__name__
        self.r_max = _args.real(name, "r_max", r_max, lo=1.0)
        self.d_max = _args.real(name, "d_max", d_max, lo=0.0)
        self.warmup_steps = _args.integer(name, "warmup_steps", warmup_steps, minimum=0)
        self.ramp_steps = _args.integer(name, "ramp_steps", ramp_steps, minimum=0)

    def extra_repr(self) -> str:
        s = f"{self.num_features}"
        for key, default in (("eps", 1e-5), ("momentum", 0.01), ("r_max", 3.0), ("d_max", 5.0),
                             ("warmup_steps", WARMUP_STEPS), ("ramp_steps", RAMP_STEPS)):
            value = getattr(self, key)
            if value != default or (value is None) != (default is None):
                s += f", {key}={value}"
        return s + ("" if self.affine else ", affine=False")

    def renorm_limits(self, batch: int | None = None) -> tuple[float, float]:
        """``(r_max_t, d_max_t)`` for the ``batch``-th training batch (1-based; default: the
        next one, ``num_batches_tracked + 1``).

        With ``w = warmup_steps``, ``R = ramp_steps`` and ``p = clip((batch − w) / R, 0, 1)``
        (for ``R = 0``: ``p = 1`` once ``batch > w``, else 0)::

            r_max_t = 1 + (r_max − 1) · p,      d_max_t = d_max · p
        """
        n = int(self.num_batches_tracked) + 1 if batch is None else int(batch)
        w, ramp = self.warmup_steps, self.ramp_steps
        if n <= w:
            p = 0.0
        elif ramp == 0:
            p = 1.0
        else:
            p = min(1.0, (n - w) / ramp)
        return 1.0 + (self.r_max - 1.0) * p, self.d_max * p

    # ----- forward ---------------------------------------------------------------------------
    def forward(self, x):
        if not self.training:
            return super().forward(x)  # BatchNorm's evaluation: the running statistics
        self._check_input(x)
        cdt = _compute_dtype(x.dtype, self._param_dtype())
        x3 = x.astype(cdt, copy=False).reshape(x.shape[0], self.num_features, -1)  # (N, C, L)
        m = x3.shape[0] * x3.shape[2]
        if m <= 1:
            raise ShapeError(f"{self.describe()}: expected more than 1 value per channel "
                             f"when training, got input of shape {x.shape}")
        r_lim, d_lim = self.renorm_limits()
        k, d, var, xc = _stats(np, x3)  # batch mean μ_B = K + d, biased variance var
        inv_std = 1.0 / np.sqrt(var + self.eps)  # 1/σ_B, float64 (as BatchNorm computes it)
        sigma = np.sqrt(self.running_var.astype(np.float64) + self.eps)
        mu_b = k.astype(np.float64) + d
        r = np.clip(np.sqrt(var + self.eps) / sigma, 1.0 / r_lim, r_lim)
        dd = np.clip((mu_b - self.running_mean.astype(np.float64)) / sigma, -d_lim, d_lim)
        self._update_running(k, d, var, m)  # after r and d: they use the previous statistics
        # y = γ · ((x − μ_B)/σ_B · r + d) + β = (x − μ_B) · (γ r/σ_B) + (γ d + β)
        scale, shift = inv_std * r, dd
        if self.affine:
            gamma = self.weight.data
            scale, shift = gamma * scale, self.bias.data + gamma * dd
        y3 = _affine(np, x3, k, d, scale, shift, out=xc)
        self._cache = _RenormCache(x3, k, d, inv_std, r, dd, m, x.shape, x.dtype) \
            if is_grad_enabled() else None
        return y3.reshape(x.shape).astype(x.dtype, copy=False)

    # ----- backward --------------------------------------------------------------------------
    def backward(self, dy):
        cache = self._saved()
        if not isinstance(cache, _RenormCache):
            return super().backward(dy)  # evaluation: BatchNorm's backward
        if tuple(dy.shape) != tuple(cache.shape):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {cache.shape}")
        self._cache = None
        x3, inv_std, r, m = cache.x3, cache.inv_std, cache.r, cache.m
        dy3 = dy.astype(x3.dtype, copy=False).reshape(x3.shape)
        xc = _centered(np, x3, cache.k, cache.d)
        sdy, sdx = _chan_sum(np, dy3), _chan_dot(np, dy3, xc)
        dgamma0 = sdx * inv_std  # Σ dy · x̂₀
        self._accumulate(sdy, r * dgamma0 + cache.dd * sdy)  # Σ dy · (r x̂₀ + d)
        g = inv_std * r
        if self.affine:
            g = self.weight.data * g
        # r and d are constants: dx = γ r/σ_B · (dy − Σdy/m − x̂₀ · Σ(dy·x̂₀)/m)
        dx3 = xc
        dx3 *= _col(-g * inv_std * dgamma0 / m, x3.dtype)
        dx3 += _col(-g * sdy / m, x3.dtype)
        dx3 += dy3 * _col(g, x3.dtype)
        return dx3.reshape(cache.shape).astype(cache.dtype, copy=False)


class _RenormCache:
    """What a training forward leaves for backward: the input view, its shifted statistics,
    ``r`` and ``d`` (float64, per channel)."""

    __slots__ = ("x3", "k", "d", "inv_std", "r", "dd", "m", "shape", "dtype")

    def __init__(self, x3, k, d, inv_std, r, dd, m, shape, dtype):
        self.x3, self.k, self.d, self.inv_std, self.r = x3, k, d, inv_std, r
        self.dd, self.m, self.shape, self.dtype = dd, m, shape, dtype


class BatchRenorm1d(_BatchRenorm, BatchNorm1d):
    r"""Batch renormalization over ``(N, C)`` or ``(N, C, L)`` inputs, per channel.

    BatchNorm's training output depends on the batch it is in, and differs from its
    evaluation output; batch renormalization (Ioffe 2017) corrects the batch-normalized value
    toward what the running statistics would give, with two per-channel factors that are
    *constants* for backpropagation (stop-gradient). **In training**, over the channel's m
    values (m = N or N·L, m > 1 required):

        μ_B = (1/m) Σ x,   σ_B = √(var_B + ε)   (var_B the biased batch variance)
        σ   = √(running_var + ε),   μ = running_mean              (before this batch's update)
        r   = clip(σ_B / σ, 1/r_max_t, r_max_t),   d = clip((μ_B − μ) / σ, −d_max_t, d_max_t)
        x̂   = (x − μ_B) / σ_B · r + d,   y = γ · x̂ + β

    then the running statistics are updated exactly as BatchNorm's (``momentum`` weighs the new
    batch; ``None``: 1/num_batches_tracked, a cumulative average):

        running_mean ← (1 − momentum) · running_mean + momentum · μ_B
        running_var  ← (1 − momentum) · running_var  + momentum · var_B · m/(m − 1)   (unbiased)
        num_batches_tracked ← num_batches_tracked + 1

    (The paper averages σ_B itself; keeping BatchNorm's unbiased variance keeps the state dict,
    the evaluation, ONNX export and folding those of BatchNorm.) **In evaluation** the layer
    *is* :class:`BatchNorm1d`: ``y = γ · (x − running_mean) / √(running_var + ε) + β``.

    Backward, closed form, r and d constant, x̂₀ = (x − μ_B)/σ_B (Σ over the channel):

        dβ = Σ dy,   dγ = Σ dy · x̂,   dx = γ r / σ_B · (dy − Σdy/m − x̂₀ · Σ(dy · x̂₀)/m)

    Schedule (the paper's, configurable). For the n-th training batch (n =
    ``num_batches_tracked + 1``, so a loaded checkpoint resumes it), ``p = 0`` while
    ``n ≤ warmup_steps``, then ``p = min(1, (n − warmup_steps)/ramp_steps)``:
    ``r_max_t = 1 + (r_max − 1)·p``, ``d_max_t = d_max·p`` (:meth:`renorm_limits`). During the
    warm-up r = 1 and d = 0: the layer computes exactly BatchNorm. ``warmup_steps=0,
    ramp_steps=0`` applies r_max and d_max from the first batch; ``r_max=1, d_max=0`` is
    BatchNorm throughout (:meth:`reset_running_stats` restarts the schedule).

    Defaults. On ImageNet the paper warms up for 5k steps, then reaches r_max = 3 at 40k and
    d_max = 5 at 25k steps. Runs here are usually a few thousand
    steps, so the defaults are ``warmup_steps=200`` and ``ramp_steps=800`` (full limits from
    batch 1000): r and d compare each batch with the running averages, which must first
    forget their initial 0 and 1; with ``momentum=0.01`` (a memory of ~100 batches) the
    initial values still weigh 13% after 200 batches but under 0.3% after 600, when the ramp
    has only reached r_max_t = 2, d_max_t = 2.5. Scale both with the length of your run.

    Parameters
    ----------
    num_features : int
        C, the number of channels on axis 1.
    eps : float, default 1e-5
        ε > 0, added to the variances before the square roots (batch and running).
    momentum : float or None, default 0.01
        Weight of the new batch in the running averages, in [0, 1]; ``None``: cumulative.
        Slower than BatchNorm's 0.1 (Keras's ``momentum=0.99``): the running statistics enter
        r and d during training, so their batch-to-batch noise reaches the output.
    affine : bool, default True
        Learn γ (``weight``) and β (``bias``); ``False``: γ = 1 and β = 0, fixed.
    r_max : float, default 3.0
        Final limit of r, >= 1 (the paper's value).
    d_max : float, default 5.0
        Final limit of |d|, >= 0 (the paper's value).
    warmup_steps : int, default 200
        Training batches with r_max_t = 1, d_max_t = 0 (plain BatchNorm), >= 0.
    ramp_steps : int, default 800
        Training batches over which the limits then grow linearly to r_max and d_max, >= 0.
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
    running_mean, running_var : numpy.ndarray
        Buffers ``(C,)``, starting at 0 and 1; running_var holds unbiased variances.
    num_batches_tracked : numpy.ndarray
        Buffer, a 0-d int64 count of training batches; it drives the r/d schedule.
    r_max, d_max, warmup_steps, ramp_steps : float or int
        The schedule's settings, as given.

    Shape
    -----
    - Input: ``(N, C)`` or ``(N, C, L)``, floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - Ioffe (2017), "Batch Renormalization: Towards Reducing Minibatch Dependence in
      Batch-Normalized Models", NeurIPS, arXiv:1702.03275.
    - Ioffe & Szegedy (2015), "Batch Normalization", ICML, arXiv:1502.03167.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> layer = nn.BatchRenorm1d(3, warmup_steps=0, ramp_steps=0)  # full limits at once
    >>> layer.renorm_limits()
    (3.0, 5.0)
    >>> x = np.random.default_rng(0).normal(4.0, 2.0, size=(32, 3)).astype(np.float32)
    >>> y = layer(x)  # running stats 0 and 1: r = σ_B ≈ 2, d = μ_B ≈ 4, neither clipped
    >>> bool(np.allclose(y, x, atol=1e-5))  # so x̂ = (x − running_mean)/√(running_var + ε)
    True
    >>> layer.backward(np.ones_like(y)).shape, int(layer.num_batches_tracked)
    ((32, 3), 1)
    >>> bn_like = nn.BatchRenorm1d(3)  # first 200 batches: exactly BatchNorm
    >>> bn = nn.BatchNorm1d(3, momentum=0.01)
    >>> bool(np.array_equal(bn_like(x), bn(x)))
    True
    >>> bn_like.renorm_limits(600)  # halfway up the ramp
    (2.0, 2.5)
    """


class BatchRenorm2d(_BatchRenorm, BatchNorm2d):
    r"""Batch renormalization over ``(N, C, H, W)`` inputs, per channel.

    :class:`BatchRenorm1d` over m = N·H·W values per channel. In training, with the batch's
    μ_B, σ_B = √(var_B + ε) and σ = √(running_var + ε), μ = running_mean:

        r = clip(σ_B / σ, 1/r_max_t, r_max_t),   d = clip((μ_B − μ) / σ, −d_max_t, d_max_t)
        y = γ · ((x − μ_B) / σ_B · r + d) + β          (r, d constants in backward)
        dx = γ r / σ_B · (dy − Σdy/m − x̂₀ · Σ(dy · x̂₀)/m),   x̂₀ = (x − μ_B)/σ_B

    and the running statistics move as BatchNorm's (unbiased var_B · m/(m − 1)). In
    evaluation it is :class:`BatchNorm2d`. The limits follow the schedule of
    :class:`BatchRenorm1d` (:meth:`renorm_limits`): r_max_t = 1, d_max_t = 0 for
    ``warmup_steps`` batches, then a linear ramp to r_max and d_max over ``ramp_steps``.

    Parameters
    ----------
    num_features : int
        C, the number of channels on axis 1.
    eps : float, default 1e-5
        ε > 0, added to the variances before the square roots (batch and running).
    momentum : float or None, default 0.01
        Weight of the new batch in the running averages, in [0, 1]; ``None``: cumulative.
        Slower than BatchNorm's 0.1 (Keras's ``momentum=0.99``): the running statistics enter
        r and d during training, so their batch-to-batch noise reaches the output.
    affine : bool, default True
        Learn γ (``weight``) and β (``bias``); ``False``: γ = 1 and β = 0, fixed.
    r_max : float, default 3.0
        Final limit of r, >= 1 (the paper's value).
    d_max : float, default 5.0
        Final limit of |d|, >= 0 (the paper's value).
    warmup_steps : int, default 200
        Training batches with r_max_t = 1, d_max_t = 0 (plain BatchNorm), >= 0.
    ramp_steps : int, default 800
        Training batches over which the limits then grow linearly to r_max and d_max, >= 0.
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
    running_mean, running_var : numpy.ndarray
        Buffers ``(C,)``, starting at 0 and 1; running_var holds unbiased variances.
    num_batches_tracked : numpy.ndarray
        Buffer, a 0-d int64 count of training batches; it drives the r/d schedule.
    r_max, d_max, warmup_steps, ramp_steps : float or int
        The schedule's settings, as given.

    Shape
    -----
    - Input: ``(N, C, H, W)``, floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - Ioffe (2017), "Batch Renormalization: Towards Reducing Minibatch Dependence in
      Batch-Normalized Models", NeurIPS, arXiv:1702.03275.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> layer = nn.BatchRenorm2d(4, r_max=2.0, d_max=1.0, warmup_steps=10, ramp_steps=10)
    >>> [layer.renorm_limits(n) for n in (10, 11, 15, 20, 99)]
    [(1.0, 0.0), (1.1, 0.1), (1.5, 0.5), (2.0, 1.0), (2.0, 1.0)]
    >>> x = np.random.default_rng(0).standard_normal((8, 4, 5, 5)).astype(np.float32)
    >>> layer(x).shape, list(layer.state_dict())
    ((8, 4, 5, 5), ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'])
    >>> bn = nn.BatchNorm2d(4)
    >>> _ = bn.load_state_dict(layer.state_dict())
    >>> bool(np.array_equal(layer.eval()(x), bn.eval()(x)))  # evaluation is BatchNorm's
    True
    """
