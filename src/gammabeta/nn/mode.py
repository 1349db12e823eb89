"""Global switches (no_grad, anomaly detection) and the input checks every layer shares."""

from __future__ import annotations

import contextlib

import numpy as np

from ..backend import is_floating, namespace
from ..errors import DTypeError, NonFiniteError, ShapeError

__all__ = ["no_grad", "is_grad_enabled", "detect_anomaly", "set_detect_anomaly",
           "is_anomaly_enabled", "check_finite", "check_float_input", "batch_shard",
           "current_shard"]

_GRAD_ENABLED = True
_ANOMALY = False


@contextlib.contextmanager
def no_grad():
    """Context manager: inside it layers keep no cache for backward (inference mode).

    Forward passes compute the same outputs but store nothing for ``backward`` (less memory,
    faster); ``backward`` after such a forward raises ``RuntimeError`` in every layer that
    needs a cache (Linear, Conv, BatchNorm, activations, pooling). The previous mode
    comes back on exit (blocks nest). Like ``torch.no_grad``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Linear, is_grad_enabled, no_grad
    >>> layer = Linear(3, 2, rng=np.random.default_rng(0))
    >>> with no_grad():
    ...     y = layer(np.ones((4, 3), dtype=np.float32))
    ...     print(is_grad_enabled())
    False
    >>> is_grad_enabled(), y.shape
    (True, (4, 2))
    >>> layer.backward(np.ones_like(y))
    Traceback (most recent call last):
        ...
    RuntimeError: Linear(...).backward: no cached forward pass; call forward (outside no_grad()) ...
    """
    global _GRAD_ENABLED
    prev, _GRAD_ENABLED = _GRAD_ENABLED, False
    try:
        yield
    finally:
        _GRAD_ENABLED = prev


def is_grad_enabled() -> bool:
    """``True`` unless inside :func:`no_grad` (then layers keep no cache for backward).

    Returns
    -------
    bool

    Examples
    --------
    >>> from gammabeta.nn import is_grad_enabled, no_grad
    >>> is_grad_enabled()
    True
    >>> with no_grad():
    ...     print(is_grad_enabled())
    False
    """
    return _GRAD_ENABLED


_SHARD: tuple[int, int, int] | None = None


@contextlib.contextmanager
def batch_shard(start: int, stop: int, total: int):
    """The layers' input is rows ``start:stop`` of a global batch of ``total`` rows (data-
    parallel training: each process holds a share of every batch).

    Layers that draw random numbers per sample (:class:`~gammabeta.nn.Dropout`) draw for
    the whole global batch and keep their rows, so every process consumes its generator
    exactly as one process training on the whole batch would: same seed, same masks.
    """
    global _SHARD
    prev, _SHARD = _SHARD, (int(start), int(stop), int(total))
    try:
        yield
    finally:
        _SHARD = prev


def current_shard() -> tuple[int, int, int] | None:
    """``(start, stop, total)`` inside :func:`batch_shard`, else None."""
    return _SHARD


def set_detect_anomaly(mode: bool) -> None:
    """Turn the non-finite checks on or off for every layer call (off by default).

    While on, calling a :class:`Module` checks its input and its output and raises
    :class:`gammabeta.errors.NonFiniteError` naming the layer and the first NaN/inf index.
    It costs a pass over each array. :func:`detect_anomaly` is the scoped form.

    Parameters
    ----------
    mode : bool
        ``True`` to check, ``False`` to stop checking.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import ReLU, is_anomaly_enabled, set_detect_anomaly
    >>> set_detect_anomaly(True)
    >>> try:
    ...     ReLU()(np.array([1.0, np.nan]))
    ... finally:
    ...     set_detect_anomaly(False)
    Traceback (most recent call last):
        ...
    gammabeta.errors.NonFiniteError: ReLU(): non-finite input at index (1,) (value nan); ...
    >>> is_anomaly_enabled()
    False
    """
    global _ANOMALY
    _ANOMALY = bool(mode)


def is_anomaly_enabled() -> bool:
    """``True`` while the non-finite checks of :func:`set_detect_anomaly` are on.

    Returns
    -------
    bool

    Examples
    --------
    >>> from gammabeta.nn import detect_anomaly, is_anomaly_enabled
    >>> is_anomaly_enabled()
    False
    >>> with detect_anomaly():
    ...     print(is_anomaly_enabled())
    True
    """
    return _ANOMALY


@contextlib.contextmanager
def detect_anomaly():
    """Context manager: non-finite checks on inside it (like ``torch.autograd.detect_anomaly``).

    Within the block every layer call checks its input and output for NaN/inf (see
    :func:`set_detect_anomaly`); the previous setting comes back on exit.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Sigmoid, detect_anomaly, is_anomaly_enabled
    >>> with detect_anomaly():
    ...     Sigmoid()(np.array([0.0, np.inf]))
    Traceback (most recent call last):
        ...
    gammabeta.errors.NonFiniteError: Sigmoid(): non-finite input at index (1,) (value inf); ...
    >>> is_anomaly_enabled()
    False
    """
    prev = _ANOMALY
    set_detect_anomaly(True)
    try:
        yield
    finally:
        set_detect_anomaly(prev)


def check_finite(layer, a, what: str) -> None:
    """Raise NonFiniteError naming ``layer`` and the first bad index if ``a`` has NaN/inf."""
    xp = namespace(a)
    if isinstance(a, np.ndarray) and is_floating(a.dtype) and not xp.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise NonFiniteError(
            f"{layer.describe()}: non-finite {what} at index {tuple(int(i) for i in bad)} "
            f"(value {a[tuple(bad)]}); expected finite numbers"
        )


def check_float_input(layer, x, min_ndim: int | None = None, ndims=None):
    """Refuse non-arrays, integer/bool/complex dtypes and wrong ranks with a clear error."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise DTypeError(
            f"{layer.describe()}: got {type(x).__name__}, expected a floating-point array"
        )
    if not is_floating(x.dtype):
        raise DTypeError(
            f"{layer.describe()}: got an array of dtype {x.dtype}, expected a floating-point "
            f"array; convert it explicitly, e.g. x.astype(numpy.float32)"
        )
    if ndims is not None and x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ShapeError(f"{layer.describe()}: got a {x.ndim}-D input of shape {x.shape}, "
                         f"expected {want}")
    return x
