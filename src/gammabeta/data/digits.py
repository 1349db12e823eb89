"""scikit-learn's bundled 8x8 handwritten digits, scaled to [0, 1] and split with a fixed seed."""

from __future__ import annotations

import numpy as np

from gammabeta.data.dataset import Dataset, split

__all__ = ["load_digits"]


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load the 1,797 8x8 digits as (N, 64) float32 in [0, 1], split by a seeded permutation."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, y_train, x_test, y_test = split(x, y, test_fraction, np.random.default_rng(seed))
    note = (
        f"scikit-learn digits: {len(x):,} images, split {len(x_train):,}/{len(x_test):,} "
        f"with seed {seed}"
    )
    return Dataset("digits", x_train, y_train, x_test, y_test, 10, note).validate()
