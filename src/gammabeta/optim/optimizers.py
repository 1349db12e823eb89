"""Optimizers with PyTorch's argument names, defaults and update formulas.

Every update happens *in place* on ``p.data`` (layers and checkpoints hold references to
those arrays) and in the parameter's own dtype: hyper-parameters are turned into Python
floats, which NumPy treats as "weak" scalars, so a float32 parameter stays float32 and so
does its optimizer state. Parameters whose ``grad`` is ``None`` or whose ``requires_grad``
is ``False`` are skipped (no update, no state).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from numbers import Real

import numpy as np

from ..backend import is_floating, namespace
from ..errors import ConfigError, DTypeError, ShapeError, StateDictError
from ..nn.module import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "param_groups"]


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


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    For each parameter :math:`\theta` with gradient :math:`g_t` (negated if ``maximize``)::

        g  <- g + weight_decay * theta                       (if weight_decay != 0)
        b  <- g                                              (first step: a copy)
        b  <- momentum * b + (1 - dampening) * g             (later steps)
        g  <- g + momentum * b  if nesterov  else  b         (if momentum != 0)
        theta <- theta - lr * g

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty added to the gradient (coupled decay).
    nesterov : bool, default False
        Requires ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
        Ascend instead of descend.

    State per parameter: ``"momentum_buffer"`` (only when momentum is non-zero).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=bool(nesterov),
                        maximize=bool(maximize))
        self._validate(defaults)
        super().__init__(params, defaults)

    def _validate(self, group):
        self._check("lr", group["lr"], lambda v: v >= 0, "a number >= 0")
        self._check("momentum", group["momentum"], lambda v: v >= 0, "a number >= 0")
        self._check("dampening", group["dampening"], math.isfinite,
                    "a finite number")
        self._check("weight_decay", group["weight_decay"], lambda v: v >= 0,
                    "a number >= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ConfigError(f"SGD: nesterov=True requires momentum > 0 and dampening == 0, got "
                              f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _update(self, group):
        lr, mom = float(group["lr"]), float(group["momentum"])
        damp, wd = float(group["dampening"]), float(group["weight_decay"])
        for p, g in self._grads(group):
            if group["maximize"]:
                g = -g
            if wd != 0:
                g = g + wd * p.data
            if mom != 0:
                st = self.state.setdefault(p, {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = np.array(g, copy=True)
                else:
                    buf *= mom
                    buf += (1 - damp) * g
                g = g + mom * buf if group["nesterov"] else buf
            p.data -= lr * g


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with PyTorch's bias correction, as ``torch.optim.Adam``.

    At step :math:`t` (1, 2, ...), with gradient :math:`g` (negated if ``maximize``)::

        g  <- g + weight_decay * theta            (Adam: L2 added to the gradient)
        theta <- theta * (1 - lr * weight_decay)  (AdamW: decoupled decay, instead)
        m  <- beta1 * m + (1 - beta1) * g         (computed as m + (1 - beta1) (g - m))
        v  <- beta2 * v + (1 - beta2) * g^2
        v_max <- max(v_max, v)                    (amsgrad; v_max replaces v below)
        theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the bias-corrected root of the second moment.
    weight_decay : float, default 0
    amsgrad : bool, default False
        Use the running maximum of ``v`` (Reddi et al., 2018).
    maximize : bool, default False (keyword-only)
    decoupled_weight_decay : bool, default False (keyword-only)
        ``True`` gives AdamW.

    State per parameter: ``"step"`` (int), ``"exp_avg"``, ``"exp_avg_sq"`` and, with
    amsgrad, ``"max_exp_avg_sq"``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=bool(amsgrad), maximize=bool(maximize),
                        decoupled_weight_decay=bool(decoupled_weight_decay))
        self._validate(defaults)
        super().__init__(params, defaults)

    def _validate(self, group):
        self._check("lr", group["lr"], lambda v: v >= 0, "a number >= 0")
        self._check("eps", group["eps"], lambda v: v >= 0, "a number >= 0")
        self._check("weight_decay", group["weight_decay"], lambda v: v >= 0,
                    "a number >= 0")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"{type(self).__name__}: invalid betas={betas!r}; expected a "
                              "pair (beta1, beta2)")
        for i, b in enumerate(betas):
            self._check(f"betas[{i}]", b, lambda v: 0 <= v < 1, "a number in [0, 1)")
        group["betas"] = tuple(betas)

    def _update(self, group):
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        b1, b2 = (float(b) for b in group["betas"])
        w1 = 1 - b1
        for p, g in self._grads(group):
            xp = namespace(p.data)
            if group["maximize"]:
                g = -g
            st = self.state.get(p)
            if not st:
                st = self.state[p] = {"step": 0, "exp_avg": xp.zeros_like(p.data),
                                      "exp_avg_sq": xp.zeros_like(p.data)}
            st["step"] += 1
            t = st["step"]
            if wd != 0:
                if group["decoupled_weight_decay"]:
                    p.data *= 1 - lr * wd
                else:
                    g = g + wd * p.data
            m, v = st["exp_avg"], st["exp_avg_sq"]
            tmp = self._scratch(p.data)  # every step below in place: no temporaries
            xp.subtract(g, m, out=tmp)
            if w1 < 0.5:  # torch.lerp's two branches, for bit-level agreement
                tmp *= w1
                m += tmp  # m + w1 (g - m)
            else:
                tmp *= 1 - w1
                xp.subtract(g, tmp, out=m)  # g - (g - m)(1 - w1)
            v *= b2
            xp.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            if group["amsgrad"]:
                vmax = st.setdefault("max_exp_avg_sq", xp.zeros_like(p.data))
                xp.maximum(vmax, v, out=vmax)
                v = vmax
            step_size = lr / (1 - b1**t)
            xp.sqrt(v, out=tmp)  # denom = sqrt(v) / sqrt(1 - b2^t) + eps
            tmp /= (1 - b2**t) ** 0.5
            tmp += eps
            xp.divide(m, tmp, out=tmp)
            tmp *= step_size
            p.data -= tmp


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``.

    Same update as :class:`Adam` except that the decay is applied to the weights directly,
    ``theta <- theta * (1 - lr * weight_decay)``, before the moment updates, so it is not
    rescaled by the adaptive denominator. Default ``weight_decay=1e-2``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)


def param_groups(model, weight_decay: float,
                 no_decay: Callable[[str, Parameter], bool] | Iterable[str] | None = None):
    """Split a model's parameters into a decayed and a non-decayed group.

    Weights with ``ndim >= 2`` (linear and convolution kernels) are decayed; every parameter
    with ``ndim <= 1`` -- biases and BatchNorm's gamma and beta -- is not. Decaying gamma
    pulls the scale BatchNorm has just normalised towards zero (with the following layer
    free to undo it, the penalty only fights the optimiser), and decaying biases or beta
    penalises shifts that carry no capacity; Goyal et al. (2017, "Accurate, Large Minibatch
    SGD", section on "no bias decay") train ResNets with decay on weights only.

    Parameters
    ----------
    model : Module or iterable of (name, Parameter)
    weight_decay : float
        The decay of the first group; the second group gets ``0.0``.
    no_decay : callable or iterable of str, optional
        ``callable(name, param) -> bool`` replaces the ndim rule; an iterable of substrings
        excludes, in addition to ``ndim <= 1``, every parameter whose name contains one.

    Returns
    -------
    list of dict
        ``[{"params": decayed, "weight_decay": weight_decay},
        {"params": not_decayed, "weight_decay": 0.0}]``, ready for any optimizer.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, Real) \
            or not weight_decay >= 0:
        raise ConfigError(f"param_groups: invalid weight_decay={weight_decay!r}; expected a "
                          "number >= 0")
    named = model.named_parameters() if hasattr(model, "named_parameters") else model
    if no_decay is None:
        def skip(name, p):
            return p.data.ndim <= 1
    elif callable(no_decay):
        skip = no_decay
    else:
        patterns = tuple(no_decay)

        def skip(name, p):
            return p.data.ndim <= 1 or any(s in name for s in patterns)
    decay, keep, seen = [], [], set()
    for name, p in named:
        if id(p) in seen:
            continue
        seen.add(id(p))
        (keep if skip(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": keep, "weight_decay": 0.0}]
