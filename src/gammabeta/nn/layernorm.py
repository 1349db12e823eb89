r"""Layer normalization (Ba, Kiros & Hinton 2016, arXiv:1607.06450) with PyTorch's semantics,
and the row machinery it shares with :mod:`gammabeta.nn.groupnorm` and
:mod:`gammabeta.nn.instancenorm`.

The three layers normalize *rows*: the input, C-contiguous, is viewed as ``(M, K)``, one row
per normalization group (LayerNorm: a sample's last axes; GroupNorm: one group of channels of
one sample; InstanceNorm: one channel of one sample). A row holds ``P`` segments of ``S``
values each, segment ``p`` of row ``r`` belonging to channel ``(r mod G)·P + p``, which
indexes γ and β (LayerNorm: ``G = 1`` and ``S = 1``, a γ per value).

Numerics. Statistics are computed in float32 or wider (float16 inputs work; the output keeps
the input's dtype) with a shifted two-pass algorithm: the row's first value ``k`` is
subtracted before the mean (a large common offset, 1e4 and beyond, cancels exactly), then
the squared deviations from the mean are summed; E[x²] − E[x]² is never used. The kernels
add partial sums of at most 512 values (in the compute dtype) in float64; the NumPy path sums
each row with one BLAS GEMV in the compute dtype. float32 inputs offset by 1e4 or 1e6 match
the float64 computation on the same numbers to 2e-7 relative (y, dx, dγ; measured on both
paths, the tests require 1e-5).

Implementation. With Numba (:func:`gammabeta.backend.norm_kernels`, inputs of 2**15 values or
more) forward and backward are one compiled call each (:mod:`gammabeta.nn._norm_kernels`):
x is read twice, dy once, y and dx written once; forward keeps a reference to x (as PyTorch
does). Otherwise (or with ``GAMMABETA_JIT=off``) the same formulas run as NumPy operations
(BLAS GEMV row sums), and forward keeps x̂ (an array of the input's size) instead of x.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .. import init
from ..backend import namespace, norm_kernels
from ..errors import ShapeError
from . import _args
from ._bn_base import _compute_dtype
from .module import Module, Parameter, check_float_input, is_grad_enabled

__all__ = ["LayerNorm", "_RowNorm"]


class _RowNorm(Module):
    """Shared by LayerNorm, GroupNorm and InstanceNorm: γ/β and the forward/backward on rows."""

    def _init_affine(self, shape, affine, bias, weight_init, bias_init, rng, dtype):
        name = type(self).__name__
        dtype, rng = _args.float_dtype(name, dtype), _args.generator(name, rng)
        if affine:
            self.weight = Parameter(init.initialize(weight_init, shape, rng, dtype=dtype,
                                                    what=f"{name}.weight (γ)"))
            if bias:
                self.bias = Parameter(init.initialize(bias_init, shape, rng, dtype=dtype,
                                                      what=f"{name}.bias (β)"))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self._cache = None
        self._spare = {}  # kernel path: output buffers ("y", "dx") kept for reuse

    def _output(self, role: str, like):
        """A new array like ``like``: this layer's previous buffer for ``role`` if nothing
        references it any more (3 references: this dict's, ``spare``'s, getrefcount's), which
        saves the allocation and its page faults on large arrays."""
        spare = self._spare.get(role)
        if spare is None or spare.shape != like.shape or spare.dtype != like.dtype \
                or sys.getrefcount(spare) > 3:
            spare = self._spare[role] = np.empty_like(like)
        return spare

    def _param_dtype(self):
        w = self._parameters["weight"]
        return w.data.dtype if w is not None else np.dtype(np.float32)

    def _affine_arrays(self, cdt):
        """(γ, β) flattened, in the compute dtype; ``None`` for an absent one."""
        w, b = self._parameters["weight"], self._parameters["bias"]
        return (None if w is None else w.data.astype(cdt, copy=False).reshape(-1),
                None if b is None else b.data.astype(cdt, copy=False).reshape(-1))

    # ----- forward -----------------------------------------------------------------------------
    def _rows_forward(self, x, rows: int, groups: int, seg: int, width: int):
        """Normalize ``x`` (checked) as ``rows`` rows of ``width`` values, ``groups`` rows per
        sample, γ/β per segment of ``seg`` values; returns ``(y, mean, var)``: the rows' mean
        and biased variance (float64, shape (rows,))."""
        xp = namespace(x)
        cdt = _compute_dtype(x.dtype, self._param_dtype())
        x2 = xp.ascontiguousarray(x.astype(cdt, copy=False).reshape(rows, width))
        w, b = self._affine_arrays(cdt)
        kern = norm_kernels(xp, x2.size)
        if x2.size == 0:  # an empty batch (or empty rows): nothing to normalize
            y2, saved = x2.copy(), (x2, None, None, None)
            mean = var = np.zeros(rows)
        elif kern is not None:
            y2 = self._output("y", x2)
            k, d, var, rstd = kern.norm_forward(x2, w, b, self.eps, groups, seg, y2)
            saved, mean = (x2, k, d, rstd), k + d
        else:
            k, d, var, xhat = _row_stats(xp, x2)
            rstd = 1.0 / xp.sqrt(var + self.eps)
            xhat *= _col(rstd, cdt)
            y2 = _rows_affine(xp, xhat, w, b, groups, seg)
            saved, mean = (xhat, None, None, rstd), k + d
        self._cache = (saved, kern, groups, seg, x.shape, x.dtype) if is_grad_enabled() \
            else None
        return y2.reshape(x.shape).astype(x.dtype, copy=False), mean, var

    # ----- backward ----------------------------------------------------------------------------
    def backward(self, dy):
        (a2, k, d, rstd), kern, groups, seg, shape, in_dtype = self._saved()
        if tuple(dy.shape) != tuple(shape):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {shape}")
        self._cache = None  # backward consumes the cache (PyTorch frees saved tensors)
        xp = namespace(dy)
        m, width = a2.shape
        dy2 = xp.ascontiguousarray(dy.astype(a2.dtype, copy=False).reshape(m, width))
        w, _ = self._affine_arrays(a2.dtype)
        if a2.size == 0:  # an empty batch
            dx2 = xp.zeros_like(dy2)
            dgamma = dbeta = np.zeros(0 if w is None else w.size)
        elif kern is not None:
            dx2 = self._output("dx", dy2)
            dgamma, dbeta = kern.norm_backward(a2, dy2, w, groups, seg, k, d, rstd, dx2)
            if seg > 1:  # per (row, segment) → per channel
                nchan = groups * width // seg
                dgamma = dgamma.reshape(-1, nchan).sum(axis=0)
                dbeta = dbeta.reshape(-1, nchan).sum(axis=0)
        else:
            dx2, dgamma, dbeta = _rows_backward(xp, a2, dy2, rstd, w, groups, seg)
        params = self._parameters
        if params["weight"] is not None:
            pshape = params["weight"].data.shape
            params["weight"].accumulate(dgamma.reshape(pshape))
            if params["bias"] is not None:
                params["bias"].accumulate(dbeta.reshape(pshape))
        return dx2.reshape(shape).astype(in_dtype, copy=False)


# ----- the NumPy path (the kernels compute the same formulas) ---------------------------------
def _col(v, dtype):
    """A per-row vector as an ``(M, 1)`` column of ``dtype``."""
    return v.astype(dtype, copy=False).reshape(-1, 1)


def _row_sum(xp, a):
    """Σ along each row of an (M, K) array, float64 (one BLAS GEMV)."""
    return (a @ xp.ones(a.shape[1], dtype=a.dtype)).astype(np.float64)


def _row_dot(xp, a, b):
    """Σ a·b along each row, float64, without a temporary of a's size."""
    if hasattr(xp, "vecdot"):
        return xp.vecdot(a, b).astype(np.float64)
    return xp.einsum("mk,mk->m", a, b).astype(np.float64)  # pragma: no cover


def _row_stats(xp, x2):
    """Shifted two-pass statistics per row: ``(k, d, var, x − mean)``, ``k`` the row's first
    value, ``d = mean − k`` and the biased variance in float64."""
    m, width = x2.shape
    k = x2[:, 0].copy()
    xc = xp.subtract(x2, k[:, None])
    d = _row_sum(xp, xc) / width
    xc -= _col(d, x2.dtype)
    return k, d, _row_dot(xp, xc, xc) / width, xc


def _rows_affine(xp, xhat, w, b, groups, seg):
    """``y = x̂ · γ + β`` with γ/β per channel (a copy of x̂ without them: x̂ stays cached)."""
    if w is None:
        y = xhat.copy()
        return y if b is None else _per_channel(y, b, groups, seg, xp.add)
    y = _per_channel(xhat, w, groups, seg, xp.multiply, out=False)
    return y if b is None else _per_channel(y, b, groups, seg, xp.add)


def _per_channel(a, v, groups, seg, op, out=True):
    """``op(a, v)`` with ``v`` per channel of rows ``a``; in place unless ``out=False``."""
    m, width = a.shape
    n, c = m // groups, groups * width // seg
    view = a.reshape(n, c) if seg == 1 else a.reshape(n, c, seg)
    vv = v if seg == 1 else v.reshape(c, 1)
    return (op(view, vv, out=view) if out else op(view, vv)).reshape(m, width)


def _rows_backward(xp, xhat, dy2, rstd, w, groups, seg):
    """``dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / σ`` per row with ``ĝ = γ · dy``; returns
    ``(dx, dγ, dβ)`` (dγ = Σ dy · x̂, dβ = Σ dy per channel, float64)."""
    m, width = xhat.shape
    n, c = m // groups, groups * width // seg
    if seg == 1:
        dyc, xhc = dy2.reshape(n, c), xhat.reshape(n, c)
        ones = xp.ones(n, dtype=dy2.dtype)
        dgamma = (ones @ (dyc * xhc)).astype(np.float64)
        dbeta = (ones @ dyc).astype(np.float64)
        g = (dyc * w if w is not None else dyc.copy()).reshape(m, width)  # ĝ
        sg, sgx = _row_sum(xp, g), _row_dot(xp, g, xhat)
        g *= _col(rstd, g.dtype)  # ĝ / σ
    else:
        dy3, xh3 = dy2.reshape(n, c, seg), xhat.reshape(n, c, seg)
        sdy = (dy3 @ xp.ones(seg, dtype=dy2.dtype)).astype(np.float64)  # (N, C)
        sdx = xp.vecdot(dy3, xh3).astype(np.float64)
        dgamma, dbeta = sdx.sum(axis=0), sdy.sum(axis=0)
        wc = np.ones(c) if w is None else w.astype(np.float64)
        sg = (sdy * wc).reshape(m, -1).sum(axis=1)
        sgx = (sdx * wc).reshape(m, -1).sum(axis=1)
        scale = rstd.reshape(n, groups, 1) * wc.reshape(1, groups, -1)  # γ / σ per (n, c)
        g = (dy3 * scale.reshape(n, c, 1).astype(dy2.dtype)).reshape(m, width)
    t = xhat * _col(-rstd * sgx / width, xhat.dtype)
    t += _col(-rstd * sg / width, xhat.dtype)
    t += g
    return t, dgamma, dbeta


# ----- LayerNorm -------------------------------------------------------------------------------
class LayerNorm(_RowNorm):
    """Layer normalization over the last axes, per sample, as in PyTorch.

    Each sample's last ``D = len(normalized_shape)`` axes, ``K`` values in all, are normalized
    with their own mean and biased variance, then scaled and shifted elementwise:

        μ  = (1/K) Σ x,    σ² = (1/K) Σ (x − μ)²        over the last D axes
        x̂  = (x − μ) / √(σ² + ε)
        y  = γ ⊙ x̂ + β                                  (γ, β of shape normalized_shape)

    Training and evaluation compute the same thing: the statistics are the sample's own, there
    are no running statistics, and ``train()``/``eval()`` change nothing.

    Backward, closed form (per sample; ĝ = γ ⊙ dy, means over the sample's K values; dγ and dβ,
    summed over the leading axes, are added to ``weight.grad`` and ``bias.grad``):

        dx = (1/√(σ² + ε)) · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))
        dγ = Σ dy ⊙ x̂,     dβ = Σ dy

    Defaults as in PyTorch: ``eps=1e-5``, γ = 1, β = 0. Numerics and implementation: see
    :mod:`gammabeta.nn.layernorm`.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The shape of the last axes to normalize over (an int: the last axis's size).
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    elementwise_affine : bool, default True
        Learn γ (``weight``) and β (``bias``); ``False``: neither (γ = 1, β = 0, fixed).
    bias : bool, default True
        With ``elementwise_affine``, learn β too; ``False``: no β (``bias`` is ``None``).
    weight_init : initializer, default "ones"
        Initial γ: any spec of :func:`gammabeta.init.get` (``"ones"``, ``0.5``, ``"normal"``).
    bias_init : initializer, default "zeros"
        Initial β, likewise.
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ and β.

    Attributes
    ----------
    weight : Parameter or None
        γ, shape ``normalized_shape``; ``None`` when ``elementwise_affine=False``.
    bias : Parameter or None
        β, shape ``normalized_shape``; ``None`` without ``elementwise_affine`` or ``bias``.
    normalized_shape : tuple of int
        The normalized trailing shape.

    Shape
    -----
    - Input: ``(*, *normalized_shape)``, floating point, any number of leading axes (none too).
    - Output: the input's shape and dtype.

    References
    ----------
    - Ba, Kiros & Hinton (2016), "Layer Normalization", arXiv:1607.06450.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> ln = nn.LayerNorm(4)
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(2, 5, 4)).astype(np.float32)
    >>> y = ln(x)  # each of the 2·5 rows of 4 values: mean 0, variance σ²/(σ² + ε) ≈ 1
    >>> y.shape, bool(np.allclose(y.mean(-1), 0, atol=1e-6))
    ((2, 5, 4), True)
    >>> var = x.var(-1)
    >>> bool(np.allclose(y.var(-1), var / (var + 1e-5)))
    True
    >>> dx = ln.backward(np.ones_like(y))  # a constant dy changes nothing: dx = 0
    >>> bool(np.allclose(dx, 0, atol=1e-6)), ln.weight.grad.shape, ln.bias.grad.tolist()
    (True, (4,), [10.0, 10.0, 10.0, 10.0])
    >>> bool(np.array_equal(ln.eval()(x), y))  # no running statistics: eval is the same
    True
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, weight_init="ones", bias_init="zeros", rng=None,
                 dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        if _args.is_int(normalized_shape):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = _args.sizes(name, "normalized_shape", normalized_shape)
        self.eps = _args.real(name, "eps", eps, lo=0.0, lo_open=True)
        self.elementwise_affine = _args.boolean(name, "elementwise_affine", elementwise_affine)
        bias = _args.boolean(name, "bias", bias)
        self._init_affine(self.normalized_shape, self.elementwise_affine, bias, weight_init,
                          bias_init, rng, dtype)

    def extra_repr(self) -> str:
        s = f"{self.normalized_shape}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        if not self.elementwise_affine:
            s += ", elementwise_affine=False"
        elif self._parameters["bias"] is None:
            s += ", bias=False"
        return s

    def forward(self, x):
        check_float_input(self, x)
        ns = self.normalized_shape
        if x.ndim < len(ns) or tuple(x.shape[x.ndim - len(ns):]) != ns:
            raise ShapeError(f"{self.describe()}: got an input of shape {tuple(x.shape)}, "
                             f"expected (*, {', '.join(map(str, ns))}): its last {len(ns)} "
                             f"ax{'is' if len(ns) == 1 else 'es'} must be {ns}")
        width = math.prod(ns)
        return self._rows_forward(x, x.size // width, 1, 1, width)[0]
