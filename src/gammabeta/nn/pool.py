"""Max, average and adaptive average pooling over the last 1 or 2 axes, PyTorch's semantics.

Inputs are ``(N, C, L)`` / ``(C, L)`` for the 1-D layers and ``(N, C, H, W)`` / ``(C, H, W)`` for
the 2-D ones; everything runs on a ``(B, H, W)`` view (1-D: H = 1). Max and average pooling loop
over the kh·kw kernel offsets, each a strided slab of the whole output (vectorized, no per-pixel
loop); max pooling keeps the offset of the first maximum (PyTorch's tie rule, NaN wins) and
routes the gradient there. Output size ``⌊(L + 2p − k) / s⌋ + 1`` (``ceil_mode=False``).
"""

from __future__ import annotations

import numpy as np

from ..backend import namespace
from ..errors import ConfigError, ShapeError
from . import _args
from .module import Module, check_float_input, is_grad_enabled

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
           "AdaptiveAvgPool2d"]

_LAYOUT = {1: "3-D (N, C, L) or 2-D (C, L)", 2: "4-D (N, C, H, W) or 3-D (C, H, W)"}


def _as3d(layer: Module, x, nd: int):
    """Check ``x`` and return it as ``(B, H, W)`` (H = 1 for 1-D layers)."""
    check_float_input(layer, x)
    if x.ndim not in (nd + 1, nd + 2):
        raise ShapeError(f"{layer.describe()}: got a {x.ndim}-D input of shape {x.shape}, "
                         f"expected {_LAYOUT[nd]}")
    if nd == 1:
        return x.reshape(-1, 1, x.shape[-1])
    return x.reshape(-1, x.shape[-2], x.shape[-1])


def _slab(a, i: int, j: int, s: tuple[int, int], out: tuple[int, int]):
    """The strided view ``a[:, i + s_h·r, j + s_w·c]`` for r < out_h, c < out_w."""
    return a[:, i:i + s[0] * (out[0] - 1) + 1:s[0], j:j + s[1] * (out[1] - 1) + 1:s[1]]


class _Pool(Module):
    """Shared geometry and checks of the windowed (max/average) pooling layers."""

    _nd = 0

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        self.kernel_size = _args.ints(name, "kernel_size", kernel_size, nd, 1)
        self.stride = self.kernel_size if stride is None else \
            _args.ints(name, "stride", stride, nd, 1)
        self.padding = _args.ints(name, "padding", padding, nd, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ConfigError(f"{name}: padding={self.padding} with kernel_size="
                              f"{self.kernel_size}; expected padding at most half the kernel")
        self._cache = None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _geom2d(self):
        k, s, p = self.kernel_size, self.stride, self.padding
        return ((1, *k), (1, *s), (0, *p)) if self._nd == 1 else (k, s, p)

    def _prepare(self, x, fill: float):
        """``(B, Hp, Wp)`` padded input (pad value ``fill``), output size and geometry."""
        x3 = _as3d(self, x, self._nd)
        k, s, p = self._geom2d()
        h, w = x3.shape[1:]
        if h + 2 * p[0] < k[0] or w + 2 * p[1] < k[1]:
            size = tuple(x.shape[-self._nd:])
            raise ShapeError(f"{self.describe()}: input spatial size {size} is smaller than the "
                             f"kernel {self.kernel_size}; expected at least the kernel size "
                             "after padding")
        out = ((h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1)
        if p[0] or p[1]:
            xp = namespace(x)
            x3 = xp.pad(x3, ((0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
        return x3, (h, w), out

    def _output(self, x, y3):
        lead = x.shape[:-self._nd]
        return y3.reshape(lead + (y3.shape[-1],) if self._nd == 1 else lead + y3.shape[-2:])

    def _check_dy(self, dy, shape):
        if tuple(dy.shape) != tuple(shape):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {tuple(shape)}")

    def _scatter(self, part, b: int, x_shape, hw, out, dtype, xp):
        """Sum ``part(o)`` (``(B, *out)``, one per kernel offset) back into the padded input."""
        k, s, p = self._geom2d()
        dxp = xp.zeros((b, hw[0] + 2 * p[0], hw[1] + 2 * p[1]), dtype=dtype)
        for o in range(k[0] * k[1]):
            _slab(dxp, *divmod(o, k[1]), s, out)[...] += part(o)
        return dxp[:, p[0]:p[0] + hw[0], p[1]:p[1] + hw[1]].reshape(x_shape)


class _MaxPool(_Pool):
    def forward(self, x):
        xp = namespace(x)
        k, s, p = self._geom2d()
        if s == k and not any(p) and k[0] * k[1] <= 255:
            return self._forward_tiled(x, xp)
        xpad, hw, out = self._prepare(x, -np.inf)
        y = _slab(xpad, 0, 0, s, out).copy()
        arg = xp.zeros(y.shape, dtype=np.int32)
        for o in range(1, k[0] * k[1]):
            v = _slab(xpad, *divmod(o, k[1]), s, out)
            better = (v > y) | xp.isnan(v)  # strict: ties keep the first maximum
            y = xp.where(better, v, y)
            arg[better] = o
        self._cache = ("strided", arg, x.shape, hw, out) if is_grad_enabled() else None
        return self._output(x, y)

    def _forward_tiled(self, x, xp):
        """Non-overlapping windows (stride = kernel, no padding): the windows are a reshape.

        The running maximum ``np.maximum`` (NaN wins, as in PyTorch) and the offset of the
        selected value, updated where a later value is strictly greater or NaN (PyTorch's
        rule: ties keep the first maximum), both without ``where``.
        """
        x3, hw, out = self._prepare(x, -np.inf)
        (kh, kw), _, _ = self._geom2d()
        b = x3.shape[0]
        win = x3[:, :out[0] * kh, :out[1] * kw].reshape(b, out[0], kh, out[1], kw)
        y = win[:, :, 0, :, 0].copy()
        arg = xp.zeros(y.shape, dtype=np.uint8) if kh * kw > 1 else None
        for o in range(1, kh * kw):
            v = win[:, :, o // kw, :, o % kw]
            better = v > y
            if xp.isnan(v).any():
                better |= xp.isnan(v)
            xp.maximum(y, v, out=y)
            if kh * kw == 2:
                arg = better.view(np.uint8)
            else:
                xp.copyto(arg, np.uint8(o), where=better)
        self._cache = ("tiled", arg, x.shape, hw, out) if is_grad_enabled() else None
        return self._output(x, y)

    def backward(self, dy):
        kind, arg, x_shape, hw, out = self._saved()
        xp = namespace(dy)
        self._check_dy(dy, x_shape[:-self._nd] + out[2 - self._nd:])
        self._cache = None  # backward consumes the cache (PyTorch frees saved tensors)
        if kind == "tiled":
            return self._backward_tiled(dy, arg, x_shape, hw, out, xp)
        dy3 = dy.reshape(arg.shape)
        zero = dy.dtype.type(0)
        return self._scatter(lambda o: xp.where(arg == o, dy3, zero), arg.shape[0], x_shape,
                             hw, out, dy.dtype, xp)

    def _backward_tiled(self, dy, arg, x_shape, hw, out, xp):
        (kh, kw), _, _ = self._geom2d()
        b = int(np.prod(x_shape[:-self._nd]))
        dy3 = dy.reshape(b, *out)
        exact = hw[0] == out[0] * kh and hw[1] == out[1] * kw
        dx = (xp.empty if exact else xp.zeros)((b, *hw), dtype=dy.dtype)
        win = dx[:, :out[0] * kh, :out[1] * kw].reshape(b, out[0], kh, out[1], kw)
        if arg is None:
            win[:, :, 0, :, 0] = dy3
        for o in range(kh * kw if arg is not None else 0):
            mask = arg.view(bool) if kh * kw == 2 and o == 1 else arg == o
            xp.multiply(dy3, mask, out=win[:, :, o // kw, :, o % kw])
        return dx.reshape(x_shape)


class _AvgPool(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = _args.boolean(type(self).__name__, "count_include_pad",
                                               count_include_pad)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.count_include_pad else s + ", count_include_pad=False"

    def _divisor(self, hw, out, dtype, xp):
        k, s, p = self._geom2d()
        if self.count_include_pad or not any(p):
            return dtype.type(k[0] * k[1])
        ones = xp.pad(xp.ones((1, *hw), dtype=dtype), ((0, 0), (p[0], p[0]), (p[1], p[1])))
        return sum(_slab(ones, i, j, s, out) for i in range(k[0]) for j in range(k[1]))[0]

    def forward(self, x):
        xp = namespace(x)
        xpad, hw, out = self._prepare(x, 0.0)
        k, s, _ = self._geom2d()
        y = _slab(xpad, 0, 0, s, out).copy()
        for o in range(1, k[0] * k[1]):
            y += _slab(xpad, *divmod(o, k[1]), s, out)
        div = self._divisor(hw, out, x.dtype, xp)
        y /= div
        self._cache = (div, x.shape, hw, out) if is_grad_enabled() else None
        return self._output(x, y)

    def backward(self, dy):
        div, x_shape, hw, out = self._saved()
        xp = namespace(dy)
        self._check_dy(dy, x_shape[:-self._nd] + out[2 - self._nd:])
        self._cache = None  # backward consumes the cache (PyTorch frees saved tensors)
        g = dy.reshape((-1, *out)) / div
        return self._scatter(lambda o: g, g.shape[0], x_shape, hw, out, g.dtype, xp)


class MaxPool1d(_MaxPool):
    """1-D max pooling over the last axis, as ``torch.nn.MaxPool1d`` (no dilation or ceil_mode).

    With k, s, p = ``kernel_size``, ``stride``, ``padding`` and the input padded with −∞:

        y[..., o] = max_{j < k} xpad[..., o·s + j],      L_out = ⌊(L + 2p − k) / s⌋ + 1
        dx: dy[..., o] goes to the first maximum of window o (ties: the first; NaN wins)

    Parameters
    ----------
    kernel_size : int or tuple of 1 int
        Window length k.
    stride : int or tuple of 1 int, optional
        Step s between windows; ``None`` (the default) means ``kernel_size``.
    padding : int or tuple of 1 int, default 0
        −∞ added on both sides; at most half the kernel.

    Shape
    -----
    - Input: ``(N, C, L)`` or unbatched ``(C, L)``.
    - Output: ``(N, C, L_out)`` or ``(C, L_out)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import MaxPool1d
    >>> pool = MaxPool1d(2)
    >>> y = pool(np.array([[[1.0, 3.0, 2.0, 2.0, 5.0, 0.0]]]))
    >>> y.tolist(), pool.backward(np.ones_like(y)).tolist()  # the tie 2, 2: the first
    ([[[3.0, 2.0, 5.0]]], [[[0.0, 1.0, 1.0, 0.0, 1.0, 0.0]]])
    """

    _nd = 1


class MaxPool2d(_MaxPool):
    """2-D max pooling over the last two axes, as ``torch.nn.MaxPool2d`` (no dilation or ceil_mode).

    Per axis as :class:`MaxPool1d` (k, s, p per axis, −∞ padding):

        y[..., i, j] = max_{a < kh, b < kw} xpad[..., i·sh + a, j·sw + b]
        H_out = ⌊(H + 2·ph − kh) / sh⌋ + 1,  W_out likewise;  dx: dy to each window's first max

    Parameters
    ----------
    kernel_size : int or tuple of 2 int
        Window (kh, kw); an int is used for both axes (as for ``stride`` and ``padding``).
    stride : int or tuple of 2 int, optional
        Step between windows; ``None`` (the default) means ``kernel_size``.
    padding : int or tuple of 2 int, default 0
        −∞ added on both sides of each axis; at most half the kernel.

    Shape
    -----
    - Input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
    - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import MaxPool2d
    >>> pool = MaxPool2d(2)
    >>> y = pool(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> y.tolist(), pool.backward(np.ones_like(y))[0, 0, 1].tolist()
    ([[[[5.0, 7.0], [13.0, 15.0]]]], [0.0, 1.0, 0.0, 1.0])
    """

    _nd = 2


class AvgPool1d(_AvgPool):
    """1-D average pooling over the last axis, as ``torch.nn.AvgPool1d`` (no ceil_mode).

    With k, s, p = ``kernel_size``, ``stride``, ``padding`` and the input zero-padded:

        y[..., o] = (1/D_o) Σ_{j < k} xpad[..., o·s + j],      L_out = ⌊(L + 2p − k) / s⌋ + 1
        dx[..., i] = Σ over the windows o that read x[..., i] of dy[..., o] / D_o
        D_o = k if count_include_pad, else the number of real (non-padding) inputs of window o

    Parameters
    ----------
    kernel_size : int or tuple of 1 int
        Window length k.
    stride : int or tuple of 1 int, optional
        Step s between windows; ``None`` (the default) means ``kernel_size``.
    padding : int or tuple of 1 int, default 0
        Zeros added on both sides; at most half the kernel.
    count_include_pad : bool, default True
        Whether the padding zeros count in the divisor D_o.

    Shape
    -----
    - Input: ``(N, C, L)`` or unbatched ``(C, L)``.
    - Output: ``(N, C, L_out)`` or ``(C, L_out)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import AvgPool1d
    >>> x = np.array([[[1.0, 3.0, 2.0, 2.0, 5.0, 0.0]]])
    >>> pool = AvgPool1d(3, stride=1, padding=1)
    >>> y = pool(x)
    >>> y.round(4).tolist(), pool.backward(np.ones_like(y)).round(4).tolist()
    ([[[1.3333, 2.0, 2.3333, 3.0, 2.3333, 1.6667]]], [[[0.6667, 1.0, 1.0, 1.0, 1.0, 0.6667]]])
    >>> AvgPool1d(3, 1, 1, count_include_pad=False)(x).round(4).tolist()
    [[[2.0, 2.0, 2.3333, 3.0, 2.3333, 2.5]]]
    """

    _nd = 1


class AvgPool2d(_AvgPool):
    """2-D average pooling over the last two axes, as ``torch.nn.AvgPool2d`` (no ceil_mode).

    Per axis as :class:`AvgPool1d` (zero padding):

        y[..., i, j] = (1/D_ij) Σ_{a < kh, b < kw} xpad[..., i·sh + a, j·sw + b]
        dx: dy[..., i, j] / D_ij added to every real input of window (i, j)
        D_ij = kh·kw if count_include_pad, else the number of real inputs in the window

    Parameters
    ----------
    kernel_size : int or tuple of 2 int
        Window (kh, kw); an int is used for both axes (as for ``stride`` and ``padding``).
    stride : int or tuple of 2 int, optional
        Step between windows; ``None`` (the default) means ``kernel_size``.
    padding : int or tuple of 2 int, default 0
        Zeros added on both sides of each axis; at most half the kernel.
    count_include_pad : bool, default True
        Whether the padding zeros count in the divisor D_ij.

    Shape
    -----
    - Input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
    - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, sizes as :class:`MaxPool2d`.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import AvgPool2d
    >>> pool = AvgPool2d(2)
    >>> y = pool(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> y.tolist(), float(pool.backward(np.ones_like(y))[0, 0, 0, 0])
    ([[[[2.5, 4.5], [10.5, 12.5]]]], 0.25)
    """

    _nd = 2


from .adaptive_pool import AdaptiveAvgPool1d, AdaptiveAvgPool2d  # noqa: E402  (re-exported)
