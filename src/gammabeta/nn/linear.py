"""Linear (fully connected) layer: y = x Wᵀ + b, with W of shape (out_features, in_features)."""

from __future__ import annotations

import numpy as np

from .. import init
from ..backend import accumulate_new
from ..errors import ShapeError
from . import _args
from .module import Module, Parameter, check_float_input, is_grad_enabled


class Linear(Module):
    """Fully connected layer: ``y = x Wᵀ + b``, with a closed-form backward.

    With ``x`` and ``dy`` seen as rows ``(M, in_features)`` and ``(M, out_features)`` (M the
    product of the leading axes):

        y  = x Wᵀ + b          W: (out_features, in_features),  b: (out_features,)
        dW = dyᵀ x             added to weight.grad
        db = Σ_rows dy         added to bias.grad
        dx = dy W

    Parameters
    ----------
    in_features : int
        Size of each input sample (the last axis of ``x``).
    out_features : int
        Size of each output sample.
    bias : bool, default True
        Learn the additive bias b; ``False`` registers ``bias`` as ``None``.
    weight_init : initializer, default "torch_default"
        Any spec of :func:`gammabeta.init.get`: a registered name (``"kaiming_normal"``, ...),
        a number, a callable or an array. The default is PyTorch's
        U(−1/√in_features, 1/√in_features) (``kaiming_uniform`` with a = √5).
    bias_init : initializer, default "torch_default"
        As ``weight_init``, for b; the default is U(±1/√in_features) as well.
    rng : numpy.random.Generator, optional
        Draws the random initial values; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of W and b; a float input of another dtype is cast to it.

    Attributes
    ----------
    weight : Parameter
        W, of shape ``(out_features, in_features)``.
    bias : Parameter or None
        b, of shape ``(out_features,)``; ``None`` when ``bias=False``.

    Shape
    -----
    - Input: ``(*, in_features)``, any number of leading axes ``*``.
    - Output: ``(*, out_features)``, in W's dtype; ``backward`` returns dx of the input's shape.

    References
    ----------
    - He, Zhang, Ren & Sun (2015), "Delving Deep into Rectifiers", arXiv:1502.01852 (the
      Kaiming initializers; ``torch_default`` is ``kaiming_uniform`` with a = √5).

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Linear
    >>> layer = Linear(3, 2, rng=np.random.default_rng(0))
    >>> layer
    Linear(in_features=3, out_features=2, bias=True)
    >>> x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    >>> y = layer(x)
    >>> y.shape
    (4, 2)
    >>> bool(np.allclose(y, x @ layer.weight.data.T + layer.bias.data))
    True
    >>> dx = layer.backward(np.ones((4, 2), dtype=np.float32))
    >>> dx.shape, layer.weight.grad.shape
    ((4, 3), (2, 3))
    >>> layer.bias.grad.tolist()
    [4.0, 4.0]
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_init="torch_default", bias_init="torch_default", rng=None,
                 dtype=np.float32):
        super().__init__()
        self.in_features = _args.integer("Linear", "in_features", in_features)
        self.out_features = _args.integer("Linear", "out_features", out_features)
        bias = _args.boolean("Linear", "bias", bias)
        dtype = _args.float_dtype("Linear", dtype)
        rng = _args.generator("Linear", rng)
        w = init.initialize(weight_init, (self.out_features, self.in_features), rng,
                            dtype=dtype, what="Linear.weight")
        self.weight = Parameter(w)
        if bias:
            b = init.initialize(bias_init, (self.out_features,), rng, dtype=dtype,
                                fan_in=self.in_features, fan_out=self.out_features,
                                what="Linear.bias")
            self.bias = Parameter(b)
        else:
            self.register_parameter("bias", None)
        self._cache = None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"

    def forward(self, x):
        check_float_input(self, x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"{self.describe()}: got input of shape {x.shape}, expected "
                             f"(*, {self.in_features})")
        w = self.weight.data
        if x.dtype != w.dtype:
            x = x.astype(w.dtype)
        y = x @ w.T
        if self.bias is not None:
            y += self.bias.data
        self._cache = x if is_grad_enabled() else None
        return y

    def backward(self, dy, input_grad: bool = True):
        """dW += dyᵀx, db += Σ dy; returns dx = dy·W (``None`` with ``input_grad=False``)."""
        x = self._saved()
        if dy.shape != x.shape[:-1] + (self.out_features,):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {x.shape[:-1] + (self.out_features,)}")
        self._cache = None  # backward consumes the cache (PyTorch frees saved tensors)
        dy2 = dy.reshape(-1, self.out_features)
        x2 = x.reshape(-1, self.in_features)
        if self.weight.requires_grad:
            accumulate_new(self.weight, dy2.T @ x2)
        if self.bias is not None and self.bias.requires_grad:
            accumulate_new(self.bias, dy2.sum(axis=0))
        return dy @ self.weight.data if input_grad else None
