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
    """Residual connection: ``y = F(x) + S(x)``, with S the identity unless a shortcut is given.

    Forward and backward (F = ``block``, S = ``shortcut`` or the identity):

        y  = F(x) + S(x)
        dx = F.backward(dy) + S.backward(dy)          (identity shortcut: + dy)

    F(x) and S(x) must have the same shape: when the block changes it (stride, channels),
    pass a projection shortcut, e.g. a 1×1 :class:`Conv2d` followed by :class:`BatchNorm2d`.
    See :func:`zero_init_residual_` to start every block as the identity.

    Parameters
    ----------
    block : Module
        The residual branch F (e.g. Conv–BN–ReLU–Conv–BN); its state-dict keys start
        ``"block."``.
    shortcut : Module, optional
        The projection S for the skip path (keys ``"shortcut."``); ``None`` (the default) is
        the identity.

    Shape
    -----
    - Input: whatever ``block`` (and ``shortcut``) accept.
    - Output: the shape of ``block(x)``, equal to that of ``shortcut(x)`` (or of x).

    References
    ----------
    - He, Zhang, Ren & Sun (2016), "Deep Residual Learning for Image Recognition", CVPR,
      arXiv:1512.03385.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Linear, ReLU, Residual, Sequential
    >>> rng = np.random.default_rng(0)
    >>> res = Residual(Sequential(Linear(4, 4, rng=rng), ReLU(), Linear(4, 4, rng=rng)))
    >>> x = rng.standard_normal((8, 4)).astype(np.float32)
    >>> y = res(x)
    >>> bool(np.allclose(y, res.block(x) + x))
    True
    >>> res.backward(np.ones_like(y)).shape
    (8, 4)
    >>> proj = Residual(Linear(4, 6, rng=rng), shortcut=Linear(4, 6, bias=False, rng=rng))
    >>> proj(x).shape, list(proj.state_dict())
    ((8, 6), ['block.weight', 'block.bias', 'shortcut.weight'])
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
    """The last BatchNorm layer inside ``module``, in registration order, or ``None``.

    Any :class:`BatchNorm1d`, :class:`BatchNorm2d` or :class:`SyncBatchNorm` counts,
    ``module`` itself included; used by :func:`zero_init_residual_`.

    Parameters
    ----------
    module : Module
        The tree to search (depth first, as :meth:`Module.modules`).

    Returns
    -------
    BatchNorm1d, BatchNorm2d, SyncBatchNorm or None

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import BatchNorm1d, Linear, ReLU, Sequential, last_batchnorm
    >>> rng = np.random.default_rng(0)
    >>> block = Sequential(Linear(4, 4, rng=rng), BatchNorm1d(4), ReLU(),
    ...                    Linear(4, 4, rng=rng), BatchNorm1d(4))
    >>> last_batchnorm(block) is block[4], last_batchnorm(block[0]) is None
    (True, True)
    """
    last = None
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            last = m
    return last


def zero_init_residual_(model: Module) -> int:
    """Set γ of the last BatchNorm in every :class:`Residual` block to 0; return how many.

    With γ = 0 (and β = 0) the last BatchNorm outputs 0, so each block's ``y = F(x) + x``
    starts as the identity map: PyTorch's ``zero_init_residual=True`` in torchvision's
    ResNets. Blocks without a BatchNorm, or whose last one has ``affine=False``, are left
    alone. Changes ``model`` in place.

    Parameters
    ----------
    model : Module
        Searched for :class:`Residual` blocks (at any depth).

    Returns
    -------
    int
        The number of BatchNorm layers whose γ was set to 0.

    References
    ----------
    - Goyal et al. (2017), "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
      arXiv:1706.02677.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import (BatchNorm1d, Linear, ReLU, Residual, Sequential,
    ...                           zero_init_residual_)
    >>> rng = np.random.default_rng(0)
    >>> block = Sequential(Linear(4, 4, rng=rng), BatchNorm1d(4), ReLU(),
    ...                    Linear(4, 4, rng=rng), BatchNorm1d(4))
    >>> model = Sequential(Residual(block), ReLU())
    >>> zero_init_residual_(model)
    1
    >>> block[4].weight.data.tolist(), block[1].weight.data.tolist()
    ([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0])
    >>> x = rng.standard_normal((8, 4)).astype(np.float32)
    >>> bool(np.allclose(model[0](x), x))  # each block starts as the identity
    True
    """
    count = 0
    for m in model.modules():
        if isinstance(m, Residual):
            bn = last_batchnorm(m.block)
            if bn is not None and bn.weight is not None:
                bn.weight.data[...] = 0
                count += 1
    return count
