"""Linear (fully connected) layer: y = x Wᵀ + b, with W of shape (out_features, in_features)."""

from __future__ import annotations

import numpy as np

from .. import init
from ..backend import accumulate_new
from ..errors import ShapeError
from . import _args
from .module import Module, Parameter, check_float_input, is_grad_enabled


class Linear(Module):
    """``y = x @ W.T + b``; backward ``dW = dyᵀ x``, ``db = Σ dy``, ``dx = dy W``.

    Defaults follow PyTorch (``weight_init`` and ``bias_init`` = ``"torch_default"``,
    U(±1/√in_features)); any name, callable or array accepted by :func:`gammabeta.init.get`.
    Inputs of shape ``(*, in_features)``; a float input of another dtype is cast to W's dtype.
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

    def backward(self, dy):
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
        return dy @ self.weight.data
