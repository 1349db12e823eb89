r"""Batch Normalization (Ioffe & Szegedy 2015, arXiv:1502.03167) with PyTorch's exact semantics.

For an input with channels on axis 1, statistics are taken per channel over every other axis
(the batch and, for ``(N, C, L)`` or ``(N, C, H, W)``, the positions); ``m`` is their count.

Training (or ``track_running_stats=False``)::

    μ   = (1/m) Σ x                                  batch mean
    σ²  = (1/m) Σ (x − μ)²                           biased batch variance (used to normalize)
    x̂   = (x − μ) / √(σ² + ε)
    y   = γ · x̂ + β

    running_mean ← (1 − α) · running_mean + α · μ
    running_var  ← (1 − α) · running_var  + α · σ² · m / (m − 1)     (unbiased!)
    num_batches_tracked ← num_batches_tracked + 1

with α = ``momentum`` (0.1: the weight of the *new* batch; Keras's 0.99 is 1 − α), or
α = 1 / num_batches_tracked when ``momentum=None`` (a cumulative moving average).

Evaluation (``track_running_stats=True``)::

    y = γ · (x − running_mean) / √(running_var + ε) + β          an affine map per channel

Backward, closed form (training / batch statistics)::

    dβ = Σ dy        dγ = Σ dy · x̂
    dx = γ / √(σ² + ε) · (dy − dβ / m − x̂ · dγ / m)

so Σ dx = 0 and Σ dx · x̂ = 0 over each channel. In evaluation the statistics are constants:
``dx = dy · γ / √(running_var + ε)``.

Statistics are computed in float32 or wider (float16 inputs work; the output keeps the input's
dtype), with a shifted two-pass algorithm: the first sample of each channel is subtracted before
the mean, so inputs with a large common offset (1e4 and beyond) keep their precision; E[x²] − E[x]²
is never used. Defaults: ``eps=1e-5``, ``momentum=0.1``, γ = 1 (``gamma_init="ones"``),
β = 0 (``beta_init="zeros"``), ``running_mean`` = 0, ``running_var`` = 1.
"""

from __future__ import annotations

import numpy as np

from .. import init
from ..backend import compute_dtype, namespace
from ..errors import ConfigError, ShapeError
from .module import Module, Parameter, check_float_input, is_grad_enabled

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """Shared implementation; subclasses only say which input ranks they accept."""

    _ndims: tuple[int, ...] = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, gamma_init="ones",
                 beta_init="zeros", rng=None, dtype=np.float32):
        super().__init__()
        if int(num_features) < 1:
            raise ConfigError(f"{type(self).__name__}: num_features={num_features}; expected >= 1")
        if eps <= 0:
            raise ConfigError(f"{type(self).__name__}: eps={eps}; expected a positive number")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"{type(self).__name__}: momentum={momentum}; expected a number "
                              "in [0, 1] (PyTorch's convention: the weight of the new batch) or "
                              "None (cumulative average)")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = (self.num_features,)
        if self.affine:
            rng = np.random.default_rng() if rng is None else rng
            self.weight = Parameter(init.initialize(gamma_init, c, rng, dtype=dtype,
                                                    what=f"{type(self).__name__}.weight (γ)"))
            self.bias = Parameter(init.initialize(beta_init, c, rng, dtype=dtype,
                                                  what=f"{type(self).__name__}.bias (β)"))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype=dtype))
            self.register_buffer("running_var", np.ones(c, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._cache = None

    def extra_repr(self) -> str:
        s = f"{self.num_features}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        if self.momentum != 0.1:
            s += f", momentum={self.momentum}"
        if not self.affine:
            s += ", affine=False"
        if not self.track_running_stats:
            s += ", track_running_stats=False"
        return s

    def reset_running_stats(self) -> None:
        """running_mean ← 0, running_var ← 1, num_batches_tracked ← 0."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked = np.array(0, dtype=np.int64)

    # ----- checks ----------------------------------------------------------------------------
    def _check_input(self, x):
        check_float_input(self, x)
        if x.ndim not in self._ndims:
            raise ShapeError(f"{self.describe()}: got a {x.ndim}-D input of shape {x.shape}, "
                             f"expected {self._layout}")
        if x.shape[1] != self.num_features:
            raise ShapeError(f"{self.describe()}: got {x.shape[1]} channels (input shape "
                             f"{x.shape}), expected {self.num_features} channels on axis 1")

    # ----- forward ---------------------------------------------------------------------------
    def forward(self, x):
        self._check_input(x)
        xp = namespace(x)
        c = self.num_features
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, c) + (1,) * (x.ndim - 2)
        cdt = compute_dtype(np.result_type(x.dtype, self._param_dtype()))
        m = x.size // c
        use_batch = self.training or not self.track_running_stats
        xf = x.astype(cdt, copy=False)
        if use_batch:
            if m <= 1:
                raise ShapeError(f"{self.describe()}: expected more than 1 value per channel "
                                 f"when training, got input of shape {x.shape}")
            # shifted two-pass statistics: subtract one sample per channel first (stable with
            # large offsets), then the mean of the shifted data, then the biased variance
            shift = xf[(0, slice(None)) + (0,) * (x.ndim - 2)].reshape(bshape)
            xc = xf - shift
            dmean = xc.mean(axis=axes, keepdims=True)
            xc -= dmean
            var = (xc * xc).mean(axis=axes)
            mean = (shift + dmean).reshape(c)
            if self.training and self.track_running_stats:
                self._update_running(mean, var, m)
        else:
            mean = self.running_mean.astype(cdt, copy=False)
            var = self.running_var.astype(cdt, copy=False)
            xc = xf - mean.reshape(bshape)
        inv_std = 1.0 / xp.sqrt(var + cdt.type(self.eps))
        xhat = xc
        xhat *= inv_std.reshape(bshape)
        if self.affine:
            y = xhat * self.weight.data.astype(cdt, copy=False).reshape(bshape)
            y += self.bias.data.astype(cdt, copy=False).reshape(bshape)
        else:
            y = xhat.copy()
        self._cache = (xhat, inv_std, use_batch, m, axes, bshape, x.dtype) \
            if is_grad_enabled() else None
        return y.astype(x.dtype, copy=False)

    def _param_dtype(self):
        if self.affine:
            return self.weight.data.dtype
        if self.track_running_stats:
            return self.running_mean.dtype
        return np.float32

    def _update_running(self, mean, var, m: int) -> None:
        self.num_batches_tracked = np.asarray(self.num_batches_tracked + 1, dtype=np.int64)
        if self.momentum is None:
            alpha = 1.0 / float(self.num_batches_tracked)
        else:
            alpha = float(self.momentum)
        unbiased = var * (m / (m - 1))
        rm, rv = self.running_mean, self.running_var
        rm[...] = (1 - alpha) * rm + alpha * mean
        rv[...] = (1 - alpha) * rv + alpha * unbiased

    # ----- backward --------------------------------------------------------------------------
    def backward(self, dy):
        xhat, inv_std, use_batch, m, axes, bshape, in_dtype = self._saved()
        if dy.shape != xhat.shape:
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {xhat.shape}")
        dyf = dy.astype(xhat.dtype, copy=False)
        dbeta = dyf.sum(axis=axes)
        dgamma = (dyf * xhat).sum(axis=axes)
        if self.affine:
            self.weight.accumulate(dgamma)
            self.bias.accumulate(dbeta)
            g = self.weight.data.astype(xhat.dtype, copy=False) * inv_std
        else:
            g = inv_std
        if use_batch:
            dx = xhat * (dgamma / m).reshape(bshape)
            dx += (dbeta / m).reshape(bshape)
            xp = namespace(dyf)
            dx = xp.subtract(dyf, dx, out=dx)
            dx *= g.reshape(bshape)
        else:
            dx = dyf * g.reshape(bshape)
        return dx.astype(in_dtype, copy=False)


class BatchNorm1d(_BatchNorm):
    """Batch normalization over ``(N, C)`` or ``(N, C, L)`` inputs; see the module docstring.

    Parameters
    ----------
    num_features : int
        C, the number of channels (features).
    eps : float, default 1e-5
        Added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of the new batch in the running averages; ``None``: cumulative average.
    affine : bool, default True
        Learn γ (``weight``) and β (``bias``); without them γ = 1, β = 0 fixed.
    track_running_stats : bool, default True
        Keep ``running_mean``/``running_var`` for eval; ``False`` always uses batch statistics.
    gamma_init, beta_init : initializer, default "ones", "zeros"
        Any spec of :func:`gammabeta.init.get` (e.g. ``"uniform"``, ``0.5``, ``"dcgan"``).
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers.
    """

    _ndims = (2, 3)
    _layout = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization over ``(N, C, H, W)``: per channel over batch and space.

    Same parameters, formulas and defaults as :class:`BatchNorm1d`.
    """

    _ndims = (4,)
    _layout = "4-D (N, C, H, W)"
