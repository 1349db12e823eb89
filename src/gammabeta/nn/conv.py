"""Convolutions (PyTorch's cross-correlation) via im2col and one GEMM per layer and pass.

Both layers share one 2-D implementation; ``Conv1d`` runs it with H = 1. For an input padded to
``(N, C, Hp, Wp)`` the columns ``cols[g, (c, i, j), (n, ho, wo)] = xpad[n, g·C/G + c,
ho·sh + i·dh, wo·sw + j·dw]`` are read through a strided view and copied once, laid out so the
whole batch is one matrix, then::

    y[:, g]  = W[g] @ cols[g]                      (G groups, W[g] of shape (O/G, C/G·kh·kw))
    dW[g]    = dy[g] @ cols[g]ᵀ                    db = Σ dy over batch and positions
    dcols[g] = W[g]ᵀ @ dy[g]                       dx = col2im(dcols): one add per kernel tap

with ``dy[g]`` the gradient as ``(O/G, N·Ho·Wo)``: one BLAS GEMM per group (a single one for
``groups=1``) instead of one per sample. The forward pass keeps only a reference to its input.
With stride 1 the columns are laid on the padded input grid, each tap one contiguous slice;
other strides gather strided windows. Backward rebuilds the columns for dW (one copy, freed at
once). See :mod:`gammabeta.nn._im2col`.
Weight layout ``(out, in/groups, *kernel)``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import init
from ..backend import accumulate_new, namespace
from ..errors import ConfigError, ShapeError
from . import _args, _im2col
from .module import Module, Parameter, check_float_input, is_grad_enabled

__all__ = ["Conv1d", "Conv2d"]

# Backward computes the columns' gradient for all kernel taps in one GEMM while it stays under
# this size (k·k times the input's); above, one tap at a time (temporaries the size of x).
DCOLS_BYTES = 2**24


class _ConvNd(Module):
    """Shared N-d convolution (N = 1 or 2) built on a 2-D core; see the module docstring."""

    _nd = 0
    _layout = ""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, weight_init="torch_default",
                 bias_init="torch_default", rng=None, dtype=np.float32):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        self.in_channels, self.out_channels, self.groups = (
            _args.integer(name, arg, v, expected="channels and groups >= 1 (ints)")
            for arg, v in (("in_channels", in_channels), ("out_channels", out_channels),
                           ("groups", groups)))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ConfigError(f"{name}: in_channels={in_channels} and out_channels="
                              f"{out_channels} must both be divisible by groups={groups}")
        self.kernel_size = _args.ints(name, "kernel_size", kernel_size, nd, 1)
        self.stride = _args.ints(name, "stride", stride, nd, 1)
        self.dilation = _args.ints(name, "dilation", dilation, nd, 1)
        bias = _args.boolean(name, "bias", bias)
        dtype, rng = _args.float_dtype(name, dtype), _args.generator(name, rng)
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
            self.padding = _args.ints(name, "padding", padding, nd, 0)
            self._pads = tuple((p, p) for p in self.padding)
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
        x4 = x[:, :, None, :] if self._nd == 1 else x
        geom = self._geom2d()
        cols = _im2col.columns(x4, geom, self.groups, xp)
        g, o = self.groups, self.out_channels
        if g == 1:  # one GEMM for the whole batch: (O, Kg) @ (Kg, positions)
            y2 = w.reshape(o, -1) @ cols[0]
        else:
            y2 = xp.matmul(w.reshape(g, o // g, -1), cols).reshape(o, -1)
        # (O, positions) → (N, O, Ho, Wo), the bias added in the same pass
        y = _im2col.output(y2, geom, x4.shape, None if self.bias is None else self.bias.data,
                           xp)
        if is_grad_enabled():  # the input (a reference) is all backward needs
            keep = x4 if self.weight.requires_grad else None
            self._cache = (keep, x4.shape, y.shape[2:], unbatched)
        else:
            self._cache = None
        if self._nd == 1:
            y = y[:, :, 0, :]
        return y[0] if unbatched else y

    def backward(self, dy, input_grad: bool = True):
        """dW, db from dy; returns dx (``None`` with ``input_grad=False``)."""
        x4, (n, c, h, wd), (ho, wo), unbatched = self._saved()
        xp = namespace(dy)
        w = self.weight.data
        out_shape = (n, self.out_channels) + ((ho, wo) if self._nd == 2 else (wo,))
        if unbatched:
            out_shape = out_shape[1:]
        if tuple(dy.shape) != out_shape:
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {out_shape}")
        self._cache = None  # backward consumes the cache (PyTorch frees saved tensors)
        geom, g, o = self._geom2d(), self.groups, self.out_channels
        # dy as (G, O/G, positions): the layout of the GEMMs (one copy)
        dyt = _im2col.dy_columns(dy.astype(w.dtype, copy=False).reshape(n, o, ho, wo), geom,
                                 g, (n, c, h, wd), xp)
        if self.bias is not None and self.bias.requires_grad:
            ones = xp.ones(dyt.shape[-1], dtype=dyt.dtype)
            accumulate_new(self.bias, (dyt.reshape(o, -1) @ ones).astype(w.dtype, copy=False))
        if x4 is not None:
            gw = _im2col.weight_grad(dyt, x4, geom, g, xp)  # (G, O/G, Kg)
            accumulate_new(self.weight, gw.reshape(w.shape))
        if not input_grad:
            return None
        dx = _im2col.col2im(dyt, w, geom, g, (n, c, h, wd), DCOLS_BYTES, xp)
        if self._nd == 1:
            dx = dx[:, :, 0, :]
        return dx[0] if unbatched else dx


class Conv1d(_ConvNd):
    """1-D convolution (PyTorch's cross-correlation) over ``(N, C_in, L)`` inputs.

    With k, s, p, d = ``kernel_size``, ``stride``, ``padding``, ``dilation``, G = ``groups``,
    xpad the zero-padded input, and output channel o in group g = ⌊o·G / C_out⌋ reading the
    input channels g·C_in/G + c, c < C_in/G:

        y[n, o, l]   = b[o] + Σ_c Σ_{j<k} W[o, c, j] · xpad[n, g·C_in/G + c, l·s + j·d]
        db[o]        = Σ_{n,l} dy[n, o, l]
        dW[o, c, j]  = Σ_{n,l} dy[n, o, l] · xpad[n, g·C_in/G + c, l·s + j·d]
        dxpad[n, g·C_in/G + c, l·s + j·d] += Σ_{o in group g} W[o, c, j] · dy[n, o, l]
        L_out = ⌊(L + 2p − d·(k − 1) − 1) / s⌋ + 1

    and dx is dxpad without its padding (computed with one im2col copy and one GEMM per
    group and pass: see the module docstring).

    Parameters
    ----------
    in_channels : int
        C_in; divisible by ``groups``.
    out_channels : int
        C_out; divisible by ``groups``.
    kernel_size : int or tuple of 1 int
        Window length k.
    stride : int or tuple of 1 int, default 1
        Step s between output positions.
    padding : int, tuple of 1 int or {"same", "valid"}, default 0
        Zeros added on both sides; ``"same"`` keeps the length (stride 1; an odd total puts
        the extra zero on the right, as PyTorch does), ``"valid"`` is 0.
    dilation : int or tuple of 1 int, default 1
        Spacing d between the kernel taps.
    groups : int, default 1
        Split the channels into G independent groups (``groups = in_channels``: depthwise).
    bias : bool, default True
        Learn a per-output-channel bias b; ``False`` registers ``bias`` as ``None``.
    weight_init : initializer, default "torch_default"
        Any spec of :func:`gammabeta.init.get`; the default is PyTorch's U(±1/√fan_in),
        ``fan_in = in_channels/groups · k``.
    bias_init : initializer, default "torch_default"
        As ``weight_init``, for b (same fan_in).
    rng : numpy.random.Generator, optional
        Draws the random initial values; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of W and b; float inputs of another dtype are cast to it.

    Attributes
    ----------
    weight : Parameter
        W, of shape ``(out_channels, in_channels/groups, k)``.
    bias : Parameter or None
        b, of shape ``(out_channels,)``; ``None`` when ``bias=False``.

    Shape
    -----
    - Input: ``(N, C_in, L)`` or unbatched ``(C_in, L)``.
    - Output: ``(N, C_out, L_out)`` or ``(C_out, L_out)``, L_out as above, in W's dtype.

    References
    ----------
    - He, Zhang, Ren & Sun (2015), "Delving Deep into Rectifiers", arXiv:1502.01852 (the
      Kaiming initializers behind ``torch_default``).
    - Chellapilla, Puri & Simard (2006), "High Performance Convolutional Neural Networks for
      Document Processing" (convolution as im2col + GEMM).

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Conv1d
    >>> conv = Conv1d(2, 4, kernel_size=3, padding=1, rng=np.random.default_rng(0))
    >>> conv
    Conv1d(2, 4, kernel_size=(3,), stride=(1,), padding=(1,))
    >>> x = np.random.default_rng(1).standard_normal((8, 2, 10)).astype(np.float32)
    >>> y = conv(x)
    >>> y.shape
    (8, 4, 10)
    >>> w, b, xpad = conv.weight.data, conv.bias.data, np.pad(x, ((0, 0), (0, 0), (1, 1)))
    >>> bool(np.isclose(y[0, 1, 5], b[1] + np.sum(w[1] * xpad[0, :, 5:8]), atol=1e-5))
    True
    >>> dx = conv.backward(np.ones_like(y))
    >>> dx.shape, conv.weight.grad.shape, conv.bias.grad.tolist()
    ((8, 2, 10), (4, 2, 3), [80.0, 80.0, 80.0, 80.0])
    >>> Conv1d(2, 4, 3, stride=2, rng=np.random.default_rng(2))(x).shape  # (10 - 3) // 2 + 1
    (8, 4, 4)
    """

    _nd = 1
    _layout = "3-D (N, C, L) or 2-D (C, L)"


class Conv2d(_ConvNd):
    """2-D convolution (PyTorch's cross-correlation) over ``(N, C_in, H, W)`` inputs.

    Per axis as :class:`Conv1d` (k = (kh, kw), s, p, d likewise pairs; groups the same),
    with c' = g·C_in/G + c the input channel that tap c of output channel o reads and
    (r, q) = (i·sh + a·dh, j·sw + e·dw) the input position of tap (a, e) of output (i, j):

        y[n, o, i, j]  = b[o] + Σ_{c, a<kh, e<kw} W[o, c, a, e] · xpad[n, c', r, q]
        db[o]          = Σ_{n,i,j} dy[n, o, i, j]
        dW[o, c, a, e] = Σ_{n,i,j} dy[n, o, i, j] · xpad[n, c', r, q]
        dxpad[n, c', r, q] += Σ_{o in group g} W[o, c, a, e] · dy[n, o, i, j]
        H_out = ⌊(H + 2·ph − dh·(kh − 1) − 1) / sh⌋ + 1,   W_out likewise

    Parameters
    ----------
    in_channels : int
        C_in; divisible by ``groups``.
    out_channels : int
        C_out; divisible by ``groups``.
    kernel_size : int or tuple of 2 int
        Window (kh, kw); an int is used for both axes (as for stride, padding, dilation).
    stride : int or tuple of 2 int, default 1
        Step between output positions.
    padding : int, tuple of 2 int or {"same", "valid"}, default 0
        Zeros added on both sides of each axis; ``"same"`` keeps H and W (stride 1; an odd
        total puts the extra zero at the bottom/right, as PyTorch does).
    dilation : int or tuple of 2 int, default 1
        Spacing between the kernel taps.
    groups : int, default 1
        Split the channels into G independent groups (``groups = in_channels``: depthwise).
    bias : bool, default True
        Learn a per-output-channel bias b; ``False`` registers ``bias`` as ``None``.
    weight_init : initializer, default "torch_default"
        Any spec of :func:`gammabeta.init.get`; the default is PyTorch's U(±1/√fan_in),
        ``fan_in = in_channels/groups · kh · kw``.
    bias_init : initializer, default "torch_default"
        As ``weight_init``, for b (same fan_in).
    rng : numpy.random.Generator, optional
        Draws the random initial values; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of W and b; float inputs of another dtype are cast to it.

    Attributes
    ----------
    weight : Parameter
        W, of shape ``(out_channels, in_channels/groups, kh, kw)``.
    bias : Parameter or None
        b, of shape ``(out_channels,)``; ``None`` when ``bias=False``.

    Shape
    -----
    - Input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
    - Output: ``(N, C_out, H_out, W_out)`` or ``(C_out, H_out, W_out)``, in W's dtype.

    References
    ----------
    - He, Zhang, Ren & Sun (2015), "Delving Deep into Rectifiers", arXiv:1502.01852 (the
      Kaiming initializers behind ``torch_default``).

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Conv2d
    >>> conv = Conv2d(4, 6, 3, padding="same", groups=2, rng=np.random.default_rng(0))
    >>> conv
    Conv2d(4, 6, kernel_size=(3, 3), stride=(1, 1), padding='same', groups=2)
    >>> conv.weight.shape
    (6, 2, 3, 3)
    >>> x = np.random.default_rng(1).standard_normal((2, 4, 5, 7)).astype(np.float32)
    >>> y = conv(x)
    >>> y.shape, conv.backward(np.ones_like(y)).shape
    ((2, 6, 5, 7), (2, 4, 5, 7))
    >>> strided = Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), rng=np.random.default_rng(2))
    >>> strided(x).shape  # ((5 + 2 - 3) // 2 + 1, (7 + 4 - 5) // 2 + 1)
    (2, 8, 3, 4)
    """

    _nd = 2
    _layout = "4-D (N, C, H, W) or 3-D (C, H, W)"
