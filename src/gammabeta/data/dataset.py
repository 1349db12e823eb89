"""The Dataset container, a seeded train/test split, and file helpers shared by the loaders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gammabeta.errors import ConfigError, DataError

__all__ = ["Dataset", "split", "validation_split", "default_cache_dir"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of (x float32, y int64) arrays with its number of classes.

    Parameters
    ----------
    name : str
        Short name of the dataset ("mnist1d", "digits", a file name, ...).
    x_train, y_train, x_test, y_test : numpy.ndarray
        Features (float, first axis = samples) and integer labels (1-D).
    num_classes : int
        Labels lie in ``[0, num_classes)``.
    note : str
        Anything the loader wants the user to know (cache hits, splits it made).

    Notes
    -----
    ``eq=False``: two datasets compare by identity, since comparing arrays
    element-wise has no single truth value.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    note: str = ""
    columns: tuple = ()  # feature column names, for data read from a CSV with a header

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, ``x_train.shape[1:]``."""
        return tuple(self.x_train.shape[1:])

    def validate(self) -> Dataset:
        """Check shapes, dtypes, label range, finiteness and that y_train holds at least 2
        classes; return self or raise DataError."""
        where = f"dataset {self.name!r}"
        nc = self.num_classes
        if isinstance(nc, bool) or not isinstance(nc, int | np.integer) or nc < 1:
            raise DataError(f"{where}: num_classes must be a positive int, got {nc!r}")
        for part in ("train", "test"):
            x = getattr(self, f"x_{part}")
            y = getattr(self, f"y_{part}")
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
                raise DataError(
                    f"{where}: x_{part} and y_{part} must be numpy arrays, "
                    f"got {type(x).__name__} and {type(y).__name__}"
                )
            if x.ndim < 2:
                raise DataError(
                    f"{where}: x_{part} has shape {x.shape}; expected (N, features...) "
                    "with at least 2 dimensions"
                )
            if y.ndim != 1:
                raise DataError(f"{where}: y_{part} has shape {y.shape}; expected 1-D (N,)")
            if x.shape[0] != y.shape[0]:
                raise DataError(
                    f"{where}: x_{part} has {x.shape[0]} samples but y_{part} has "
                    f"{y.shape[0]}; expected the same number"
                )
            if x.shape[0] == 0:
                raise DataError(f"{where}: the {part} split is empty; expected at least 1 sample")
            if not np.issubdtype(x.dtype, np.floating):
                raise DataError(f"{where}: x_{part} has dtype {x.dtype}; expected a float dtype")
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"{where}: y_{part} has dtype {y.dtype}; expected integers")
            if not np.all(np.isfinite(x)):
                bad = int(np.count_nonzero(~np.isfinite(x)))
                raise DataError(f"{where}: x_{part} holds {bad} NaN/inf values; expected finite")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= nc:
                raise DataError(
                    f"{where}: y_{part} has labels in [{lo}, {hi}]; "
                    f"expected integers in [0, {nc})"
                )
        classes = np.unique(self.y_train)
        if classes.size < 2:
            raise DataError(f"{where}: y_train holds only class {int(classes[0])}; a classifier "
                            "needs at least 2 classes")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{where}: x_train samples have shape {self.x_train.shape[1:]} but x_test "
                f"samples have shape {self.x_test.shape[1:]}; expected the same"
            )
        return self


def split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split (x, y) by a permutation drawn from ``rng``; return x_train, y_train, x_test, y_test.

    ``round(N * test_fraction)`` samples go to the test part; both parts get at least one.
    """
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(
            f"split: rng must be a numpy.random.Generator, got {type(rng).__name__}; "
            "pass numpy.random.default_rng(seed)"
        )
    tf = float(test_fraction)
    if not 0.0 < tf < 1.0:
        raise ConfigError(f"split: test_fraction must be in (0, 1), got {test_fraction!r}")
    n = len(x)
    if len(y) != n:
        raise DataError(f"split: x has {n} samples but y has {len(y)}; expected the same number")
    n_test = int(round(n * tf))
    if n_test < 1 or n - n_test < 1:
        raise DataError(
            f"split: cannot split {n} samples with test_fraction={tf:g}; "
            "expected at least one sample in both train and test"
        )
    perm = rng.permutation(n)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def validation_split(y: np.ndarray, fraction: float, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified hold-out: indices ``(train, val)`` with ``round(n_c * fraction)`` samples
    of every class ``c`` in ``val`` (at least one sample of the class stays in train).

    Each part keeps the data's order (sorted indices), so training batches are drawn from
    the remaining samples exactly as from a smaller training set.
    """
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("validation_split: rng must be a numpy.random.Generator; pass "
                          "numpy.random.default_rng(seed)")
    if not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"validation_split: fraction={fraction!r}; expected a number in (0, 1)")
    y = np.asarray(y)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(int(round(len(idx) * fraction)), len(idx) - 1)
        if k > 0:
            val.append(rng.choice(idx, size=k, replace=False))
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    if len(val_idx) == 0:
        raise DataError(f"a validation fraction of {fraction:g} of {len(y)} training samples "
                        "holds out none (each class keeps at least one for training); use a "
                        "larger fraction or 0 for no validation split")
    keep = np.ones(len(y), dtype=bool)
    keep[val_idx] = False
    return np.flatnonzero(keep), val_idx


def default_cache_dir() -> Path:
    """Cache folder: ``$GAMMABETA_CACHE`` if set, else ``~/.cache/gammabeta``."""
    env = os.environ.get("GAMMABETA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gammabeta"
