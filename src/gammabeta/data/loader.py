"""Mini-batch iteration over (x, y) arrays, shuffled by an explicit Generator."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gammabeta.errors import ConfigError, DataError

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over (xb, yb) mini-batches of ``x`` and ``y``.

    Parameters
    ----------
    x, y : numpy.ndarray
        Inputs and targets with the same first dimension N.
    batch_size : int
        Samples per batch (>= 1).
    shuffle : bool
        Draw a new permutation from ``rng`` at the start of every epoch (every ``iter``).
    drop_last : bool
        Drop a trailing batch smaller than ``batch_size``.
    rng : numpy.random.Generator, optional
        Required when ``shuffle=True``; the same seed gives the same batches.

    Notes
    -----
    A trailing batch of exactly one sample is always dropped, even with
    ``drop_last=False``: BatchNorm cannot compute a batch variance from one sample.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int = 100,
        shuffle: bool = True,
        drop_last: bool = False,
        rng: np.random.Generator | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ConfigError(f"DataLoader: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ConfigError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if shuffle and rng is None:
            raise ConfigError(
                "DataLoader: shuffle=True needs rng; pass rng=numpy.random.default_rng(seed)"
            )
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ConfigError(
                f"DataLoader: rng must be a numpy.random.Generator, got {type(rng).__name__}; "
                "pass numpy.random.default_rng(seed)"
            )
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim == 0 or y.ndim == 0:
            raise DataError(
                f"DataLoader: x has shape {x.shape} and y has shape {y.shape}; "
                "expected arrays with a first (sample) dimension"
            )
        if len(x) != len(y):
            raise DataError(
                f"DataLoader: x has {len(x)} samples but y has {len(y)}; "
                "expected the same number"
            )
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.rng = rng
        if len(self) == 0:
            raise DataError(
                f"DataLoader: {len(x)} samples with batch_size={self.batch_size} and "
                f"drop_last={self.drop_last} give no batches (a lone trailing sample is "
                "always dropped); expected at least one batch"
            )

    @property
    def num_samples(self) -> int:
        """Number of samples N."""
        return len(self.x)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (1 if rest > 1 and not self.drop_last else 0)

    def order(self) -> np.ndarray | None:
        """This epoch's sample order: a fresh permutation from ``rng`` with shuffle, else None."""
        return self.rng.permutation(len(self.x)) if self.shuffle else None

    def batches(self, order: np.ndarray | None, start: int = 0):
        """Yield the batches of one epoch in ``order``, beginning at batch ``start``."""
        n, bs = len(self.x), self.batch_size
        for b in range(start, len(self)):
            lo, hi = b * bs, min((b + 1) * bs, n)
            if order is None:
                yield self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                yield self.x[idx], self.y[idx]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the epoch's batches; with shuffle, a fresh permutation each call."""
        return self.batches(self.order())
