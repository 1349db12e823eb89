"""Shape and regularization layers: Dropout, Flatten, Identity."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import _args
from .mode import current_shard
from .module import Module, check_float_input, is_grad_enabled


class Dropout(Module):
    """Inverted dropout: in training y = x ⊙ m / (1 − p), m ~ Bernoulli(1 − p); identity in eval."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p = _args.real("Dropout", "p", p, 0.0, 1.0,
                            expected="a probability in [0, 1] (a finite number)")
        self.rng = _args.generator("Dropout", rng)
        self._cache = None

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        check_float_input(self, x)
        if not self.training or self.p == 0.0:
            self._cache = ("identity", None)
            return x
        if self.p == 1.0:
            self._cache = ("zero", None)
            return x * 0
        scale = x.dtype.type(1.0 / (1.0 - self.p))
        shard = current_shard()
        if shard is not None and shard[1] - shard[0] == len(x):  # my rows of the global mask
            draw = self.rng.random((shard[2], *x.shape[1:]), dtype=np.float32)[shard[0]:shard[1]]
        else:
            draw = self.rng.random(x.shape, dtype=np.float32)
        mask = (draw >= self.p) * scale
        mask = mask.astype(x.dtype, copy=False)
        self._cache = ("mask", mask) if is_grad_enabled() else None
        return x * mask

    def backward(self, dy):
        kind, mask = self._saved()
        if kind == "identity":
            return dy
        if kind == "zero":
            return dy * 0
        return dy * mask


class Flatten(Module):
    """Merge dimensions ``start_dim`` … ``end_dim`` into one (PyTorch's defaults 1, −1)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = _args.integer("Flatten", "start_dim", start_dim, None, None, "an int")
        self.end_dim = _args.integer("Flatten", "end_dim", end_dim, None, None, "an int")
        self._cache = None

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        nd = x.ndim
        s = self.start_dim % nd if nd else 0
        e = self.end_dim % nd if nd else 0
        if nd == 0 or s > e:
            raise ShapeError(f"{self.describe()}: cannot flatten an input of shape {x.shape}")
        self._cache = x.shape
        new = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
        return x.reshape(new)

    def backward(self, dy):
        return dy.reshape(self._saved())


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for ``--norm none``)."""

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size`` (e.g. (N, 40) → (N, 1, 40))."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim = _args.integer("Unflatten", "dim", dim, None, None, "an int")
        self.unflattened_size = _args.sizes("Unflatten", "unflattened_size", unflattened_size)
        self._cache = None

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def forward(self, x):
        d = self.dim % x.ndim if x.ndim else 0
        if x.ndim == 0 or x.shape[d] != int(np.prod(self.unflattened_size)):
            raise ShapeError(f"{self.describe()}: got input of shape {x.shape}, expected "
                             f"{int(np.prod(self.unflattened_size))} entries on axis {self.dim}")
        self._cache = x.shape
        return x.reshape(x.shape[:d] + self.unflattened_size + x.shape[d + 1:])

    def backward(self, dy):
        return dy.reshape(self._saved())
