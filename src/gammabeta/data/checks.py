"""Checks shared by every reader of user data (``train`` and ``predict``): features, labels.

Each raises :class:`~gammabeta.errors.DataError` with one line naming the file and array
(``where``), the index or row, the value it got and what it expected.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gammabeta.data.limits import MAX_CLASSES
from gammabeta.errors import ConfigError, DataError

__all__ = ["check_features", "check_labels", "check_pair", "check_classes"]


def check_features(x: np.ndarray, where: str) -> np.ndarray:
    """Check a feature array (numeric, >= 2-D, samples, finite) and return it as float32."""
    if x.dtype.kind not in "fiub":
        raise DataError(f"{where} has dtype {x.dtype}; expected numeric features")
    if x.ndim < 2:
        raise DataError(
            f"{where} has shape {x.shape}; expected (N, features...) with at least 2 "
            "dimensions (reshape a single feature to (N, 1))"
        )
    if len(x) == 0:
        raise DataError(f"{where} has shape {x.shape}, so it holds no samples; expected at "
                        "least one")
    if x.size == 0:
        raise DataError(f"{where} has shape {x.shape}, so its samples hold no features; "
                        "expected at least one value per sample")
    bad = ~np.isfinite(x) if x.dtype.kind == "f" else None
    if bad is not None and bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{where} holds {int(bad.sum())} NaN/inf values (first at index {first}); "
            "expected finite features"
        )
    with np.errstate(over="ignore"):
        out = x.astype(np.float32)
    if not np.all(np.isfinite(out)):
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        raise DataError(f"{where} has values too large for float32 (first at index {first}: "
                        f"{x[first].item()!r}); expected |x| < 3.4e38")
    return out


def _show(v) -> str:
    """A label value as the user wrote it: integral floats without '.0', true uint64 values."""
    v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v)


def check_labels(
    y: np.ndarray,
    where: str,
    max_classes: int = MAX_CLASSES,
    *,
    at: Callable[[int], tuple[str, str]] | None = None,
) -> np.ndarray:
    """Check labels are class indices ``0..K-1`` with ``K <= max_classes``; return int64.

    ``y`` must be 1-D with an integer, boolean or float dtype; float labels must be
    integral (3.0 is 3). uint64 values are compared before any conversion, so 2**64-1 is
    reported as itself. ``at(i)`` (for CSV files) gives ``(location, cell text)`` of label
    ``i`` for the message; without it the message names ``where[i]`` and the value.
    """
    if isinstance(max_classes, bool) or not isinstance(max_classes, int | np.integer) \
            or max_classes < 2:
        raise ConfigError(f"max_classes={max_classes!r}; expected an int >= 2")
    if y.dtype.kind not in "fiub":
        raise DataError(f"{where} has dtype {y.dtype}; expected integer class labels")
    if y.ndim != 1:
        raise DataError(f"{where} has shape {y.shape}; expected 1-D labels (N,)")
    limit = f"labels must be class indices 0..K-1 with K <= {max_classes}"

    def fail(i: int, problem: str, csv_problem: str) -> None:
        if at is None:
            raise DataError(f"{where}[{i}] = {_show(y[i])} {problem}; {limit}")
        loc, cell = at(i)
        raise DataError(f"{loc}: label {cell.strip()!r} {csv_problem}; {limit}")

    if not y.size:
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(y) | (y != np.floor(y))
        if bad.any():
            fail(int(np.argmax(bad)), "is not an integer", "is not a non-negative integer")
    if y.dtype.kind in "if":
        neg = y < 0
        if neg.any():
            fail(int(np.argmax(neg)), "is negative", "is not a non-negative integer")
    big = y >= max_classes
    if big.any():
        fail(int(np.argmax(big)), "is too large", "is too large")
    return y.astype(np.int64)


def check_pair(x: np.ndarray, y: np.ndarray, where: str, xname: str, yname: str) -> None:
    """Raise DataError unless x and y hold the same, non-zero, number of samples."""
    if len(x) != len(y):
        raise DataError(
            f"{where}: {xname} has {len(x)} samples but {yname} has {len(y)}; "
            "expected the same number"
        )
    if len(x) == 0:
        raise DataError(f"{where}: {xname} holds no samples; expected at least one")


def check_classes(y: np.ndarray, where: str) -> None:
    """Raise DataError if the training labels ``y`` hold fewer than 2 distinct classes."""
    classes = np.unique(y)
    if classes.size < 2:
        which = f"only class {_show(classes[0])}" if classes.size else "no labels"
        raise DataError(f"{where} holds {which}; a classifier needs at least 2 classes")
