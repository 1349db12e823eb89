"""Value checks for :meth:`Module.load_state_dict`: each returns ``None`` when the entry is
acceptable, or one phrase naming the key, what it holds and what was expected (the caller
prefixes ``<Model>.load_state_dict:`` and raises :class:`StateDictError`).

They run on every entry before anything is copied, so a refused state dict leaves the model
exactly as it was.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_array", "nonfinite", "negative", "count"]

_INT64_MAX = int(np.iinfo(np.int64).max)


def _index(a, mask) -> tuple[int, ...]:
    """The first index where ``mask`` is true, as a tuple of ints (``()`` for a scalar)."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def as_array(key: str, value):
    """``(array, None)`` for a numeric array-like value, ``(None, problem)`` otherwise."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        return None, f"key {key!r} holds a {type(value).__name__} that is not an array ({e})"
    return arr, None


def nonfinite(key: str, value: np.ndarray, target_dtype) -> str | None:
    """NaN or ±inf in a float entry, or finite values that overflow the model's float dtype."""
    if value.dtype.kind != "f":
        return None
    if not np.isfinite(value.sum(dtype=np.float64)):  # one pass in the usual (finite) case
        bad = ~np.isfinite(value)
        if bad.any():
            at = _index(value, bad)
            return (f"{key!r} holds {int(bad.sum())} non-finite values (first at index "
                    f"{at}: {value[at]}); expected finite numbers")
    target = np.dtype(target_dtype)
    if target.kind == "f" and target.itemsize < value.dtype.itemsize:
        limit = float(np.finfo(target).max)
        big = np.abs(value) > limit
        if big.any():
            at = _index(value, big)
            return (f"{key!r} holds {int(big.sum())} values beyond {target}'s range (first "
                    f"at index {at}: {value[at]:g}); expected |x| <= {limit:.3g}")
    return None


def negative(state, key: str, what: str) -> str | None:
    """A negative value in ``state[key]`` (e.g. a running variance), if the key is present."""
    value = state.get(key)
    if value is None or value.dtype.kind == "u":
        return None
    neg = value < 0
    if not neg.any():
        return None
    at = _index(value, neg)
    return (f"{key!r} holds a negative value {value[at]} at index {at}; expected {what} >= 0")


def count(state, key: str) -> str | None:
    """``state[key]`` must be a whole number in [0, 2**63 - 1] (a counter such as
    ``num_batches_tracked``); floats like 2.0 pass, 2.5, -3 and booleans do not."""
    value = state.get(key)
    if value is None:
        return None
    expected = f"expected a whole number in [0, {_INT64_MAX}]"
    if value.dtype.kind == "b":
        return f"{key!r} holds a boolean ({value}); {expected}"
    bad = value.reshape(-1)
    if value.dtype.kind == "f":
        wrong = (bad != np.floor(bad)) | (bad < 0) | (bad >= 2.0**63)
    elif value.dtype.kind == "u":
        wrong = bad > np.uint64(_INT64_MAX)
    else:
        wrong = bad < 0
    if wrong.any():
        return f"{key!r} holds {bad[np.argmax(wrong)]}; {expected}"
    return None
