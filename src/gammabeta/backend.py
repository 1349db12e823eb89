"""The array namespace used by every layer: NumPy today, CuPy later, chosen from the arrays.

Layers never reach for a global ``np``: they ask ``xp = namespace(x)`` and do their math with
``xp``. Adding a GPU backend means teaching :func:`namespace` about CuPy arrays, nothing more.
"""

from __future__ import annotations

import numpy

__all__ = ["namespace", "to_numpy", "compute_dtype", "is_floating"]


def namespace(*arrays):
    """Return the array module (``numpy`` or ``cupy``) that owns ``arrays``."""
    for a in arrays:
        mod = type(a).__module__.split(".")[0]
        if mod == "cupy":  # pragma: no cover - no GPU backend yet
            import cupy

            return cupy
    return numpy


def to_numpy(a):
    """Return ``a`` as a NumPy array (a no-op for NumPy arrays)."""
    if hasattr(a, "get") and type(a).__module__.split(".")[0] == "cupy":  # pragma: no cover
        return a.get()
    return numpy.asarray(a)


def compute_dtype(dtype):
    """The dtype in which statistics are accumulated: float32 or wider (float16 -> float32)."""
    return numpy.promote_types(dtype, numpy.float32)


def is_floating(dtype) -> bool:
    """True for real floating-point dtypes."""
    return numpy.issubdtype(dtype, numpy.floating)


def erf(x):
    """Elementwise error function in the array's own namespace (used by exact GELU)."""
    xp = namespace(x)
    if xp is numpy:
        from scipy.special import erf as _erf

        return _erf(x)
    import cupyx.scipy.special  # pragma: no cover

    return cupyx.scipy.special.erf(x)  # pragma: no cover
