"""The optimizer base class: parameter groups, ``zero_grad`` and state dicts, as in PyTorch."""

from __future__ import annotations

import copy
from collections.abc import Callable
from numbers import Real

import numpy as np

from ..backend import is_floating, namespace
from ..errors import ConfigError, DTypeError, ShapeError, StateDictError
from ..nn.module import Parameter

__all__ = ["Optimizer"]


def _copy_value(v):
    """Deep-enough copy of a hyper-parameter or state value (arrays are copied)."""
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, (list, tuple, dict)):
        return copy.deepcopy(v)
    return v


class Optimizer:
    """Base class: parameter groups, ``zero_grad``, ``step`` and state dicts, as in PyTorch.

    Parameters
    ----------
    params : iterable of Parameter, or iterable of dict
        The parameters to optimise, or parameter groups: dicts with a ``"params"`` entry and
        any hyper-parameters that override ``defaults`` for that group.
    defaults : dict
        Hyper-parameters used for every group that does not set its own.

    Attributes
    ----------
    param_groups : list of dict
        One dict per group: ``"params"`` (a list of :class:`Parameter`) plus every
        hyper-parameter, defaults filled in.  Schedulers change ``group["lr"]`` here.
    state : dict
        Per-parameter state (momentum buffers, moment estimates), keyed by the Parameter.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict[Parameter, dict] = {}
        self.param_groups: list[dict] = []
        name = type(self).__name__
        if isinstance(params, (Parameter, np.ndarray)):
            raise ConfigError(f"{name}: params should be an iterable of Parameters or dicts, "
                              f"got a single {type(params).__name__}; pass [param]")
        if hasattr(params, "named_parameters") and not hasattr(params, "__iter__"):
            raise ConfigError(f"{name}: got a {type(params).__name__} module as params; pass "
                              "model.parameters() or optim.param_groups(model, weight_decay)")
        if isinstance(params, dict):
            groups = [params]
        else:
            groups = list(params)
        if not groups:
            raise ConfigError(f"{name}: got an empty parameter list; expected at least one")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)
        if not any(g["params"] for g in self.param_groups):
            raise ConfigError(f"{name}: got an empty parameter list; expected at least one")

    # ----- groups -------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group (a dict with ``"params"``); missing hyper-parameters take the defaults."""
        name = type(self).__name__
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise ConfigError(f"{name}: a parameter group must be a dict with a 'params' "
                              f"entry, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise ConfigError(f"{name}: parameters must be an ordered collection, not a set")
        params = list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Parameter):
                raise ConfigError(f"{name}: expected gammabeta.nn.Parameter objects, got "
                                  f"{type(p).__name__}; wrap arrays as Parameter(array)")
            if not is_floating(p.data.dtype):
                raise DTypeError(f"{name}: parameter {p} has dtype {p.data.dtype}, expected a "
                                 "floating dtype")
            if id(p) in seen:
                raise ConfigError(f"{name}: parameter {p} appears more than once (within or "
                                  "across groups); each may belong to one group only")
            seen.add(id(p))
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, _copy_value(v))
        self._validate(group)
        self.param_groups.append(group)

    def _validate(self, group: dict) -> None:
        """Check a group's hyper-parameters; subclasses raise :class:`ConfigError`."""

    def _check(self, key: str, value, ok: Callable[[float], bool], expected: str) -> None:
        """Raise :class:`ConfigError` unless ``value`` is a real number with ``ok(value)``."""
        if isinstance(value, bool) or not isinstance(value, Real) or not ok(value):
            raise ConfigError(f"{type(self).__name__}: invalid {key}={value!r}; "
                              f"expected {expected}")

    # ----- gradients ----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (``None`` by default, zeros otherwise)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def _grads(self, group: dict):
        """``(param, grad)`` for parameters that take part, the grad in the param's dtype."""
        for p in group["params"]:
            if p.grad is None or not p.requires_grad:
                continue
            g = p.grad
            if g.shape != p.data.shape:
                raise ShapeError(f"{type(self).__name__}: gradient of shape {g.shape} for {p}; "
                                 f"expected the parameter's shape {p.data.shape}")
            if g.dtype != p.data.dtype:
                g = g.astype(p.data.dtype)
            yield p, g

    def step(self, closure: Callable[[], float] | None = None):
        """Update every parameter in place; ``closure`` (re-evaluates the loss) is optional."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            self._update(group)
        return loss

    def _update(self, group: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scratch(self, like):
        """A work array shaped like ``like``, reused across parameters and steps (not state)."""
        buf = self.__dict__.get("_work")
        if buf is None or buf.dtype != like.dtype or buf.size < like.size \
                or namespace(buf) is not namespace(like):
            buf = namespace(like).empty(like.size, dtype=like.dtype)
            self.__dict__["_work"] = buf
        return buf[:like.size].reshape(like.shape)

    # ----- state dicts --------------------------------------------------------------------
    def state_dict(self) -> dict:
        """A copy of the optimizer's state, PyTorch's layout, made of arrays and numbers.

        ``{"state": {index: {name: array or number}}, "param_groups": [{..., "params":
        [index, ...]}]}``; parameters are numbered 0, 1, ... in group order.
        """
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            packed = {k: _copy_value(v) for k, v in g.items() if k != "params"}
            packed["params"] = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {
            index[id(p)]: {k: _copy_value(v) for k, v in s.items()}
            for p, s in self.state.items()
            if id(p) in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned (values are copied, cast to param dtypes)."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise StateDictError(f"{name}.load_state_dict: expected a dict with 'state' and "
                                 f"'param_groups', got {type(state_dict).__name__}")
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise StateDictError(f"{name}.load_state_dict: the state has {len(saved)} parameter "
                                 f"groups, this optimizer has {len(self.param_groups)}")
        by_index: dict[int, Parameter] = {}
        for i, (sg, g) in enumerate(zip(saved, self.param_groups, strict=True)):
            if len(sg["params"]) != len(g["params"]):
                raise StateDictError(f"{name}.load_state_dict: group {i} has "
                                     f"{len(sg['params'])} parameters in the state and "
                                     f"{len(g['params'])} in this optimizer")
            by_index.update(zip((int(k) for k in sg["params"]), g["params"], strict=True))
        new_state: dict[Parameter, dict] = {}
        for k, s in state_dict["state"].items():
            if int(k) not in by_index:
                raise StateDictError(f"{name}.load_state_dict: state for unknown parameter {k}")
            p = by_index[int(k)]
            entry = {}
            for key, v in s.items():
                if key == "step":
                    entry[key] = int(v)
                elif isinstance(v, (np.ndarray, list)) and np.ndim(v) > 0:
                    v = np.asarray(v)
                    if v.shape != p.data.shape:
                        raise StateDictError(f"{name}.load_state_dict: state {key!r} of "
                                             f"parameter {k} has shape {v.shape}, the "
                                             f"parameter has shape {p.data.shape}")
                    entry[key] = v.astype(p.data.dtype, copy=True)
                else:
                    entry[key] = _copy_value(v)
            new_state[p] = entry
        for sg, g in zip(saved, self.param_groups, strict=True):
            for key, v in sg.items():
                if key != "params":
                    g[key] = tuple(v) if key == "betas" else _copy_value(v)
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])
