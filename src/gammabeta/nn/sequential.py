"""Sequential: a chain of layers whose backward runs them in reverse."""

from __future__ import annotations

import functools
import inspect

from ._args import ConfigTypeError as _ConfigTypeError
from .module import Module

__all__ = ["Sequential", "backward_params_only"]


class Sequential(Module):
    """A chain of layers: ``y = f_k(…f_2(f_1(x)))``; backward runs them in reverse.

        forward:   x_0 = x,   x_i = f_i(x_(i−1)),   y = x_k
        backward:  g_k = dy,  g_(i−1) = f_i.backward(g_i),   dx = g_0

    The layers are children named ``"0"``, ``"1"``, … (PyTorch's state-dict keys
    ``"0.weight"``). ``seq[i]`` is a layer, ``seq[i:j]`` a new Sequential sharing the layers,
    ``len(seq)`` the count; :meth:`append` adds a layer.

    Parameters
    ----------
    *modules : Module
        The layers, in order.

    Shape
    -----
    - Input: what the first layer accepts.
    - Output: what the last layer returns (the input itself when empty).

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Linear, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> model = Sequential(Linear(4, 8, rng=rng), ReLU(), Linear(8, 2, rng=rng))
    >>> len(model), model.num_parameters(), list(model.state_dict())
    (3, 58, ['0.weight', '0.bias', '2.weight', '2.bias'])
    >>> x = rng.standard_normal((5, 4)).astype(np.float32)
    >>> y = model(x)
    >>> y.shape, model.backward(np.ones_like(y)).shape, model[2].weight.grad.shape
    ((5, 2), (5, 4), (2, 8))
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for m in modules:
            self.append(m)

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise _ConfigTypeError(f"Sequential: layer {len(self._modules)} is a "
                                   f"{type(module).__name__}; expected a Module")
        self.add_module(str(len(self._modules)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dy, input_grad: bool = True):
        """Run the layers' backward in reverse; returns dx. With ``input_grad=False`` (the
        training loop's call: its input is data, as a PyTorch tensor that does not require
        grad) the gradient of the input is not computed and ``None`` is returned: layers
        before the first one with parameters are skipped, and that layer is told to skip
        its own dx when it can (Linear, Conv: the largest avoidable GEMM of an MLP step)."""
        mods = list(self._modules.values())
        if input_grad:
            for m in reversed(mods):
                dy = m.backward(dy)
            return dy
        first = next((i for i, m in enumerate(mods) if any(True for _ in m.parameters())),
                     len(mods))
        for m in reversed(mods[first + 1:]):
            dy = m.backward(dy)
        if first < len(mods):
            backward_params_only(mods[first], dy)
        return None


@functools.cache
def _skips_input_grad(cls) -> bool:
    return "input_grad" in inspect.signature(cls.backward).parameters


def backward_params_only(module: Module, dy) -> None:
    """``module.backward(dy)`` for the parameter gradients only: with ``input_grad=False``
    where the module's backward takes it (gammabeta's Sequential, Linear, Conv), else the
    plain call (a user's own module), whose dx is dropped."""
    if _skips_input_grad(type(module)):
        module.backward(dy, input_grad=False)
    else:
        module.backward(dy)
