"""Adapters for hand-written BatchNorm layers; they run in the child process, next to user code.

Two shapes are understood:

* a pair of functions in the cs231n style, ``forward(x, gamma, beta, bn_param) -> (out, cache)``
  and ``backward(dout, cache) -> (dx, dgamma, dbeta)``, where ``bn_param`` holds ``mode``,
  ``eps``, ``momentum`` and the running statistics;
* a class constructed as ``NAME(num_features)`` with ``forward(x)``/``backward(dout)`` and
  attributes for γ, β and the running statistics, found among common names.

Both expose the same small interface (``reset``, ``forward``, ``backward``, ``running``,
``params``) so that the battery in the parent never needs to know which one it drives.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

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

__all__ = ["BadReturn", "Unusable", "BatchNormPair", "BatchNormClass", "to_array",
           "get_path", "set_path", "param_array", "describe_value"]

GAMMA = ("gamma", "weight", "scale", "params.gamma", "params.weight", "params.scale")
BETA = ("beta", "bias", "shift", "params.beta", "params.bias", "params.shift")
RUNNING_MEAN = ("running_mean", "moving_mean", "run_mean", "mean", "bn_param.running_mean",
                "params.running_mean")
RUNNING_VAR = ("running_var", "moving_var", "run_var", "var", "running_variance",
               "moving_variance", "bn_param.running_var", "params.running_var")
EPS = ("eps", "epsilon", "bn_param.eps")
MOMENTUM = ("momentum", "decay", "bn_param.momentum")
MODE_KWARGS = ("training", "train", "is_training", "mode")
MODE_ATTRS = ("training", "is_training", "train_mode", "mode", "bn_param.mode")
def _unpack_grads(res, who: str) -> dict:
    """(dx, dgamma, dbeta) from a tuple returned by a backward function."""
    if not isinstance(res, (tuple, list)) or len(res) != 3:
        raise BadReturn(f"{who} returned {describe_value(res)}; expected a tuple "
                        "(dx, dgamma, dbeta)")
    names = ("dx", "dgamma", "dbeta")
    return {k: to_array(v, f"the {k} returned by {who}") for k, v in zip(names, res, strict=True)}


class BatchNormPair:
    """``forward(x, gamma, beta, bn_param) -> (out, cache)`` and ``backward(dout, cache)``."""

    style = "function"

    def __init__(self, fwd, bwd, fname: str, bname: str):
        self.fwd, self.bwd, self.fname, self.bname = fwd, bwd, fname, bname
        self.gamma = self.beta = None
        self.bn_param: dict = {}
        self.cache = None

    def info(self) -> dict:
        """What the parent needs to describe and drive this layer."""
        return {"style": self.style, "forward": self.fname, "backward": self.bname,
                "describe": f"function pair {self.fname} / {self.bname}",
                "forward_call": self.fname, "backward_call": self.bname}

    def reset(self, c: int, gamma, beta, eps: float, momentum) -> dict:
        """Fresh state: new γ, β and a new bn_param without running statistics."""
        self.gamma, self.beta = gamma.copy(), beta.copy()
        self.bn_param = {"mode": "train", "eps": eps}
        if momentum is not None:
            self.bn_param["momentum"] = momentum
        self.cache = None
        return {"eps": eps, "momentum": momentum, "has_eval": True}

    def params(self):
        """The live γ and β arrays (finite differences perturb them in place)."""
        return self.gamma, self.beta

    def forward(self, x, train: bool) -> np.ndarray:
        """Run the forward function in the given mode; returns out, keeps cache."""
        self.bn_param["mode"] = "train" if train else "test"
        res = self.fwd(x, self.gamma, self.beta, self.bn_param)
        if not isinstance(res, tuple) or len(res) != 2:
            raise BadReturn(f"{self.fname} returned {describe_value(res)}; expected a tuple "
                            "(out, cache)")
        out, self.cache = res
        return to_array(out, f"the out returned by {self.fname}")

    def backward(self, dout) -> dict:
        """Run the backward function on the cached forward pass."""
        return _unpack_grads(self.bwd(dout, self.cache), self.bname)

    def running(self) -> dict:
        """The running statistics the forward function stored in bn_param."""
        out = {}
        for k in ("running_mean", "running_var"):
            v = self.bn_param.get(k)
            out[k] = None if v is None else to_array(v, f"bn_param[{k!r}]")
        return out


class BatchNormClass:
    """A class ``NAME(num_features)`` with forward/backward and γ, β, statistics attributes."""

    style = "class"

    def __init__(self, cls, name: str, init_args=None, init_kwargs=None, attrs=None):
        self.cls, self.name = cls, name
        self.init_args = None if init_args is None else list(init_args)
        self.init_kwargs = dict(init_kwargs or {})
        self.attrs = {k: v for k, v in (attrs or {}).items() if v}
        self.obj = None
        self.paths: dict = {}
        self.mode = None  # ("kwarg", name) | ("methods", None) | ("attr", path)

    def info(self) -> dict:
        """What the parent needs to describe and drive this layer."""
        return {"style": self.style, "class": self.name, "describe": f"class {self.name}",
                "forward_call": f"{self.name}.forward", "backward_call": f"{self.name}.backward",
                "paths": self.paths, "mode": None if self.mode is None else list(self.mode)}

    def construct_desc(self, c: int) -> str:
        """How the class is constructed, e.g. ``BatchNorm(3)``."""
        args = [repr(a) for a in (self.init_args if self.init_args is not None else [c])]
        args += [f"{k}={v!r}" for k, v in self.init_kwargs.items()]
        return f"{self.name}({', '.join(args)})"

    # ----- discovery ------------------------------------------------------------------------
    def _find(self, role: str, candidates, c: int, need_array: bool) -> str | None:
        """The first path among ``candidates`` (or the user's) that holds a value."""
        if role in self.attrs:
            path = self.attrs[role]
            if not has_path(self.obj, path):
                raise Unusable(f"{self.name} has no attribute {path!r} (given for {role})")
            return path
        for path in candidates:
            v = get_path(self.obj, path, None)
            a = param_array(v)
            if a is not None and a.size == c:
                return path
            if not need_array and isinstance(v, (int, float)) and not isinstance(v, bool):
                return path
        return None

    def _array_attrs(self) -> list[str]:
        """Names of the instance's array attributes, for error messages."""
        names = []
        for k, v in vars(self.obj).items():
            if param_array(v) is not None:
                names.append(k)
            elif isinstance(v, Mapping):
                names += [f"{k}.{kk}" for kk, vv in v.items() if param_array(vv) is not None]
        return names

    def _detect(self, c: int) -> None:
        """Find γ, β, running statistics, eps, momentum and the mode switch."""
        p = self.paths
        for role, cands in (("gamma", GAMMA), ("beta", BETA)):
            p[role] = self._find(role, cands, c, True)
            if p[role] is None:
                found = ", ".join(self._array_attrs()) or "none"
                sym = "γ" if role == "gamma" else "β"
                raise Unusable(
                    f"{self.construct_desc(c)} has no attribute for {sym}"
                    f" among {', '.join(cands)}; its array attributes are: {found}. Name it "
                    f"with --{role}-attr")
        for role, cands in (("running_mean", RUNNING_MEAN), ("running_var", RUNNING_VAR)):
            p[role] = self._find(role, cands, c, True)
        p["eps"] = self._find("eps", EPS, c, False)
        p["momentum"] = self._find("momentum", MOMENTUM, c, False)
        self.mode = self._detect_mode()

    def _detect_mode(self):
        """How to switch modes: a forward kwarg, train()/eval(), or an attribute."""
        if "mode" in self.attrs:
            return ("attr", self.attrs["mode"])
        fwd = getattr(self.obj, "forward", None) or self.obj
        try:
            sig = inspect.signature(fwd)
            for name in MODE_KWARGS:
                if name in sig.parameters:
                    return ("kwarg", name)
        except (TypeError, ValueError):
            pass
        if callable(getattr(self.obj, "train", None)) and callable(getattr(self.obj, "eval", None)):
            return ("methods", None)
        for path in MODE_ATTRS:
            v = get_path(self.obj, path, None)
            if isinstance(v, (bool, str)):
                return ("attr", path)
        return None

    # ----- interface ------------------------------------------------------------------------
    def reset(self, c: int, gamma, beta, eps: float, momentum) -> dict:
        """Construct a fresh instance and give it γ, β (and momentum when given)."""
        args = self.init_args if self.init_args is not None else [c]
        self.obj = self.cls(*args, **self.init_kwargs)
        if not self.paths:
            self._detect(c)
        for role, value in (("gamma", gamma), ("beta", beta)):
            old = param_array(get_path(self.obj, self.paths[role], None))
            shape = old.shape if old is not None and old.size == value.size else value.shape
            set_path(self.obj, self.paths[role], value.reshape(shape).copy())  # keep (1, C)
        if momentum is not None:
            if self.paths["momentum"] is None:
                raise Unusable(f"{self.name} has no momentum attribute among "
                               f"{', '.join(MOMENTUM)}; name it with --momentum-attr")
            set_path(self.obj, self.paths["momentum"], momentum)
        info = {"has_eval": self.mode is not None, "momentum": None, "eps": None}
        for role in ("eps", "momentum"):
            if self.paths[role] is not None:
                v = get_path(self.obj, self.paths[role], None)
                info[role] = float(v) if isinstance(v, (int, float, np.floating)) else None
        return info

    def params(self):
        """The live γ and β arrays (finite differences perturb them in place)."""
        return (param_array(get_path(self.obj, self.paths["gamma"])),
                param_array(get_path(self.obj, self.paths["beta"])))

    def _set_mode(self, train: bool) -> dict:
        """Put the instance in training or evaluation mode; returns forward kwargs."""
        if self.mode is None:
            if not train:
                raise Unusable(f"cannot switch {self.name} to evaluation mode: no train()/eval() "
                               "methods, no training/mode attribute and no forward(x, "
                               "training=...) argument; name one with --mode-attr")
            return {}
        how, what = self.mode
        if how == "kwarg":
            return {what: ("train" if train else "test") if what == "mode" else train}
        if how == "methods":
            self.obj.train() if train else self.obj.eval()
            return {}
        cur = get_path(self.obj, what, None)
        if isinstance(cur, str):
            value = "train" if train else ("eval" if cur in ("eval", "inference") else "test")
        else:
            value = train
        set_path(self.obj, what, value)
        return {}

    def forward(self, x, train: bool) -> np.ndarray:
        """Run ``forward`` in the given mode."""
        kw = self._set_mode(train)
        fwd = getattr(self.obj, "forward", None) or self.obj
        return to_array(fwd(x, **kw), f"the output of {self.name}.forward")

    def _grad_paths(self, role: str) -> list[str]:
        """Where dγ or dβ may be found after ``backward``."""
        if f"d{role}" in self.attrs:
            return [self.attrs[f"d{role}"]]
        path = self.paths[role]
        last = path.rpartition(".")[2]
        cands = [f"d{last}", f"d_{last}", f"grad_{last}", f"{last}_grad", f"{path}.grad",
                 f"grads.{last}", f"grads.d{last}", f"grad.{last}", f"d{role}", f"d_{role}",
                 f"grad_{role}", f"{role}_grad", f"grads.{role}", f"grads.d{role}"]
        return list(dict.fromkeys(cands))

    def backward(self, dout) -> dict:
        """Run ``backward``; dγ, dβ from its returned tuple or from attributes."""
        res = call_backward(self.obj, self.name, dout,
                            [self.paths["gamma"], self.paths["beta"]])
        if isinstance(res, (tuple, list)):
            if len(res) == 3:
                return _unpack_grads(res, f"{self.name}.backward")
            if len(res) != 1:
                raise BadReturn(f"{self.name}.backward returned {describe_value(res)}; expected "
                                "dx or a tuple (dx, dgamma, dbeta)")
            res = res[0]
        out = {"dx": to_array(res, f"the dx returned by {self.name}.backward")}
        for role in ("gamma", "beta"):
            tried = self._grad_paths(role)
            for path in tried:
                v = get_path(self.obj, path, None)
                if param_array(v) is not None or isinstance(v, (list, np.number)):
                    out[f"d{role}"] = to_array(param_array(v) if param_array(v) is not None
                                               else v, f"{self.name}.{path}")
                    break
            else:
                raise BadReturn(f"{self.name}.backward returned only dx and no attribute holds "
                                f"d{role} after it (tried {', '.join(tried[:8])}, ...); return "
                                f"(dx, dgamma, dbeta) or name it with --d{role}-attr")
        return out

    def running(self) -> dict:
        """The running statistics held by the instance (None where absent)."""
        out = {}
        for role, cands in (("running_mean", RUNNING_MEAN), ("running_var", RUNNING_VAR)):
            if self.paths.get(role) is None:  # created lazily by forward?
                self.paths[role] = self._find(role, cands, int(self.params()[0].size), True)
            v = None if self.paths[role] is None else param_array(
                get_path(self.obj, self.paths[role], None))
            out[role] = None if v is None else to_array(v, f"{self.name}.{self.paths[role]}")
        return out


def numeric_grads(adapter, x, dout, h: float) -> dict:
    """Central differences of L = Σ forward(x) ⊙ dout (training mode) w.r.t. x, γ and β."""
    x = np.array(x, dtype=np.float64, copy=True)

    def loss() -> float:
        return float(np.sum(adapter.forward(x, True) * dout))

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
