r"""Instance normalization (Ulyanov, Vedaldi & Lempitsky 2016, arXiv:1607.08022) with
PyTorch's exact semantics, running statistics included.

The formulas are documented on :class:`InstanceNorm1d` and :class:`InstanceNorm2d`. With the
sample's own statistics the layer uses the row machinery of :mod:`gammabeta.nn.layernorm`
(one row per sample and channel, numerics and kernels as described there); with running
statistics (evaluation, ``track_running_stats=True``) it is a fixed per-channel affine map,
computed like BatchNorm's evaluation (:mod:`gammabeta.nn._bn_base`).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import namespace
from ..errors import ShapeError
from . import _args, _state
from ._bn_base import _affine, _centered, _chan_dot, _chan_sum, _col, _compute_dtype
from .layernorm import _RowNorm
from .module import check_float_input, is_grad_enabled

__all__ = ["InstanceNorm1d", "InstanceNorm2d"]


class _InstanceNorm(_RowNorm):
    """Shared implementation; subclasses only say which input ranks they accept."""

    _batched_ndim = 0
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, weight_init="ones",
                 bias_init="zeros", rng=None, dtype=np.float32, *, bias: bool = True):
        super().__init__()
        name = type(self).__name__
        self.num_features = _args.integer(name, "num_features", num_features)
        self.eps = _args.real(name, "eps", eps, lo=0.0, lo_open=True)
        self.momentum = _args.real(name, "momentum", momentum, 0.0, 1.0, allow_none=True,
                                   note=" (the new batch's weight; None: 0, as in PyTorch)")
        self.affine = _args.boolean(name, "affine", affine)
        self.track_running_stats = _args.boolean(name, "track_running_stats",
                                                 track_running_stats)
        bias = _args.boolean(name, "bias", bias)
        c = (self.num_features,)
        self._init_affine(c, self.affine, bias, weight_init, bias_init, rng, dtype)
        dtype = _args.float_dtype(name, dtype)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype=dtype))
            self.register_buffer("running_var", np.ones(c, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def extra_repr(self) -> str:
        s = f"{self.num_features}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        if self.momentum != 0.1:
            s += f", momentum={self.momentum}"
        if self.affine:
            s += ", affine=True" + (", bias=False" if self._parameters["bias"] is None else "")
        if self.track_running_stats:
            s += ", track_running_stats=True"
        return s

    def reset_running_stats(self) -> None:
        """running_mean ← 0, running_var ← 1, num_batches_tracked ← 0."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked = np.array(0, dtype=np.int64)

    def _check_state(self, prefix: str, state) -> str | None:
        """Loaded values: ``running_var`` >= 0, ``num_batches_tracked`` a whole number >= 0."""
        return _state.negative(state, prefix + "running_var", "variances") \
            or _state.count(state, prefix + "num_batches_tracked")

    def _param_dtype(self):
        if self.affine:
            return self._parameters["weight"].data.dtype
        if self.track_running_stats:
            return self._buffers["running_mean"].dtype
        return np.dtype(np.float32)

    # ----- forward ---------------------------------------------------------------------------
    def forward(self, x):
        check_float_input(self, x)
        nd = self._batched_ndim
        if x.ndim not in (nd, nd - 1):
            raise ShapeError(f"{self.describe()}: got a {x.ndim}-D input of shape "
                             f"{tuple(x.shape)}, expected {self._layout}")
        axis = 1 if x.ndim == nd else 0  # no batch axis: PyTorch's unbatched input
        c = self.num_features
        if x.shape[axis] != c:
            raise ShapeError(f"{self.describe()}: got {x.shape[axis]} channels (input shape "
                             f"{tuple(x.shape)}), expected {c} channels on axis {axis}")
        n = x.shape[0] if axis else 1
        length = math.prod(x.shape[axis + 1:])
        if self.training or not self.track_running_stats:
            if length <= 1:
                raise ShapeError(f"{self.describe()}: expected more than 1 spatial element "
                                 f"when using the input's statistics (training, or "
                                 f"track_running_stats=False), got input of shape "
                                 f"{tuple(x.shape)}")
            y, mean, var = self._rows_forward(x, n * c, c, length, length)
            if self.training and self.track_running_stats and n > 0:
                self._update_running(mean.reshape(n, c), var.reshape(n, c), length)
            return y
        return self._forward_running(x, n, length)

    def _update_running(self, mean, var, length: int) -> None:
        """running ← (1 − momentum) · running + momentum · (the batch's average of the
        instances' mean, and of their unbiased variance var · L/(L − 1)). ``momentum=None``
        counts as 0, and ``num_batches_tracked`` is never incremented: PyTorch's behaviour."""
        alpha = 0.0 if self.momentum is None else self.momentum
        for key in ("running_mean", "running_var"):  # arrived read-only: the layer's own copy
            if not self._buffers[key].flags.writeable:
                self._buffers[key] = np.array(self._buffers[key])
        rm, rv = self.running_mean, self.running_var
        rm[...] = (1 - alpha) * rm + alpha * mean.mean(axis=0)
        rv[...] = (1 - alpha) * rv + alpha * (var * (length / (length - 1))).mean(axis=0)

    def _forward_running(self, x, n: int, length: int):
        """Evaluation with running statistics: y = γ · (x − running_mean) / √(running_var
        + ε) + β per channel."""
        xp = namespace(x)
        cdt = _compute_dtype(x.dtype, self._param_dtype())
        x3 = x.astype(cdt, copy=False).reshape(n, self.num_features, length)
        k = self.running_mean.astype(cdt)
        inv_std = 1.0 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
        w, b = self._affine_arrays(np.float64)
        scale = inv_std if w is None else w * inv_std
        y3 = _affine(xp, x3, k, None, scale, None if b is None else b)
        self._cache = ("running", x3, k, inv_std, scale, x.shape, x.dtype) \
            if is_grad_enabled() else None
        return y3.reshape(x.shape).astype(x.dtype, copy=False)

    # ----- backward --------------------------------------------------------------------------
    def backward(self, dy):
        cache = self._saved()
        if cache[0] != "running":
            return super().backward(dy)
        _, x3, k, inv_std, scale, shape, in_dtype = cache
        if tuple(dy.shape) != tuple(shape):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {shape}")
        self._cache = None
        xp = namespace(dy)
        dy3 = dy.astype(x3.dtype, copy=False).reshape(x3.shape)
        if self.affine:  # dγ = Σ dy · x̂, dβ = Σ dy (the statistics are constants)
            xc = _centered(xp, x3, k, None)
            params = self._parameters
            params["weight"].accumulate(_chan_dot(xp, dy3, xc) * inv_std)
            if params["bias"] is not None:
                params["bias"].accumulate(_chan_sum(xp, dy3))
        dx3 = dy3 * _col(scale, x3.dtype)  # dx = γ · dy / √(running_var + ε)
        return dx3.reshape(shape).astype(in_dtype, copy=False)


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization over ``(N, C, L)`` or unbatched ``(C, L)`` inputs, as in PyTorch.

    Statistics are per sample and per channel, over that channel's m spatial values (m > 1 is
    required when they are used). **In training** (and in every mode when
    ``track_running_stats=False``, the default) each instance is normalized by its own
    statistics, then scaled and shifted per channel (with ``affine=True``):

        μ  = (1/m) Σ x,    σ² = (1/m) Σ (x − μ)²        over one sample's channel
        x̂  = (x − μ) / √(σ² + ε)
        y  = γ_c · x̂ + β_c                              (γ = 1, β = 0 without ``affine``)

    and, in training with ``track_running_stats=True``, the running statistics move towards
    the batch's averages of the instances' statistics (σ² unbiased):

        running_mean ← (1 − momentum) · running_mean + momentum · mean_n(μ)
        running_var  ← (1 − momentum) · running_var  + momentum · mean_n(σ² · m/(m − 1))

    **In evaluation with** ``track_running_stats=True`` the layer is a fixed per-channel
    affine map, the same for every sample:

        y = γ_c · (x − running_mean) / √(running_var + ε) + β_c

    Backward, closed form (ĝ = γ_c · dy; means over one sample's channel; dγ and dβ are summed
    over the batch and the positions):

        dx = (1/√(σ² + ε)) · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))    (the instance's statistics)
        dx = γ_c · dy / √(running_var + ε)                        (eval, running statistics)
        dγ_c = Σ dy · x̂,     dβ_c = Σ dy

    Parameters
    ----------
    num_features : int
        C, the number of channels (axis 1; axis 0 of an unbatched input).
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of the new batch in the running averages, in [0, 1]; ``None`` counts as 0
        (the running statistics never change), as in PyTorch.
    affine : bool, default False
        Learn γ (``weight``) and β (``bias``), one per channel (PyTorch's default: no).
    track_running_stats : bool, default False
        Keep running statistics and use them in evaluation (PyTorch's default: no).
    weight_init : initializer, default "ones"
        Initial γ: any spec of :func:`gammabeta.init.get`.
    bias_init : initializer, default "zeros"
        Initial β, likewise.
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ, β and the running statistics.
    bias : bool, default True
        Keyword only (as in PyTorch). With ``affine``, learn β too; ``False``: no β.

    Attributes
    ----------
    weight, bias : Parameter or None
        γ and β, shape ``(C,)``; ``None`` without ``affine`` (``bias`` also without ``bias``).
    running_mean, running_var : numpy.ndarray or None
        Buffers ``(C,)`` (starting at 0 and 1); ``None`` when ``track_running_stats=False``.
    num_batches_tracked : numpy.ndarray or None
        Buffer, a 0-d int64 kept for PyTorch's state-dict keys; as in PyTorch, instance
        normalization never increments it. ``None`` likewise.
    Shape
    -----
    - Input: ``(N, C, L)``, or ``(C, L)`` (one sample without a batch axis), floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - Ulyanov, Vedaldi & Lempitsky (2016), "Instance Normalization: The Missing Ingredient
      for Fast Stylization", arXiv:1607.08022.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> norm = nn.InstanceNorm1d(3, track_running_stats=True)
    >>> x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 3, 50)).astype(np.float32)
    >>> y = norm(x)  # training: every (sample, channel) row has mean 0 and variance 1
    >>> bool(np.allclose(y.mean(-1), 0, atol=1e-5)), bool(np.allclose(y.var(-1), 1))
    (True, True)
    >>> mean = x.mean(-1).mean(0)  # the instances' means, averaged over the batch
    >>> bool(np.allclose(norm.running_mean, 0.1 * mean)), int(norm.num_batches_tracked)
    (True, 0)
    >>> norm.eval()(x[0]).shape  # evaluation: the running statistics; unbatched (C, L)
    (3, 50)
    """

    _batched_ndim = 3
    _layout = "3-D (N, C, L) or 2-D unbatched (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization over ``(N, C, H, W)`` or unbatched ``(C, H, W)`` inputs, as in
    PyTorch.

    Statistics are per sample and per channel, over that channel's m = H·W spatial values (m > 1 is
    required when they are used). **In training** (and in every mode when
    ``track_running_stats=False``, the default) each instance is normalized by its own
    statistics, then scaled and shifted per channel (with ``affine=True``):

        μ  = (1/m) Σ x,    σ² = (1/m) Σ (x − μ)²        over one sample's channel
        x̂  = (x − μ) / √(σ² + ε)
        y  = γ_c · x̂ + β_c                              (γ = 1, β = 0 without ``affine``)

    and, in training with ``track_running_stats=True``, the running statistics move towards
    the batch's averages of the instances' statistics (σ² unbiased):

        running_mean ← (1 − momentum) · running_mean + momentum · mean_n(μ)
        running_var  ← (1 − momentum) · running_var  + momentum · mean_n(σ² · m/(m − 1))

    **In evaluation with** ``track_running_stats=True`` the layer is a fixed per-channel
    affine map, the same for every sample:

        y = γ_c · (x − running_mean) / √(running_var + ε) + β_c

    Backward, closed form (ĝ = γ_c · dy; means over one sample's channel; dγ and dβ are summed
    over the batch and the positions):

        dx = (1/√(σ² + ε)) · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))    (the instance's statistics)
        dx = γ_c · dy / √(running_var + ε)                        (eval, running statistics)
        dγ_c = Σ dy · x̂,     dβ_c = Σ dy

    Parameters
    ----------
    num_features : int
        C, the number of channels (axis 1; axis 0 of an unbatched input).
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of the new batch in the running averages, in [0, 1]; ``None`` counts as 0
        (the running statistics never change), as in PyTorch.
    affine : bool, default False
        Learn γ (``weight``) and β (``bias``), one per channel (PyTorch's default: no).
    track_running_stats : bool, default False
        Keep running statistics and use them in evaluation (PyTorch's default: no).
    weight_init : initializer, default "ones"
        Initial γ: any spec of :func:`gammabeta.init.get`.
    bias_init : initializer, default "zeros"
        Initial β, likewise.
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ, β and the running statistics.
    bias : bool, default True
        Keyword only (as in PyTorch). With ``affine``, learn β too; ``False``: no β.

    Attributes
    ----------
    weight, bias : Parameter or None
        γ and β, shape ``(C,)``; ``None`` without ``affine`` (``bias`` also without ``bias``).
    running_mean, running_var : numpy.ndarray or None
        Buffers ``(C,)`` (starting at 0 and 1); ``None`` when ``track_running_stats=False``.
    num_batches_tracked : numpy.ndarray or None
        Buffer, a 0-d int64 kept for PyTorch's state-dict keys; as in PyTorch, instance
        normalization never increments it. ``None`` likewise.
    Shape
    -----
    - Input: ``(N, C, H, W)``, or ``(C, H, W)`` (one sample without a batch axis), floating
      point. A 3-D input is always taken as unbatched, as in PyTorch.
    - Output: the input's shape and dtype.

    References
    ----------
    - Ulyanov, Vedaldi & Lempitsky (2016), "Instance Normalization: The Missing Ingredient
      for Fast Stylization", arXiv:1607.08022.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> rng = np.random.default_rng(0)
    >>> norm = nn.InstanceNorm2d(4, affine=True, weight_init="normal", rng=rng)
    >>> x = rng.normal(5.0, 2.0, size=(2, 4, 8, 8)).astype(np.float32)
    >>> y = norm(x)
    >>> xhat = (x - x.mean((2, 3), keepdims=True)) / np.sqrt(x.var((2, 3), keepdims=True) + 1e-5)
    >>> bool(np.allclose(y, norm.weight.data[:, None, None] * xhat, atol=1e-5))  # β = 0
    True
    >>> dx = norm.backward(np.ones_like(y))
    >>> norm.bias.grad.tolist()  # dβ = Σ dy: 2 samples · 64 positions
    [128.0, 128.0, 128.0, 128.0]
    """

    _batched_ndim = 4
    _layout = "4-D (N, C, H, W) or 3-D unbatched (C, H, W)"
