"""Parameter: a trainable array with its gradient (PyTorch's ``nn.Parameter``)."""

from __future__ import annotations

__all__ = ["Parameter"]


class Parameter:
    """A trainable array: ``data`` holds the values, ``grad`` the accumulated gradient.

    A layer's backward adds ∂L/∂θ with :meth:`accumulate` (``grad ← grad + g``; allocated in
    ``data``'s dtype on first use; ignored for a frozen parameter); an optimizer updates
    ``data`` in place from ``grad``; :meth:`Module.zero_grad` resets ``grad`` to ``None``.
    Assigning a Parameter to a :class:`Module` attribute registers it.

    Parameters
    ----------
    data : numpy.ndarray
        The values (kept as given, not copied).
    requires_grad : bool, default True
        ``False`` freezes the parameter: :meth:`accumulate` ignores its gradients.

    Attributes
    ----------
    grad : numpy.ndarray or None
        The accumulated gradient (``data``'s shape and dtype); ``None`` before a backward.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Parameter
    >>> p = Parameter(np.zeros((2, 3), dtype=np.float32))
    >>> p, p.size, p.grad is None
    (Parameter(shape=(2, 3), dtype=float32), 6, True)
    >>> for _ in range(2):
    ...     p.accumulate(np.ones((2, 3)))
    >>> p.grad.tolist(), p.grad.dtype
    ([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], dtype('float32'))
    >>> frozen = Parameter(np.zeros(2), requires_grad=False)
    >>> frozen.accumulate(np.ones(2)) or frozen.grad is None
    True
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad: bool = True):
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    def accumulate(self, g) -> None:
        """Add ``g`` to ``.grad`` (allocating it on first use), unless the parameter is frozen."""
        if not self.requires_grad:
            return
        if self.grad is None:
            self.grad = g.astype(self.data.dtype, copy=True)
        else:
            self.grad += g

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
