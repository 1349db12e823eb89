"""Residual connections (He et al. 2016, arXiv:1512.03385) and zero-γ initialization.

``Residual(block, shortcut)`` computes ``y = block(x) + shortcut(x)`` (the shortcut defaults to
the identity); its backward adds the gradients of both paths. :func:`zero_init_residual_` sets γ
of the last BatchNorm in every residual block to 0 (Goyal et al. 2017, arXiv:1706.02677), so
each block starts as the identity map.
"""

from __future__ import annotations

from ..errors import ShapeError
from ._args import ConfigTypeError
from .batchnorm import _BatchNorm
from .module import Module

__all__ = ["Residual", "last_batchnorm", "zero_init_residual_"]


class Residual(Module):
    """``y = block(x) + (shortcut(x) if shortcut else x)``; ``dx = block.backward(dy) + …``.

    Parameters
    ----------
    block : Module
        The residual branch F (e.g. Conv–BN–ReLU–Conv–BN); its state-dict keys start "block.".
    shortcut : Module, optional
        Projection for the skip path when shapes change (e.g. a 1×1 Conv + BN, keys
        "shortcut."); ``None`` is the identity.
    """

    def __init__(self, block: Module, shortcut: Module | None = None):
        super().__init__()
        if not isinstance(block, Module):
            raise ConfigTypeError(f"Residual: block is a {type(block).__name__}; expected a "
                                  "Module")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise ConfigTypeError(f"Residual: shortcut is a {type(shortcut).__name__}; "
                                  "expected a Module or None")
        self.block = block
        self.add_module("shortcut", shortcut)

    def describe(self) -> str:
        return f"Residual({self.block.describe()})"

    def forward(self, x):
        f = self.block(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if f.shape != s.shape:
            raise ShapeError(f"{self.describe()}: the block maps {x.shape} to {f.shape} but the "
                             f"shortcut gives {s.shape}; expected equal shapes (use a "
                             "projection shortcut when the block changes the shape)")
        return f + s

    def backward(self, dy):
        dx = self.block.backward(dy)
        if self.shortcut is None:
            return dx + dy
        return dx + self.shortcut.backward(dy)


def last_batchnorm(module: Module) -> _BatchNorm | None:
    """The last BatchNorm1d/2d inside ``module`` (registration order), or ``None``."""
    last = None
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            last = m
    return last


def zero_init_residual_(model: Module) -> int:
    """Set γ of the last BatchNorm in every :class:`Residual` block to 0; return how many."""
    count = 0
    for m in model.modules():
        if isinstance(m, Residual):
            bn = last_batchnorm(m.block)
            if bn is not None and bn.weight is not None:
                bn.weight.data[...] = 0
                count += 1
    return count
