"""Adaptive average pooling (PyTorch's ``AdaptiveAvgPool1d/2d``): an output of a fixed size
whatever the input's, each output cell the mean of its window ``[⌊i·L/n⌋, ⌈(i+1)·L/n⌉)``."""

from __future__ import annotations

from ..backend import namespace
from ..errors import ConfigError, ShapeError
from . import _args
from .module import Module, is_grad_enabled
from .pool import _as3d

__all__ = ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d"]


def _adaptive_matrix(n_in: int, n_out: int, dtype, xp):
    """``A`` of shape ``(n_out, n_in)``: row i averages x[⌊i·n_in/n_out⌋ : ⌈(i+1)·n_in/n_out⌉]."""
    a = xp.zeros((n_out, n_in), dtype=dtype)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a


class _AdaptiveAvgPool(Module):
    """``y = A_h · x · A_wᵀ`` with PyTorch's adaptive windows; backward ``A_hᵀ · dy · A_w``."""

    _nd = 0

    def __init__(self, output_size):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        vals = tuple(output_size) if isinstance(output_size, (tuple, list)) \
            else (output_size,) * nd
        if len(vals) != nd or any(v is not None and not (
                _args.is_int(v) and 1 <= v <= _args.MAX_SIZE) for v in vals):
            raise ConfigError(f"{name}: output_size={_args.show(output_size)}; expected an "
                              f"int >= 1 (or None to keep the input size) or {nd} of them")
        self.output_size = tuple(None if v is None else int(v) for v in vals)
        self._cache = None

    def extra_repr(self) -> str:
        return f"output_size={self.output_size if self._nd > 1 else self.output_size[0]}"

    def forward(self, x):
        xp = namespace(x)
        x3 = _as3d(self, x, self._nd)
        h, w = x3.shape[1:]
        oh, ow = (1, *self.output_size) if self._nd == 1 else self.output_size
        oh, ow = oh or h, ow or w
        ah = _adaptive_matrix(h, oh, x.dtype, xp)
        aw = _adaptive_matrix(w, ow, x.dtype, xp)
        y = xp.matmul(ah, xp.matmul(x3, aw.T))
        self._cache = (ah, aw, x.shape) if is_grad_enabled() else None
        lead = x.shape[:-self._nd]
        return y.reshape(lead + ((ow,) if self._nd == 1 else (oh, ow)))

    def backward(self, dy):
        ah, aw, x_shape = self._saved()
        xp = namespace(dy)
        out = (aw.shape[0],) if self._nd == 1 else (ah.shape[0], aw.shape[0])
        want = x_shape[:-self._nd] + out
        if tuple(dy.shape) != want:
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {want}")
        self._cache = None  # backward consumes the cache (PyTorch frees saved tensors)
        dy3 = dy.reshape(-1, ah.shape[0], aw.shape[0]).astype(ah.dtype, copy=False)
        return xp.matmul(ah.T, xp.matmul(dy3, aw)).reshape(x_shape)


class AdaptiveAvgPool1d(_AdaptiveAvgPool):
    """Average the last axis down to a fixed length ``output_size`` (1: global average pooling).

    Output o averages the window ``[⌊o·L/L_out⌋, ⌈(o+1)·L/L_out⌉)`` (PyTorch's windows). With
    A of shape (L_out, L) holding 1/|window o| on row o: ``y = x Aᵀ`` and ``dx = dy A``.

    Parameters
    ----------
    output_size : int or None
        L_out; ``None`` keeps the input length.

    Shape
    -----
    - Input: ``(N, C, L)`` or unbatched ``(C, L)``.
    - Output: ``(N, C, L_out)`` or ``(C, L_out)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import AdaptiveAvgPool1d
    >>> x = np.arange(6.0).reshape(1, 1, 6)
    >>> AdaptiveAvgPool1d(4)(x).tolist()  # windows [0, 2), [1, 3), [3, 5), [4, 6)
    [[[0.5, 1.5, 3.5, 4.5]]]
    """

    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPool):
    """Average the last two axes down to a fixed ``output_size`` (1: global average pooling).

    Each axis as :class:`AdaptiveAvgPool1d`, with A_h (H_out, H) and A_w (W_out, W):
    ``y = A_h · x · A_wᵀ`` and ``dx = A_hᵀ · dy · A_w`` per sample and channel.

    Parameters
    ----------
    output_size : int, None or tuple of 2 (int or None)
        (H_out, W_out); an int is used for both, ``None`` keeps that axis's input size.

    Shape
    -----
    - Input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
    - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import AdaptiveAvgPool2d
    >>> gap = AdaptiveAvgPool2d(1)
    >>> y = gap(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> y.tolist(), float(gap.backward(np.ones_like(y))[0, 0, 2, 3])  # dx = 1 / (H·W)
    ([[[[7.5]]]], 0.0625)
    >>> AdaptiveAvgPool2d((2, None))(np.zeros((3, 4, 5))).shape
    (3, 2, 5)
    """

    _nd = 2
