"""Elementwise activations with their closed-form derivatives."""

from __future__ import annotations

import math

from ..backend import erf, namespace
from . import _args
from .module import Module, check_float_input, is_grad_enabled


class _Elementwise(Module):
    """Base: ``forward`` computes y and caches what ``backward`` needs for dy ⊙ f'(x)."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def forward(self, x):
        check_float_input(self, x)
        y, saved = self._f(x)
        self._cache = saved if is_grad_enabled() else None
        return y

    def backward(self, dy):
        saved = self._saved()
        self._cache = None  # backward consumes the cache (PyTorch frees saved tensors)
        return self._df(dy, saved)


class ReLU(_Elementwise):
    """max(x, 0); derivative 1 where x > 0, else 0 (PyTorch's convention at 0).

    Like PyTorch, the backward pass keeps the output (which the next layer holds anyway)
    rather than a mask: y > 0 exactly where x > 0.
    """

    def _f(self, x):
        y = namespace(x).maximum(x, 0)
        return y, y

    def _df(self, dy, y):
        return namespace(dy).multiply(dy, y > 0)


class LeakyReLU(_Elementwise):
    """x if x > 0 else negative_slope · x."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = _args.real("LeakyReLU", "negative_slope", negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def _f(self, x):
        xp = namespace(x)
        mask = x > 0
        return xp.where(mask, x, x * x.dtype.type(self.negative_slope)), mask

    def _df(self, dy, mask):
        xp = namespace(dy)
        return xp.where(mask, dy, dy * dy.dtype.type(self.negative_slope))


class Sigmoid(_Elementwise):
    """σ(x) = 1 / (1 + e^(−x)), computed without overflow; σ' = σ(1 − σ)."""

    def _f(self, x):
        xp = namespace(x)
        e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return y, y

    def _df(self, dy, y):
        return dy * y * (1 - y)


class Tanh(_Elementwise):
    """tanh(x); derivative 1 − tanh²(x)."""

    def _f(self, x):
        y = namespace(x).tanh(x)
        return y, y

    def _df(self, dy, y):
        return dy * (1 - y * y)


class GELU(_Elementwise):
    """x·Φ(x) (``approximate="none"``) or the tanh approximation (``"tanh"``), as in PyTorch."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = _args.choice("GELU", "approximate", approximate, ("none", "tanh"))

    def extra_repr(self):
        return f"approximate={self.approximate!r}"

    def _f(self, x):
        xp = namespace(x)
        if self.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            t = xp.tanh(k * (x + 0.044715 * x**3))
            return (0.5 * x * (1 + t)).astype(x.dtype, copy=False), (x, t)
        cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
        return (x * cdf).astype(x.dtype, copy=False), (x, cdf)

    def _df(self, dy, saved):
        xp = namespace(dy)
        x, s = saved
        if self.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            d = 0.5 * (1 + s) + 0.5 * x * (1 - s * s) * k * (1 + 3 * 0.044715 * x * x)
        else:
            pdf = xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
            d = s + x * pdf
        return (dy * d).astype(dy.dtype, copy=False)
