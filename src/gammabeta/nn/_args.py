"""Checks for layer constructor arguments: one line naming the layer, the argument, what it got
and what it expected (e.g. ``BatchNorm1d: eps=nan; expected a finite number > 0``).

Every helper returns the value converted to its plain Python form (``int``, ``float``,
``bool``, a tuple of ints, a ``numpy.dtype``) or raises :class:`ConfigError`. Sizes are real
integers: Python ints or NumPy integers, never ``bool``, a float (even ``4.0``) or a string.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from ..errors import ConfigError

__all__ = ["ConfigTypeError", "integer", "real", "boolean", "choice", "ints", "sizes",
           "float_dtype", "generator", "show", "is_int", "Unseeded", "warn_unseeded"]

#: Largest size a layer accepts (one axis of one array; far beyond any memory).
MAX_SIZE = 2**31 - 1


class ConfigTypeError(ConfigError, TypeError):
    """A :class:`ConfigError` for an argument of the wrong kind of object (a TypeError too)."""


def show(value) -> str:
    """How a value appears in a message: numbers plainly (``nan``, ``4``, ``~1e40`` for a
    huge int), anything else as its repr on one line, at most 60 characters."""
    if isinstance(value, (Real, np.number)) and not isinstance(value, (bool, np.bool_)):
        if isinstance(value, (Integral, np.integer)):
            v = int(value)
            if abs(v) < 10**20:
                return str(v)
            return f"~{'-' if v < 0 else ''}1e{int((abs(v).bit_length() - 1) * 0.30103)}"
        return repr(float(value)) if isinstance(value, np.floating) else repr(value)
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, dtype={value.dtype})"
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


def integer(layer: str, name: str, value, minimum: int | None = 1,
            maximum: int | None = MAX_SIZE, expected: str | None = None) -> int:
    """``value`` as an ``int``; it must be an integer in ``[minimum, maximum]``.

    Parameters
    ----------
    layer, name : str
        Layer (``"Linear"``) and argument (``"in_features"``) named in the message.
    value : object
        What the caller passed.
    minimum, maximum : int or None
        Inclusive bounds; ``None`` for no bound.
    expected : str, optional
        The message's "expected ..." text, replacing the default.
    """
    ok = is_int(value) and (minimum is None or value >= minimum) \
        and (maximum is None or value <= maximum)
    if not ok:
        if expected is None:
            bounds = [f">= {minimum}"] if minimum is not None else []
            if maximum is not None and is_int(value) and value > maximum:
                bounds = [f"<= {maximum}"]
            expected = "an int" + (" " + bounds[0] if bounds else "")
        raise ConfigError(f"{layer}: {name}={show(value)}; expected {expected}")
    return int(value)


def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


def real(layer: str, name: str, value, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, hi_open: bool = False, allow_none: bool = False,
         note: str = "", expected: str | None = None) -> float | None:
    """``value`` as a finite ``float`` in the interval given by ``lo``/``hi``.

    Parameters
    ----------
    layer, name : str
        Named in the message.
    value : object
        A Python or NumPy int/float (never ``bool`` or a string); ``None`` if ``allow_none``.
    lo, hi : float or None
        Bounds, inclusive unless ``lo_open``/``hi_open``.
    allow_none : bool
        Accept ``None`` (returned as is).
    note : str
        Extra words appended to the "expected ..." text.
    expected : str, optional
        The whole "expected ..." text, replacing the default.
    """
    if value is None and allow_none:
        return None
    x = math.nan
    if _is_real(value):
        try:
            x = float(value)
        except OverflowError:  # a Python int beyond float's range
            x = math.inf
    ok = math.isfinite(x) and (lo is None or (x > lo if lo_open else x >= lo)) \
        and (hi is None or (x < hi if hi_open else x <= hi))
    if not ok:
        what = expected or "a finite number" + _interval(lo, hi, lo_open, hi_open)
        if allow_none and expected is None:
            what = "None or " + what
        raise ConfigError(f"{layer}: {name}={show(value)}; expected {what}{note}")
    return x


def boolean(layer: str, name: str, value) -> bool:
    """``value`` as a ``bool``; only ``True``/``False`` (or NumPy's) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{layer}: {name}={show(value)}; expected True or False")
    return bool(value)


def choice(layer: str, name: str, value, options: tuple):
    """``value`` itself when it is one of ``options`` (compared only with objects of one type)."""
    if not any(isinstance(value, type(o)) and value == o for o in options):
        listed = ", ".join(repr(o) for o in options)
        raise ConfigError(f"{layer}: {name}={show(value)}; expected one of {listed}")
    return value


def ints(layer: str, name: str, value, n: int, minimum: int) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints, each in ``[minimum, MAX_SIZE]``, as a tuple."""
    if is_int(value):
        vals = (value,) * n
    elif isinstance(value, (tuple, list)):
        vals = tuple(value)
    else:
        vals = ()
    if len(vals) != n or not all(is_int(v) for v in vals):
        raise ConfigError(f"{layer}: {name}={show(value)}; expected an int or {n} ints")
    if any(v < minimum for v in vals):
        raise ConfigError(f"{layer}: {name}={show(value)}; expected values >= {minimum}")
    if any(v > MAX_SIZE for v in vals):
        raise ConfigError(f"{layer}: {name}={show(value)}; expected values <= {MAX_SIZE}")
    return tuple(int(v) for v in vals)


def sizes(layer: str, name: str, value) -> tuple[int, ...]:
    """A non-empty tuple or list of ints in ``[1, MAX_SIZE]`` (e.g. a shape), as a tuple."""
    ok = isinstance(value, (tuple, list)) and len(value) > 0 \
        and all(is_int(v) and 1 <= v <= MAX_SIZE for v in value)
    if not ok:
        raise ConfigError(f"{layer}: {name}={show(value)}; expected a non-empty tuple of "
                          "ints >= 1")
    return tuple(int(v) for v in value)


def float_dtype(layer: str, value, name: str = "dtype") -> np.dtype:
    """``value`` as a floating-point ``numpy.dtype`` (float16, float32, float64)."""
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError):
        dt = None
    if value is None or dt is None or dt.kind != "f":
        raise ConfigError(f"{layer}: {name}={value!r}; expected a floating-point dtype such "
                          "as numpy.float32")
    return dt


class Unseeded(np.random.Generator):
    """The generator a layer gets without ``rng=``: unseeded, and said so (see
    :func:`warn_unseeded`) the first time it draws."""


_warned = []


def warn_unseeded(what: str) -> None:
    """One :class:`~gammabeta.errors.UnseededWarning` per process, naming the first draw."""
    if _warned:
        return
    _warned.append(what)
    import warnings

    from ..errors import UnseededWarning

    warnings.warn(f"{what} drew random numbers without rng=, from an unseeded generator: this "
                  "run cannot be repeated; pass rng=numpy.random.default_rng(seed) to every "
                  "layer (shown once)", UnseededWarning, stacklevel=4)


def generator(layer: str, value, name: str = "rng") -> np.random.Generator:
    """``value`` if it is a ``numpy.random.Generator``; for ``None`` a new unseeded one
    (an :class:`Unseeded`, which warns once when a random initializer or a mask draws)."""
    if value is None:
        return Unseeded(np.random.PCG64())
    if not isinstance(value, np.random.Generator):
        raise ConfigError(f"{layer}: {name} is a {type(value).__name__}; expected a "
                          "numpy.random.Generator (numpy.random.default_rng(seed)) or None")
    return value
