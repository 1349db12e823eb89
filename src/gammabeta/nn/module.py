"""Module, Parameter and Sequential: the PyTorch-shaped skeleton every layer hangs on.

A layer computes ``forward(x)`` and keeps what its backward pass needs; ``backward(dy)``
returns ``dx`` and *accumulates* the parameter gradients into ``Parameter.grad``.
Parameters (trained by optimizers) and buffers (running statistics, counters) live in two
separate dictionaries, so an optimizer can never touch a running mean.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np

from ..backend import is_floating
from ..errors import StateDictError
from . import _state
from .mode import (  # noqa: F401  (re-exported: layers import them from here)
    check_finite,
    check_float_input,
    detect_anomaly,
    is_anomaly_enabled,
    is_grad_enabled,
    no_grad,
    set_detect_anomaly,
)
from .parameter import Parameter

__all__ = [
    "Parameter",
    "Module",
    "Sequential",
    "no_grad",
    "is_grad_enabled",
    "detect_anomaly",
    "set_detect_anomaly",
    "is_anomaly_enabled",
]


class Module:
    """Base class of every layer: parameters, buffers and submodules registered by assignment.

    A subclass calls ``super().__init__()`` and implements the two passes of y = f(x; θ),
    with dy = ∂L/∂y for a scalar loss L:

        forward(x)   → y = f(x; θ)            keeping what backward needs
        backward(dy) → dx = (∂f/∂x)ᵀ dy,      θ.grad += (∂f/∂θ)ᵀ dy for every parameter θ

    Gradients *accumulate* (call :meth:`zero_grad` between steps). Assigning a
    :class:`Parameter` registers a trainable parameter and assigning a Module a child, under
    PyTorch's dotted state-dict keys (``"0.weight"``); :meth:`register_buffer` adds state
    that is saved but not trained (running statistics). Calling the module runs ``forward``
    plus the anomaly checks and forward hooks; ``train()`` / ``eval()`` set ``training`` on
    the whole tree.

    Attributes
    ----------
    training : bool
        ``True`` after construction and ``train()``, ``False`` after ``eval()``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import Module, Parameter
    >>> class Scale(Module):
    ...     '''y = x ⊙ g per feature; backward dg = Σ_rows dy ⊙ x, dx = dy ⊙ g.'''
    ...     def __init__(self, n):
    ...         super().__init__()
    ...         self.gain = Parameter(np.ones(n, dtype=np.float32))
    ...         self.register_buffer("calls", np.array(0))
    ...     def forward(self, x):
    ...         self.calls += 1
    ...         self._cache = x
    ...         return x * self.gain.data
    ...     def backward(self, dy):
    ...         x = self._saved()
    ...         self.gain.accumulate((dy * x).sum(axis=0))
    ...         return dy * self.gain.data
    >>> layer = Scale(3)
    >>> list(layer.state_dict()), [name for name, _ in layer.named_parameters()]
    (['gain', 'calls'], ['gain'])
    >>> y = layer(np.full((2, 3), 2.0, dtype=np.float32))
    >>> layer.backward(np.ones_like(y)).shape, layer.gain.grad.tolist(), int(layer.calls)
    ((2, 3), [4.0, 4.0, 4.0], 1)
    >>> layer.eval().training
    False
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ----- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() first")
        params, bufs, mods = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, Parameter):
            bufs.pop(name, None), mods.pop(name, None), d.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None), bufs.pop(name, None), d.pop(name, None)
            mods[name] = value
        elif name in bufs:
            bufs[name] = value
        elif name in params or name in mods:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}.{name}: cannot assign {type(value).__name__}; "
                    "expected a Parameter/Module or None"
                )
            (params if name in params else mods)[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        """Add a buffer (state that is saved but not trained); ``None`` keeps the slot empty."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value
        if not persistent:
            self._non_persistent.add(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter; ``None`` records that the slot exists but is empty."""
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def add_module(self, name: str, module: Module) -> None:
        """Add a child module under ``name``."""
        self._modules[name] = module

    # ----- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """All modules in the tree, this one first, with dotted names."""
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """All modules in the tree, this one first (:meth:`named_modules` without names)."""
        yield self
        for m in self._modules.values():
            if m is not None:
                yield from m.modules()

    def children(self) -> Iterator[Module]:
        yield from (m for m in self._modules.values() if m is not None)

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """``(dotted_name, Parameter)`` pairs, PyTorch's naming (``"0.weight"``)."""
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, p in m._parameters.items():
                if p is not None:
                    yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for m in self.modules() if recurse else (self,):
            for p in m._parameters.values():
                if p is not None:
                    yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mprefix}.{name}" if mprefix else name), b

    def buffers(self, recurse: bool = True):
        for m in self.modules() if recurse else (self,):
            for b in m._buffers.values():
                if b is not None:
                    yield b

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return sum(p.size for p in self.parameters())

    # ----- modes and gradients ------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and all children (BatchNorm, Dropout care)."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Inference mode: BatchNorm uses running statistics, Dropout is the identity."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear accumulated gradients (``None`` by default, as in PyTorch)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def to(self, dtype) -> Module:
        """Cast every floating parameter and buffer to ``dtype`` (e.g. float64 for grad checks)."""
        dtype = np.dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dtype)
                    p.grad = None
            for k, b in m._buffers.items():
                if b is not None and is_floating(b.dtype):
                    m._buffers[k] = b.astype(dtype)
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # ----- state dict ---------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Copies of every parameter and persistent buffer under PyTorch's dotted keys."""
        out = OrderedDict()
        for mprefix, m in self.named_modules():
            pre = f"{mprefix}." if mprefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[pre + name] = p.data.copy()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[pre + name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values into this model in place, after checking every key, shape and value.

        Returns ``(missing_keys, unexpected_keys)``. Raises :class:`StateDictError` naming the
        first offending key: with ``strict=True`` a missing or unexpected key; always a shape
        mismatch, a non-numeric dtype, a NaN/inf (or a value beyond the model's float dtype),
        or what a layer's :meth:`_check_state` refuses (a negative BatchNorm
        ``running_var``, ...). Everything is checked before anything is copied: a refused
        state dict leaves the model unchanged.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise StateDictError(f"{where}: got a {type(state_dict).__name__}; expected a "
                                 "dict of arrays (a state dict)")
        own = {}
        for mprefix, m in self.named_modules():
            pre = f"{mprefix}." if mprefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    own[pre + name] = (m, name, "param")
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    own[pre + name] = (m, name, "buffer")
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = [f"{what} keys {keys[:5]}{' ...' if len(keys) > 5 else ''}"
                     for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
            raise StateDictError(f"{where}: " + "; ".join(parts))
        values = {}
        for key, (m, name, kind) in own.items():
            if key not in state_dict:
                continue
            value, problem = _state.as_array(key, state_dict[key])
            target = np.asarray(m._parameters[name].data if kind == "param"
                                else m._buffers[name])
            if problem is None and value.shape != target.shape:
                problem = (f"key {key!r} has shape {value.shape}, the model expects "
                           f"{target.shape}")
            if problem is None and value.dtype.kind not in "fiub":
                problem = f"key {key!r} has dtype {value.dtype}, expected a numeric array"
            problem = problem or _state.nonfinite(key, value, target.dtype)
            if problem is not None:
                raise StateDictError(f"{where}: {problem}")
            values[key] = value
        for mprefix, m in self.named_modules():
            problem = m._check_state(f"{mprefix}." if mprefix else "", values)
            if problem is not None:
                raise StateDictError(f"{where}: {problem}")
        for key, value in values.items():
            m, name, kind = own[key]
            target = m._parameters[name].data if kind == "param" else m._buffers[name]
            if kind == "param" or (isinstance(target, np.ndarray) and target.ndim > 0):
                target[...] = value
            else:
                m._buffers[name] = value.astype(np.asarray(target).dtype).copy()
        return missing, unexpected

    def _check_state(self, prefix: str, state: Mapping) -> str | None:
        """Hook for :meth:`load_state_dict`: a phrase saying why this layer refuses the values.

        ``state`` maps full dotted keys to arrays already checked for shape, dtype and
        finiteness; this layer's keys start with ``prefix``. Return ``None`` to accept.
        """
        return None

    # ----- calling ------------------------------------------------------------------------
    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.backward is not implemented")

    def __call__(self, x):
        anomaly = is_anomaly_enabled()
        if anomaly:
            check_finite(self, x, "input")
        y = self.forward(x)
        if anomaly:
            check_finite(self, y, "output")
        if self._forward_hooks:
            for hook in tuple(self._forward_hooks.values()):
                hook(self, x, y)
        return y

    def register_forward_hook(self, hook) -> _HookHandle:
        """Call ``hook(module, input, output)`` after every forward; ``.remove()`` undoes it."""
        key = id(hook), len(self._forward_hooks)
        while key in self._forward_hooks:
            key = key[0], key[1] + 1
        self._forward_hooks[key] = hook
        return _HookHandle(self._forward_hooks, key)

    def describe(self) -> str:
        """Short name used in error messages, e.g. ``BatchNorm1d(64)``."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return self.describe()
        lines = [f"{type(self).__name__}("]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        lines.append(")")
        return "\n".join(lines)

    def _saved(self, what: str = "forward"):
        """The cache of the last forward pass, or a clear error when there is none."""
        cache = self.__dict__.get("_cache")
        if cache is None:
            raise RuntimeError(
                f"{self.describe()}.backward: no cached {what} pass; call forward (outside "
                "no_grad()) before backward"
            )
        return cache


class _HookHandle:
    """Returned by :meth:`Module.register_forward_hook`; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: OrderedDict, key):
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


from .sequential import Sequential  # noqa: E402  (after Module, which it subclasses)
