"""Convolutions (PyTorch's cross-correlation) via im2col and one batched GEMM per call.

Both layers share one 2-D implementation; ``Conv1d`` runs it with H = 1. For an input padded to
``(N, C, Hp, Wp)`` the columns ``cols[n, (c, i, j), (ho, wo)] = xpad[n, c, ho·sh + i·dh,
wo·sw + j·dw]`` are read through a strided view and copied once, then::

    y[n, g]  = W[g] @ cols[n, g]                   (G groups, W[g] of shape (O/G, C/G·kh·kw))
    dW[g]    = Σ_n dy[n, g] @ cols[n, g]ᵀ          db = Σ dy over batch and positions
    dcols    = W[g]ᵀ @ dy[n, g]                    dx = col2im(dcols): kh·kw strided adds

all groups in one broadcast ``matmul`` (BLAS). Weight layout ``(out, in/groups, *kernel)``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import init
from ..backend import namespace
from ..errors import ConfigError, ShapeError
from .module import Module, Parameter, check_float_input, is_grad_enabled

__all__ = ["Conv1d", "Conv2d"]


def _ntuple(value, n: int, what: str, layer: str, minimum: int) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints (each ``>= minimum``) as an ``n``-tuple."""
    vals = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(vals) != n or not all(isinstance(v, (int, np.integer)) for v in vals):
        raise ConfigError(f"{layer}: {what}={value!r}; expected an int or {n} ints")
    if any(v < minimum for v in vals):
        raise ConfigError(f"{layer}: {what}={value!r}; expected values >= {minimum}")
    return tuple(int(v) for v in vals)


def _windows(a, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, ho: int, wo: int):
    """Read-only view ``(*lead, kh, kw, ho, wo)`` of the sliding windows over the last two axes."""
    *lead, _, _ = a.shape
    st = a.strides
    shape = (*lead, kh, kw, ho, wo)
    strides = (*st[:-2], st[-2] * dh, st[-1] * dw, st[-2] * sh, st[-1] * sw)
    return as_strided(a, shape=shape, strides=strides, writeable=False)


def _out_size(padded: int, k: int, s: int, d: int) -> int:
    return (padded - d * (k - 1) - 1) // s + 1


class _ConvNd(Module):
    """Shared N-d convolution (N = 1 or 2) built on a 2-D core; see the module docstring."""

    _nd = 0
    _layout = ""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, weight_init="torch_default",
                 bias_init="torch_default", rng=None, dtype=np.float32):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        self.in_channels, self.out_channels, self.groups = \
            int(in_channels), int(out_channels), int(groups)
        if self.in_channels < 1 or self.out_channels < 1 or self.groups < 1:
            raise ConfigError(f"{name}({in_channels}, {out_channels}, groups={groups}): "
                              "expected channels and groups >= 1")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ConfigError(f"{name}: in_channels={in_channels} and out_channels="
                              f"{out_channels} must both be divisible by groups={groups}")
        self.kernel_size = _ntuple(kernel_size, nd, "kernel_size", name, 1)
        self.stride = _ntuple(stride, nd, "stride", name, 1)
        self.dilation = _ntuple(dilation, nd, "dilation", name, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ConfigError(f"{name}: padding={padding!r}; expected 'same', 'valid', an "
                                  f"int or {nd} ints")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ConfigError(f"{name}: padding='same' needs stride 1, got stride="
                                  f"{self.stride}")
            self.padding = padding
            totals = [d * (k - 1) if padding == "same" else 0
                      for k, d in zip(self.kernel_size, self.dilation, strict=True)]
            self._pads = tuple((t // 2, t - t // 2) for t in totals)
        else:
            self.padding = _ntuple(padding, nd, "padding", name, 0)
            self._pads = tuple((p, p) for p in self.padding)
        rng = np.random.default_rng() if rng is None else rng
        cg = self.in_channels // self.groups
        fan_in = cg * math.prod(self.kernel_size)
        fan_out = self.out_channels // self.groups * math.prod(self.kernel_size)
        shape = (self.out_channels, cg, *self.kernel_size)
        self.weight = Parameter(init.initialize(weight_init, shape, rng, dtype=dtype,
                                                fan_in=fan_in, fan_out=fan_out,
                                                what=f"{name}.weight"))
        if bias:
            self.bias = Parameter(init.initialize(bias_init, (self.out_channels,), rng,
                                                  dtype=dtype, fan_in=fan_in, fan_out=fan_out,
                                                  what=f"{name}.bias"))
        else:
            self.register_parameter("bias", None)
        self._cache = None

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, " \
            f"stride={self.stride}"
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    # ----- geometry: everything as 2-D (a 1-D conv is a 2-D conv with H = 1) -----------------
    def _geom2d(self):
        k, s, d, p = self.kernel_size, self.stride, self.dilation, self._pads
        if self._nd == 1:
            return (1, *k), (1, *s), (1, *d), ((0, 0), *p)
        return k, s, d, p

    def _check_input(self, x):
        check_float_input(self, x)
        nd = self._nd
        if x.ndim not in (nd + 1, nd + 2):
            raise ShapeError(f"{self.describe()}: got a {x.ndim}-D input of shape {x.shape}, "
                             f"expected {self._layout}")
        c = x.shape[-nd - 1]
        if c != self.in_channels:
            raise ShapeError(f"{self.describe()}: got {c} input channels (input shape "
                             f"{x.shape}), expected {self.in_channels} channels")
        sizes = x.shape[-nd:]
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(sizes, self._pads, strict=True))
        need = tuple(d * (k - 1) + 1
                     for k, d in zip(self.kernel_size, self.dilation, strict=True))
        if any(p < q for p, q in zip(padded, need, strict=True)):
            raise ShapeError(f"{self.describe()}: input spatial size {tuple(sizes)} (padded "
                             f"{padded}) is smaller than the dilated kernel; expected at least "
                             f"{need} after padding")

    # ----- forward / backward ------------------------------------------------------------------
    def forward(self, x):
        self._check_input(x)
        xp = namespace(x)
        w = self.weight.data
        if x.dtype != w.dtype:
            x = x.astype(w.dtype)
        unbatched = x.ndim == self._nd + 1
        if unbatched:
            x = x[None]
        (kh, kw), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = self._geom2d()
        x4 = x[:, :, None, :] if self._nd == 1 else x
        n, c, h, wd = x4.shape
        if pt or pb or pl or pr:
            x4 = xp.pad(x4, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        hp, wp = x4.shape[2:]
        ho, wo = _out_size(hp, kh, sh, dh), _out_size(wp, kw, sw, dw)
        g = self.groups
        kg = c // g * kh * kw
        # im2col: one copy of the strided windows, laid out (N, G, Kg, P) for the matmul
        cols = _windows(x4, kh, kw, sh, sw, dh, dw, ho, wo).reshape(n, g, kg, ho * wo)
        w3 = w.reshape(g, self.out_channels // g, kg)
        y = xp.matmul(w3, cols).reshape(n, self.out_channels, ho, wo)
        if self.bias is not None:
            y += self.bias.data.reshape(1, -1, 1, 1)
        if is_grad_enabled():
            keep = cols if self.weight.requires_grad else None
            self._cache = (keep, (n, c, h, wd), (hp, wp), (ho, wo), unbatched)
        else:
            self._cache = None
        if self._nd == 1:
            y = y[:, :, 0, :]
        return y[0] if unbatched else y

    def backward(self, dy):
        cols, (n, c, h, wd), (hp, wp), (ho, wo), unbatched = self._saved()
        xp = namespace(dy)
        w = self.weight.data
        out_shape = (n, self.out_channels) + ((ho, wo) if self._nd == 2 else (wo,))
        if unbatched:
            out_shape = out_shape[1:]
        if tuple(dy.shape) != out_shape:
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {out_shape}")
        (kh, kw), (sh, sw), (dh, dw), ((pt, _), (pl, _)) = self._geom2d()
        g, og = self.groups, self.out_channels // self.groups
        kg = c // g * kh * kw
        dy3 = dy.astype(w.dtype, copy=False).reshape(n, g, og, ho * wo)
        if self.bias is not None:
            self.bias.accumulate(dy3.sum(axis=(0, 3)).reshape(-1))
        if cols is not None:
            gw = xp.matmul(dy3, cols.swapaxes(-1, -2)).sum(axis=0)  # (G, O/G, Kg)
            self.weight.accumulate(gw.reshape(w.shape))
        if sh == 1 and sw == 1:
            dx = self._dx_transposed(dy3.reshape(n, -1, ho, wo), (h, wd), xp)
        else:  # dcols = Wᵀ dy, then col2im: add each kernel offset's slab back where it was read
            dcols = xp.matmul(w.reshape(g, og, kg).swapaxes(-1, -2), dy3)
            dcols = dcols.reshape(n, c, kh, kw, ho, wo)
            dxp = xp.zeros((n, c, hp, wp), dtype=w.dtype)
            for i in range(kh):
                for j in range(kw):
                    r0, c0 = i * dh, j * dw
                    dxp[:, :, r0:r0 + sh * (ho - 1) + 1:sh, c0:c0 + sw * (wo - 1) + 1:sw] += \
                        dcols[:, :, i, j]
            dx = dxp[:, :, pt:pt + h, pl:pl + wd]
        if self._nd == 1:
            dx = dx[:, :, 0, :]
        dx = xp.ascontiguousarray(dx)
        return dx[0] if unbatched else dx

    def _dx_transposed(self, dy4, hw, xp):
        """Stride 1: dx is dy (shifted by the dilated kernel extent minus the padding) correlated
        with the flipped kernel, channels swapped within each group — im2col + one matmul."""
        (kh, kw), _, (dh, dw), ((pt, _), (pl, _)) = self._geom2d()
        h, wd = hw
        n, o, ho, wo = dy4.shape
        g, c = self.groups, self.in_channels
        eh, ew = dh * (kh - 1), dw * (kw - 1)
        # rows r of the shifted dy hold dy[r - (eh - pt)]; it needs h + eh rows (w + ew columns)
        dys = _shift(_shift(dy4, 2, eh - pt, h + eh - ho - (eh - pt), xp),
                     3, ew - pl, wd + ew - wo - (ew - pl), xp)
        cols = _windows(dys, kh, kw, 1, 1, dh, dw, h, wd).reshape(n, g, o // g * kh * kw, h * wd)
        wt = self.weight.data.reshape(g, o // g, c // g, kh, kw)[..., ::-1, ::-1]
        wt = wt.transpose(0, 2, 1, 3, 4).reshape(g, c // g, o // g * kh * kw)
        return xp.matmul(wt, cols).reshape(n, c, h, wd)


def _shift(a, axis: int, lo: int, hi: int, xp):
    """Zero-pad (positive) or crop (negative) ``lo``/``hi`` entries at the ends of ``axis``."""
    sl = [slice(None)] * a.ndim
    sl[axis] = slice(max(0, -lo), a.shape[axis] - max(0, -hi))
    a = a[tuple(sl)]
    if lo > 0 or hi > 0:
        pads = [(0, 0)] * a.ndim
        pads[axis] = (max(0, lo), max(0, hi))
        a = xp.pad(a, pads)
    return a


class Conv1d(_ConvNd):
    """1-D convolution over ``(N, C_in, L)`` (or unbatched ``(C_in, L)``) inputs.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output; both divisible by ``groups``.
    kernel_size, stride, dilation : int or tuple of 1 int
        Window length, step and spacing of the taps (``stride`` and ``dilation`` default 1).
    padding : int, tuple or {"same", "valid"}, default 0
        Zeros added on both sides; ``"same"`` keeps the length (stride 1; an odd total puts the
        extra zero on the right, as PyTorch does).
    groups : int, default 1
        Split channels into independent groups (``groups = in_channels``: depthwise).
    bias : bool, default True
        Learn a per-output-channel bias.
    weight_init, bias_init : initializer, default "torch_default"
        Any spec of :func:`gammabeta.init.get`; the default is U(±1/√fan_in) with
        ``fan_in = in_channels/groups · kernel_size`` for both W and b.
    rng : numpy.random.Generator, optional
    dtype : default float32
        dtype of W and b; float inputs of another dtype are cast to it.
    """

    _nd = 1
    _layout = "3-D (N, C, L) or 2-D (C, L)"


class Conv2d(_ConvNd):
    """2-D convolution over ``(N, C_in, H, W)`` (or unbatched ``(C_in, H, W)``) inputs.

    Same parameters as :class:`Conv1d`, with ``kernel_size``, ``stride``, ``padding`` and
    ``dilation`` an int or a pair ``(h, w)``; weight shape ``(out, in/groups, kh, kw)``.
    """

    _nd = 2
    _layout = "4-D (N, C, H, W) or 3-D (C, H, W)"
