"""The machinery shared by :class:`~gammabeta.nn.BatchNorm1d`, :class:`~gammabeta.nn.BatchNorm2d`
and :class:`~gammabeta.nn.SyncBatchNorm`: arguments, state, the forward and backward on an
``(N, C, L)`` view (Numba kernels or their NumPy twin below), the running statistics.

The formulas and the numerics are described in :mod:`gammabeta.nn.batchnorm`.
"""

from __future__ import annotations

import sys

import numpy as np

from .. import init
from ..backend import (
    EVAL_KERNEL_MIN_SIZE,
    SPATIAL_KERNEL_MIN_SIZE,
    compute_dtype,
    kernels,
    namespace,
)
from ..errors import ShapeError
from . import _args, _state
from .module import Module, Parameter, check_float_input, is_grad_enabled

__all__ = ["_BatchNorm"]


class _BatchNorm(Module):
    """Shared implementation; subclasses only say which input ranks they accept."""

    _ndims: tuple[int, ...] = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, gamma_init="ones",
                 beta_init="zeros", rng=None, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self.num_features = _args.integer(name, "num_features", num_features)
        self.eps = _args.real(name, "eps", eps, lo=0.0, lo_open=True)
        self.momentum = _args.real(name, "momentum", momentum, 0.0, 1.0, allow_none=True,
                                   note=" (the new batch's weight; None: cumulative average)")
        self.affine = _args.boolean(name, "affine", affine)
        self.track_running_stats = _args.boolean(name, "track_running_stats",
                                                 track_running_stats)
        dtype, rng = _args.float_dtype(name, dtype), _args.generator(name, rng)
        c = (self.num_features,)
        if self.affine:
            self.weight = Parameter(init.initialize(gamma_init, c, rng, dtype=dtype,
                                                    what=f"{name}.weight (γ)"))
            self.bias = Parameter(init.initialize(beta_init, c, rng, dtype=dtype,
                                                  what=f"{name}.bias (β)"))
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
        self._spare = {}  # kernel path: output buffers ("y", "dx") kept for reuse

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
    def _check_state(self, prefix: str, state) -> str | None:
        """Loaded values: ``running_var`` >= 0, ``num_batches_tracked`` a whole number >= 0."""
        return _state.negative(state, prefix + "running_var", "variances") \
            or _state.count(state, prefix + "num_batches_tracked")

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
        cdt = _compute_dtype(x.dtype, self._param_dtype())
        x3 = x.astype(cdt, copy=False).reshape(x.shape[0], self.num_features, -1)  # (N, C, L)
        m = x3.shape[0] * x3.shape[2]
        use_batch = self.training or not self.track_running_stats
        if use_batch and m <= 1:
            raise ShapeError(f"{self.describe()}: expected more than 1 value per channel "
                             f"when training, got input of shape {x.shape}")
        kern = _kernels_for(xp, x3, use_batch)
        if self.track_running_stats:
            self._writable_running_stats()
        if kern is not None:
            y3, k, d, inv_std = self._forward_kernels(kern, x3, use_batch, m)
        else:
            y3, k, d, inv_std = self._forward_numpy(xp, x3, use_batch, m)
        self._cache = (x3, k, d, inv_std, use_batch, m, x.shape, x.dtype) \
            if is_grad_enabled() else None
        return y3.reshape(x.shape).astype(x.dtype, copy=False)

    def _writable_running_stats(self) -> None:
        """Running statistics that arrived read-only (a state memory-mapped by joblib, a
        frozen array) become this layer's own copies: training updates them in place, and
        the compiled path takes writable arrays only."""
        bufs = self._buffers
        for key in ("running_mean", "running_var"):
            b = bufs.get(key)
            if b is not None and not b.flags.writeable:
                bufs[key] = np.array(b)

    def _forward_kernels(self, kern, x3, use_batch, m):
        """The compiled path: one call for statistics, running update and output."""
        alpha = self._next_alpha() if use_batch and self.track_running_stats else -1.0
        bufs = self._buffers
        rm, rv = (bufs["running_mean"], bufs["running_var"]) if self.track_running_stats \
            else (_NONE, _NONE)
        w, b = self._affine_params(np)
        y3 = self._output("y", x3, kern)
        k, d, inv_std = kern.bn_forward(x3, w, b, self.eps, use_batch, rm, rv, alpha,
                                        m / max(m - 1, 1), y3)
        return y3, k, d, inv_std

    def _forward_numpy(self, xp, x3, use_batch, m):
        if use_batch:
            k, d, var, y3 = _stats(xp, x3)
            if self.training and self.track_running_stats:
                self._update_running(k, d, var, m)
        else:
            k = self.running_mean.astype(x3.dtype)
            d = None  # x − running_mean directly
            var = self.running_var.astype(np.float64)
            y3 = None
        inv_std = 1.0 / xp.sqrt(var + self.eps)  # float64, shape (C,)
        scale = inv_std if not self.affine else self.weight.data * inv_std
        y3 = _affine(xp, x3, k, d, scale, self.bias.data if self.affine else None, out=y3)
        return y3, k, d, inv_std

    def _output(self, role: str, x3, kern):
        """A new output like ``x3``, in this layer's previous buffer for ``role`` if nothing
        references it any more (3 references: this dict's, ``spare``'s, getrefcount's)."""
        spare = self._spare.get(role)
        if spare is not None and sys.getrefcount(spare) > 3:
            spare = None
        out, self._spare[role] = kern.empty_like(x3, spare)
        return out

    def _affine_params(self, xp):
        """(γ, β), or ones and zeros without ``affine``."""
        if self.affine:
            params = self._parameters  # (not self.weight: Module.__getattr__ is slow)
            return params["weight"].data, params["bias"].data
        return xp.ones(self.num_features), xp.zeros(self.num_features)

    def _param_dtype(self):
        if self.affine:
            return self._parameters["weight"].data.dtype
        if self.track_running_stats:
            return self._buffers["running_mean"].dtype
        return np.dtype(np.float32)

    def _next_alpha(self) -> float:
        """Count the batch and return the running update's weight α (-1 outside training)."""
        if not self.training:
            return -1.0
        bufs = self._buffers  # a new array, not += 1: a loaded one may be read-only
        count = bufs["num_batches_tracked"] = np.asarray(bufs["num_batches_tracked"] + 1,
                                                         dtype=np.int64)
        if self.momentum is None:
            return 1.0 / float(count)
        return float(self.momentum)

    def _update_running(self, k, d, var, m: int) -> None:
        """running_mean ← (1 − α) running_mean + α (K + d); running_var likewise with the
        unbiased variance var · m / (m − 1)."""
        alpha = self._next_alpha()
        rm, rv = self.running_mean, self.running_var
        mean = k.astype(np.float64) + d
        rm[...] = (1 - alpha) * rm + alpha * mean
        rv[...] = (1 - alpha) * rv + alpha * (var * (m / (m - 1)))

    # ----- backward --------------------------------------------------------------------------
    def backward(self, dy):
        x3, k, d, inv_std, use_batch, m, shape, in_dtype = self._saved()
        if tuple(dy.shape) != tuple(shape):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {shape}")
        self._cache = None  # backward consumes the cache (PyTorch frees saved tensors)
        xp = namespace(dy)
        dy3 = dy.astype(x3.dtype, copy=False).reshape(x3.shape)
        kern = _kernels_for(xp, x3, use_batch)
        if kern is not None and not dy3.flags.c_contiguous:
            dy3 = np.ascontiguousarray(dy3)
        if kern is not None:
            w, _ = self._affine_params(np)
            dx3 = self._output("dx", x3, kern)
            dbeta, dgamma = kern.bn_backward(x3, dy3, k, _ZEROS if d is None else d, inv_std,
                                             w, m, use_batch, dx3)
            self._accumulate(dbeta, dgamma)
            return dx3.reshape(shape).astype(in_dtype, copy=False)
        xc = _centered(xp, x3, k, d)
        sdy, sdx = _chan_sum(xp, dy3), _chan_dot(xp, dy3, xc)
        dgamma = sdx * inv_std  # Σ dy · x̂
        self._accumulate(sdy, dgamma)
        g = self.weight.data * inv_std if self.affine else inv_std  # float64
        if use_batch:  # dx = g · (dy − Σdy/m − x̂ · Σ(dy·x̂)/m), x̂ = (x − μ) · inv_std
            dx3 = xc
            dx3 *= _col(-g * inv_std * dgamma / m, x3.dtype)
            dx3 += _col(-g * sdy / m, x3.dtype)
            dx3 += dy3 * _col(g, x3.dtype)
        else:  # statistics are constants: dx = g · dy
            dx3 = dy3 * _col(g, x3.dtype)
        return dx3.reshape(shape).astype(in_dtype, copy=False)

    def _accumulate(self, dbeta, dgamma) -> None:
        if self.affine:
            params = self._parameters
            params["weight"].accumulate(dgamma)
            params["bias"].accumulate(dbeta)


# ----- the NumPy path (any array namespace); the Numba kernels compute the same formulas ------
_NONE = np.zeros(0, dtype=np.float32)  # the kernels' stand-in for absent running statistics
_ZEROS = np.zeros(0)  # ... and for d = 0 (statistics taken as constants: no shift to undo)
_COMPUTE_DTYPES: dict = {}


def _compute_dtype(x_dtype, param_dtype):
    """``compute_dtype`` of the two dtypes' result type (memoized: it runs on every call)."""
    key = (x_dtype, param_dtype)
    cdt = _COMPUTE_DTYPES.get(key)
    if cdt is None:
        cdt = _COMPUTE_DTYPES[key] = compute_dtype(np.result_type(x_dtype, param_dtype))
    return cdt


def _kernels_for(xp, x3, use_batch: bool):
    """The Numba kernel module when it applies to ``x3`` (NumPy, float32/64, C-contiguous).

    With running statistics (evaluation) the layer is one affine pass, run a few times per
    epoch: the kernels pay for loading Numba only on large inputs
    (:data:`gammabeta.backend.EVAL_KERNEL_MIN_SIZE`). Training on inputs with positions
    (``L > 1``) takes them from :data:`gammabeta.backend.SPATIAL_KERNEL_MIN_SIZE`."""
    if x3.dtype not in (np.float32, np.float64) or not x3.flags.c_contiguous:
        return None
    if not use_batch:
        return kernels(xp, x3.size, EVAL_KERNEL_MIN_SIZE)
    return kernels(xp, x3.size, SPATIAL_KERNEL_MIN_SIZE if x3.shape[2] > 1 else None)


def _col(v, dtype):
    """A per-channel vector as a ``(1, C, 1)`` array of ``dtype`` (broadcasts over (N, C, L))."""
    return v.astype(dtype, copy=False).reshape(1, -1, 1)


def _chan_sum(xp, a):
    """Σ over N and L of an (N, C, L) array, per channel, float64 (BLAS for the long axes)."""
    n, c, length = a.shape
    if length == 1:
        return (xp.ones(n, dtype=a.dtype) @ a.reshape(n, c)).astype(np.float64)
    rows = a @ xp.ones(length, dtype=a.dtype)  # (N, C): one GEMV over the contiguous rows
    return rows.sum(axis=0, dtype=np.float64)


def _chan_dot(xp, a, b):
    """Σ over N and L of a·b per channel, float64, without an (N, C, L) temporary."""
    if a.shape[2] == 1:
        return xp.einsum("nc,nc->c", a[:, :, 0], b[:, :, 0]).astype(np.float64)
    if hasattr(xp, "vecdot"):
        rows = xp.vecdot(a, b)
    else:  # pragma: no cover - namespaces without vecdot
        rows = xp.einsum("ncl,ncl->nc", a, b)
    return rows.sum(axis=0, dtype=np.float64)


def _centered(xp, x3, k, d, out=None):
    """``(x − K) − d``: x minus its mean, computed without rounding away a large offset."""
    xc = xp.subtract(x3, _col(k, x3.dtype), out=out)
    if d is not None:
        xc -= _col(d, x3.dtype)
    return xc


def _stats(xp, x3):
    """Shifted two-pass statistics: ``(K, d, var, x − mean)``, ``d = mean − K`` in float64.

    ``K`` is each channel's first value: ``x − K`` is exact for a large common offset, so the
    mean of the shifted data and then the squared deviations from it keep full precision.
    """
    m = x3.shape[0] * x3.shape[2]
    k = x3[0, :, 0].copy()
    xc = xp.subtract(x3, _col(k, x3.dtype))
    d = _chan_sum(xp, xc) / m
    xc -= _col(d, x3.dtype)
    var = _chan_dot(xp, xc, xc) / m
    return k, d, var, xc


def _affine(xp, x3, k, d, scale, shift, out=None):
    """``((x − K) − d) · scale + shift`` per channel (``out`` may already hold ``x − mean``)."""
    y = _centered(xp, x3, k, d) if out is None else out
    y *= _col(scale, x3.dtype)
    if shift is not None:
        y += _col(shift, x3.dtype)
    return y
