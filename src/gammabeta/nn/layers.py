"""Shape and regularization layers: Dropout, Flatten, Identity."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import _args
from .mode import current_shard
from .module import Module, check_float_input, is_grad_enabled


class Dropout(Module):
    """Inverted dropout: zero each element with probability ``p`` in training, scale the rest.

    In training, with a fresh mask per call:

        m  ~ Bernoulli(1 − p)  elementwise (drawn from ``rng``)
        y  = x ⊙ m / (1 − p)                 so E[y] = x
        dx = dy ⊙ m / (1 − p)

    In evaluation (``eval()``) or with ``p = 0`` the layer is the identity (it returns its
    input); ``p = 1`` gives zeros. Inside :func:`gammabeta.nn.mode.batch_shard` the mask is
    drawn for the whole global batch and this process keeps its rows, so data-parallel
    training reproduces the masks of a single process.

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing an element, in [0, 1].
    rng : numpy.random.Generator, optional
        Draws the masks; ``None``: a new unseeded generator. Seed it for reproducible runs.

    Shape
    -----
    - Input: any shape ``(*)``, floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov (2014), "Dropout: A Simple
      Way to Prevent Neural Networks from Overfitting", JMLR 15.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Dropout
    >>> drop = Dropout(p=0.5, rng=np.random.default_rng(0))
    >>> x = np.ones((2, 4), dtype=np.float32)
    >>> y = drop(x)
    >>> sorted(set(y.ravel().tolist()))  # dropped: 0, kept: scaled by 1 / (1 - p)
    [0.0, 2.0]
    >>> bool(np.array_equal(drop.backward(np.ones_like(y)), y))  # dx = dy ⊙ m / (1 − p)
    True
    >>> drop.eval()(x) is x  # evaluation: the identity
    True
    """

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
        if isinstance(self.rng, _args.Unseeded):
            _args.warn_unseeded("Dropout")
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
    """Merge the axes ``start_dim`` … ``end_dim`` (inclusive) into one.

    Defaults as in PyTorch (1 and −1): ``(N, C, H, W)`` becomes ``(N, C·H·W)``, ready for a
    :class:`Linear` layer. Backward reshapes ``dy`` back to the input's shape.

    Parameters
    ----------
    start_dim : int, default 1
        First axis to merge (negative counts from the end).
    end_dim : int, default -1
        Last axis to merge (inclusive).

    Shape
    -----
    - Input: ``(*, S_start, …, S_end, *)``.
    - Output: ``(*, S_start · … · S_end, *)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Flatten
    >>> x = np.zeros((2, 3, 4, 5), dtype=np.float32)
    >>> Flatten()(x).shape
    (2, 60)
    >>> flat = Flatten(start_dim=2)
    >>> y = flat(x)
    >>> y.shape, flat.backward(y).shape
    ((2, 3, 20), (2, 3, 4, 5))
    """

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
    """The identity: returns its input unchanged (a placeholder, e.g. for ``--norm none``).

    ``y = x`` and ``dx = dy``. It takes no arguments and has no parameters.

    Shape
    -----
    - Input: any shape ``(*)``.
    - Output: the same array.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Identity
    >>> x = np.arange(3.0)
    >>> layer = Identity()
    >>> layer(x) is x, layer.backward(x) is x
    (True, True)
    """

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy


class Unflatten(Module):
    """Split axis ``dim`` into the axes ``unflattened_size`` (the inverse of :class:`Flatten`).

    E.g. ``(N, 40)`` → ``(N, 1, 40)`` to feed a 1-D signal to :class:`Conv1d`. Backward
    reshapes ``dy`` back to the input's shape.

    Parameters
    ----------
    dim : int
        The axis to split (negative counts from the end).
    unflattened_size : tuple of int
        The new axes; their product must equal the size of axis ``dim``.

    Shape
    -----
    - Input: ``(*, S_dim, *)``.
    - Output: ``(*, U_1, …, U_k, *)`` with ``U_1 · … · U_k = S_dim``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Unflatten
    >>> layer = Unflatten(1, (1, 40))
    >>> y = layer(np.zeros((8, 40), dtype=np.float32))
    >>> y.shape, layer.backward(y).shape
    ((8, 1, 40), (8, 40))
    """

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
