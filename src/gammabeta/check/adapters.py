"""Adapters for hand-written BatchNorm layers; they run in the child process, next to user code.

Two shapes are understood:

* a pair of functions in the cs231n style, ``forward(x, gamma, beta, bn_param) -> (out, cache)``
  and ``backward(dout, cache) -> (dx, dgamma, dbeta)``, where ``bn_param`` holds ``mode``,
  ``eps``, ``momentum`` and the running statistics (here; group norm's ``G`` too);
* a class, driven by :class:`gammabeta.check.classes.NormClass`.

Both expose the same small interface (``reset``, ``forward``, ``backward``, ``running``,
``params``) so that the battery in the parent never needs to know which one it drives.
"""

from __future__ import annotations

import inspect

import numpy as np

from .access import (  # noqa: F401  (BadReturn, Unusable re-exported for the child process)
    BadReturn,
    Unusable,
    call_backward,
    describe_value,
    get_path,
    has_path,
    param_array,
    set_path,
    to_array,
)

__all__ = ["BadReturn", "Unusable", "BatchNormPair", "to_array", "get_path", "set_path",
           "param_array", "describe_value", "numeric_grads"]

def _unpack_grads(res, who: str) -> dict:
    """(dx, dgamma, dbeta) from a tuple returned by a backward function."""
    if res is None:
        raise BadReturn(f"{who} returned None; expected a tuple (dx, dgamma, dbeta)")
    if not isinstance(res, (tuple, list)) or len(res) != 3:
        raise BadReturn(f"{who} returned {describe_value(res)}; expected a tuple "
                        "(dx, dgamma, dbeta)")
    names = ("dx", "dgamma", "dbeta")
    return {k: to_array(v, f"the {k} returned by {who}") for k, v in zip(names, res, strict=True)}


class BatchNormPair:
    """``forward(x, gamma, beta, [G,] param) -> (out, cache)`` and ``backward(dout, cache)``.

    The forward's parameters are read by name: the dictionary (``bn_param``, ``ln_param``,
    ``gn_param``, ...) gets ``mode`` ('train'/'test'), ``eps`` and, when probed, ``momentum``;
    a groups parameter (``G``, ``num_groups``) gets the number of groups. γ and β are passed as
    (C,) arrays, or as (1, C, 1, 1) when the code needs that shape (cs231n's group norm).
    """

    style = "function"

    def __init__(self, fwd, bwd, fname: str, bname: str):
        self.fwd, self.bwd, self.fname, self.bname = fwd, bwd, fname, bname
        self.gamma = self.beta = None
        self.bn_param: dict = {}
        self.cache = None
        self.groups = 1
        self.pshape = None  # the shape γ and β are passed in, once known
        self.plan = self._plan(fwd)

    def _plan(self, fwd) -> list:
        """What to pass for each parameter of the forward function."""
        try:
            params = [p for p in inspect.signature(fwd).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            return ["x", "gamma", "beta", "param"]
        plan = []
        for i, p in enumerate(params):
            n = p.name.lower()
            if i == 0:
                plan.append("x")
            elif p.name == "G" or n in ("groups", "num_groups", "group", "n_groups", "g_num",
                                        "num_group", "group_num"):
                plan.append("groups")
            elif n in ("gamma", "g", "weight", "scale", "w") or "gamma" in n:
                plan.append("gamma")
            elif n in ("beta", "b", "bias", "shift") or "beta" in n:
                plan.append("beta")
            elif "param" in n or n in ("cfg", "config", "opts", "options", "args", "kwargs"):
                plan.append("param")
            elif p.default is not p.empty:
                break
            elif i <= 2:
                plan.append(("x", "gamma", "beta")[i])
            else:
                raise Unusable(f"cannot tell what to pass for {self.fname}'s argument "
                               f"{p.name!r} (expected x, gamma, beta, a parameter dict and "
                               "for group norm G)")
        return plan

    def info(self) -> dict:
        """What the parent needs to describe and drive this layer."""
        shown = {"x": "x", "gamma": "gamma", "beta": "beta", "groups": "G",
                 "param": "{'mode', 'eps'[, 'momentum']}"}
        return {"style": self.style, "forward": self.fname, "backward": self.bname,
                "describe": f"function pair {self.fname} / {self.bname}",
                "forward_call": self.fname, "backward_call": self.bname,
                "discovered": [f"called as {self.fname}("
                               f"{', '.join(shown[k] for k in self.plan)}) and "
                               f"{self.bname}(dout, cache)"]}

    def reset(self, c: int, gamma, beta, eps: float, momentum, groups=None, x=None) -> dict:
        """Fresh state: new γ, β and a new parameter dict without running statistics."""
        self.gamma, self.beta = gamma.copy(), beta.copy()
        if self.pshape is not None:
            self.gamma = self.gamma.reshape(self.pshape)
            self.beta = self.beta.reshape(self.pshape)
        self.groups = int(groups or 1)
        self.bn_param = {"mode": "train", "eps": eps}
        if momentum is not None:
            self.bn_param["momentum"] = momentum
        self.cache = None
        return {"eps": eps, "eps_given": "param" in self.plan, "momentum": momentum,
                "has_eval": "param" in self.plan, "momentum_set": "param" in self.plan,
                "momentum_via": "bn_param"}

    def params(self):
        """The live γ and β arrays (finite differences perturb them in place)."""
        return self.gamma, self.beta

    def _call(self, x):
        args = {"x": x, "gamma": self.gamma, "beta": self.beta, "groups": self.groups,
                "param": self.bn_param}
        res = self.fwd(*[args[k] for k in self.plan])
        if not isinstance(res, tuple) or len(res) != 2:
            raise BadReturn(f"{self.fname} returned {describe_value(res)}; expected a tuple "
                            "(out, cache)")
        return res

    def forward(self, x, train: bool) -> np.ndarray:
        """Run the forward function in the given mode; returns out, keeps cache."""
        self.bn_param["mode"] = "train" if train else "test"
        if self.pshape is None and x.ndim == 4:
            try:
                res = self._call(x)
            except Exception as first:  # noqa: BLE001 - perhaps it wants γ as (1, C, 1, 1)
                flat = (self.gamma, self.beta)
                self.gamma = self.gamma.reshape(1, -1, 1, 1)
                self.beta = self.beta.reshape(1, -1, 1, 1)
                try:
                    res = self._call(x)
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    self.gamma, self.beta = flat
                    raise first from None
            self.pshape = self.gamma.shape
        else:
            res = self._call(x)
        out, self.cache = res
        return to_array(out, f"the out returned by {self.fname}")

    def backward(self, dout) -> dict:
        """Run the backward function on the cached forward pass."""
        return _unpack_grads(self.bwd(dout, self.cache), self.bname)

    def set_running(self, rm, rv) -> bool:
        """Put running statistics into bn_param, in the shape and dtype found there."""
        for k, v in (("running_mean", rm), ("running_var", rv)):
            old = self.bn_param.get(k)
            if not isinstance(old, np.ndarray) or old.size != v.size:
                return False
            self.bn_param[k] = v.reshape(old.shape).astype(old.dtype)
        return True

    def running(self) -> dict:
        """The running statistics the forward function stored in bn_param."""
        out = {}
        for k in ("running_mean", "running_var"):
            v = self.bn_param.get(k)
            out[k] = None if v is None else to_array(v, f"bn_param[{k!r}]")
        return out


def numeric_grads(adapter, x, dout, h: float) -> dict:
    """Central differences of L = Σ forward(x) ⊙ dout (training mode) w.r.t. x, γ and β."""
    x = np.array(x, dtype=np.float64, copy=True)

    def loss() -> float:  # on a copy: a forward that changes x in place must not skew this
        return float(np.sum(adapter.forward(x.copy(), True) * dout))

    out = {"dx": _fd(loss, x, h)}
    gamma, beta = adapter.params()
    out["dgamma"] = _fd(loss, gamma, h)
    out["dbeta"] = _fd(loss, beta, h)
    return out


def _fd(loss, a, h: float) -> np.ndarray:
    """∂loss/∂a by central differences, perturbing ``a`` in place."""
    g = np.zeros(a.shape, dtype=np.float64)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        fp = loss()
        a[i] = old - h
        fm = loss()
        a[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g
