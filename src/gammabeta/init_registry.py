"""The initializer registry, and the checks every registered initializer runs first.

:func:`register` adds a function ``(shape, rng, **kwargs) -> array`` under one or more names,
wrapped by :func:`_checked`, so ``gammabeta.init.normal((3,), rng, std=inf)`` is refused the
same way as the string ``"normal(std=inf)"``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import numpy as np

from .errors import ConfigError

__all__ = ["REGISTRY", "register", "names", "check_kwargs"]

REGISTRY: dict[str, Callable] = {}


def _checked(fn: Callable) -> Callable:
    """``fn`` with its arguments checked first: a shape of whole numbers >= 0, a
    ``numpy.random.Generator`` where one is needed, finite numbers where the defaults are
    numbers (each refused with a :class:`ConfigError` naming the initializer)."""
    params = inspect.signature(fn).parameters
    needs_rng = params["rng"].default is inspect.Parameter.empty

    @functools.wraps(fn)
    def wrapper(shape, rng=None, **kwargs):
        dims = (shape,) if isinstance(shape, int | np.integer) else shape
        if not isinstance(dims, tuple | list) or not all(
                isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0
                for d in dims):
            raise ConfigError(f"{fn.__name__}: shape={shape!r}; expected a tuple of whole "
                              "numbers >= 0")
        if (needs_rng or rng is not None) and not isinstance(rng, np.random.Generator):
            raise ConfigError(f"{fn.__name__}: rng={rng!r}; expected a numpy.random.Generator "
                              "(numpy.random.default_rng(seed))")
        check_kwargs(fn, fn.__name__, {k: v for k, v in kwargs.items() if k != "dtype"})
        out = fn(tuple(int(d) for d in dims), rng, **kwargs)
        if not np.isfinite(out).all():
            raise ConfigError(f"{fn.__name__}: the arguments {kwargs} give values beyond "
                              f"{np.asarray(out).dtype}'s range; expected finite values")
        return out

    return wrapper


def register(*names: str):
    """Decorator adding an initializer to the registry under one or more names (with its
    arguments checked, see :func:`_checked`)."""

    def deco(fn):
        fn = _checked(fn)
        for n in names:
            REGISTRY[n] = fn
        return fn

    return deco


def names() -> list[str]:
    """All registered initializer names, sorted."""
    return sorted(REGISTRY)


def check_kwargs(fn, name, params) -> None:
    """Refuse arguments ``fn`` does not take, and values of the wrong kind: a finite number
    where the default is a number, text where it is text, fans that are whole numbers >= 1."""
    accepted = inspect.signature(fn).parameters
    bad = [k for k in params if k not in accepted]
    if bad:
        ok = [k for k, p in accepted.items() if p.kind == p.KEYWORD_ONLY and k != "dtype"]
        raise ConfigError(f"initializer {name!r}: unknown argument(s) {bad}; it takes {ok}")
    for key, value in params.items():  # a number where the default is a number, and finite
        default = accepted[key].default
        if isinstance(default, int | float) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value)):
            raise ConfigError(f"initializer {name!r}: {key}={value!r}; expected a finite number")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"initializer {name!r}: {key}={value!r}; expected text")
        if key in ("fan_in", "fan_out") and value is not None and (
                isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
            raise ConfigError(f"initializer {name!r}: {key}={value!r}; expected a whole "
                              "number >= 1")
