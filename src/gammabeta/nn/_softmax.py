"""Softmax and log-softmax along an axis, stable for large values (the losses' building block)."""

from __future__ import annotations

import numpy as np

from ..backend import compute_dtype, is_floating
from ..errors import DTypeError

__all__ = ["softmax", "log_softmax"]


def log_softmax(x, axis: int = -1):
    """Log-softmax along ``axis``: ``x − log Σ exp(x)``, stable for large values.

        log_softmax(x)_i = (x_i − max x) − log Σ_k exp(x_k − max x)

    Subtracting the maximum first means no ``exp`` overflows. Computed in float32 or wider
    (float64 stays float64); the result has the input's dtype.

    Parameters
    ----------
    x : array_like
        Floating-point values (an integer array raises :class:`gammabeta.errors.DTypeError`).
    axis : int, default -1
        The axis to normalize along.

    Returns
    -------
    numpy.ndarray
        The input's shape and dtype; ``exp`` of it sums to 1 along ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import log_softmax
    >>> log_softmax(np.array([2.0, 1.0, 0.1])).round(4).tolist()
    [-0.417, -1.417, -2.317]
    >>> log_softmax(np.array([1000.0, 0.0])).tolist()  # no overflow
    [0.0, -1000.0]
    """
    x = np.asarray(x)
    if not is_floating(x.dtype):
        raise DTypeError(f"log_softmax: got dtype {x.dtype}, expected a floating-point array")
    z = x.astype(compute_dtype(x.dtype), copy=False)
    # (the ufuncs' own reductions: the same values as np.max/np.sum, without their wrapper)
    shifted = z - np.maximum.reduce(z, axis=axis, keepdims=True)
    out = shifted - np.log(np.add.reduce(np.exp(shifted), axis=axis, keepdims=True))
    return out.astype(x.dtype, copy=False)


def softmax(x, axis: int = -1):
    """Softmax along ``axis``: ``exp(x) / Σ exp(x)``, stable for large values.

        softmax(x)_i = exp(x_i − max x) / Σ_k exp(x_k − max x)

    Subtracting the maximum first means no ``exp`` overflows. Computed in float32 or wider;
    the result has the input's dtype.

    Parameters
    ----------
    x : array_like
        Floating-point values (an integer array raises :class:`gammabeta.errors.DTypeError`).
    axis : int, default -1
        The axis to normalize along.

    Returns
    -------
    numpy.ndarray
        Probabilities of the input's shape and dtype, summing to 1 along ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import softmax
    >>> p = softmax(np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]]))
    >>> p.round(4).tolist()
    [[0.659, 0.2424, 0.0986], [0.1161, 0.858, 0.0259]]
    >>> p.sum(axis=1).round(6).tolist()
    [1.0, 1.0]
    >>> softmax(np.array([1000.0, 1000.0])).tolist()  # no overflow
    [0.5, 0.5]
    """
    x = np.asarray(x)
    if not is_floating(x.dtype):
        raise DTypeError(f"softmax: got dtype {x.dtype}, expected a floating-point array")
    z = x.astype(compute_dtype(x.dtype), copy=False)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype, copy=False)
