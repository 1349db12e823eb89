"""Adapters for any other layer (``--kind layer``): a plain forward/backward check, child side.

* a function pair ``NAME_forward(*arrays) -> (out, cache)`` / ``NAME_backward(dout, cache)``
  returning one gradient per array argument (``dx`` alone for one argument);
* a class ``NAME(*init_args)`` with ``forward(x)``/``backward(dout) -> dx`` whose parameters are
  its floating-point array attributes, with gradients found in ``d<name>``, ``<name>.grad``,
  ``grads[<name>]`` and similar.

Gradients are compared with central differences of ``L = Σ forward(...) ⊙ R``; there is no
reference implementation for these.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

from .access import BadReturn, call_backward, describe_value, get_path, param_array, to_array
from .adapters import _fd

__all__ = ["LayerPair", "LayerClass"]


class LayerPair:
    """``forward(*arrays) -> (out, cache)`` and ``backward(dout, cache) -> grads``."""

    style = "function"

    def __init__(self, fwd, bwd, fname: str, bname: str):
        self.fwd, self.bwd, self.fname, self.bname = fwd, bwd, fname, bname
        self.cache = None
        self.arg_names = []
        try:
            for p in inspect.signature(fwd).parameters.values():
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) \
                        and p.default is p.empty:
                    self.arg_names.append(p.name)
        except (TypeError, ValueError):
            self.arg_names = ["x"]
        self.args: list = []

    def info(self) -> dict:
        """What the parent needs to describe and drive this layer."""
        return {"style": self.style, "forward": self.fname, "backward": self.bname,
                "describe": f"function pair {self.fname} / {self.bname}",
                "forward_call": self.fname, "backward_call": self.bname,
                "arg_names": self.arg_names}

    def reset(self, arrays: dict) -> dict:
        """Take the forward's array arguments (a0, a1, ...) as float64."""
        self.args = [np.array(arrays[f"a{i}"], dtype=np.float64)
                     for i in range(len(self.arg_names))]
        return {"wrt": ["d" + n for n in self.arg_names]}

    def forward(self) -> np.ndarray:
        """Run the forward function on the stored arguments."""
        res = self.fwd(*self.args)
        if not isinstance(res, tuple) or len(res) != 2:
            raise BadReturn(f"{self.fname} returned {describe_value(res)}; expected a tuple "
                            "(out, cache)")
        out, self.cache = res
        return to_array(out, f"the out returned by {self.fname}")

    def backward(self, dout) -> dict:
        """One gradient per array argument, from the backward function."""
        res = self.bwd(dout, self.cache)
        n = len(self.arg_names)
        if n == 1 and not isinstance(res, (tuple, list)):
            res = (res,)
        if not isinstance(res, (tuple, list)) or len(res) != n:
            raise BadReturn(f"{self.bname} returned {describe_value(res)}; expected {n} "
                            f"gradient(s), one per argument ({', '.join(self.arg_names)})")
        return {f"d{k}": to_array(v, f"the d{k} returned by {self.bname}")
                for k, v in zip(self.arg_names, res, strict=True)}

    def numeric(self, dout, h: float) -> dict:
        """Central differences with respect to every array argument."""
        def loss() -> float:
            return float(np.sum(self.forward() * dout))

        return {f"d{k}": _fd(loss, a, h) for k, a in zip(self.arg_names, self.args, strict=True)}


class LayerClass:
    """``NAME(*init_args)`` with ``forward(x)`` and ``backward(dout) -> dx``."""

    style = "class"

    def __init__(self, cls, name: str, init_args=None, init_kwargs=None):
        self.cls, self.name = cls, name
        self.init_args = list(init_args or [])
        self.init_kwargs = dict(init_kwargs or {})
        self.obj = None
        self.x = None
        self.params: dict = {}

    def info(self) -> dict:
        """What the parent needs to describe and drive this layer."""
        return {"style": self.style, "class": self.name, "describe": f"class {self.name}",
                "forward_call": f"{self.name}.forward", "backward_call": f"{self.name}.backward",
                "arg_names": ["x"]}

    def _find_params(self) -> dict:
        """Floating-point array attributes (and Parameter-like holders)."""
        found = {}
        items = list(vars(self.obj).items())
        for k, v in list(items):
            if k == "_parameters" and isinstance(v, Mapping):  # gammabeta / torch-like modules
                items += [(kk, vv) for kk, vv in v.items()]
        for k, v in items:
            if k.startswith("_") or k.startswith("d") and k[1:] in dict(items):
                continue
            a = param_array(v)
            if a is not None and a.dtype.kind == "f" and a.size > 0 and k not in (
                    "x", "cache", "out", "running_mean", "running_var"):
                found[k] = a
        return found

    def reset(self, arrays: dict) -> dict:
        """Construct the layer, cast its parameters to float64, store x."""
        self.obj = self.cls(*self.init_args, **self.init_kwargs)
        if callable(getattr(self.obj, "train", None)):
            try:
                self.obj.train()
            except TypeError:
                pass
        self.params = self._find_params()
        for k, a in self.params.items():  # float64 so finite differences are meaningful
            if a.dtype != np.float64:
                holder = get_path(self.obj, k, None)
                if holder is not None and not isinstance(holder, np.ndarray):
                    holder.data = a.astype(np.float64)
                else:
                    setattr(self.obj, k, a.astype(np.float64))
        self.params = self._find_params()
        self.x = np.array(arrays["a0"], dtype=np.float64)
        return {"wrt": ["dx"] + [f"d{k}" for k in self.params]}

    def forward(self) -> np.ndarray:
        """Run ``forward`` on the stored input."""
        fwd = getattr(self.obj, "forward", None) or self.obj
        return to_array(fwd(self.x), f"the output of {self.name}.forward")

    def backward(self, dout) -> dict:
        """dx, and each parameter's gradient from attributes or the returned tuple."""
        res = call_backward(self.obj, self.name, dout, list(self.params))
        extra = []
        if isinstance(res, (tuple, list)):
            res, extra = res[0], list(res[1:])
        out = {"dx": to_array(res, f"the dx returned by {self.name}.backward")}
        for i, k in enumerate(self.params):
            for path in (f"d{k}", f"d_{k}", f"grad_{k}", f"{k}_grad", f"{k}.grad", f"grads.{k}",
                         f"grads.d{k}"):
                v = param_array(get_path(self.obj, path, None))
                if v is not None:
                    out[f"d{k}"] = to_array(v, f"{self.name}.{path}")
                    break
            else:
                if i < len(extra):
                    out[f"d{k}"] = to_array(extra[i], f"gradient #{i + 1} of {self.name}.backward")
        return out

    def numeric(self, dout, h: float) -> dict:
        """Central differences with respect to x and every parameter."""
        def loss() -> float:
            return float(np.sum(self.forward() * dout))

        out = {"dx": _fd(loss, self.x, h)}
        for k, a in self.params.items():
            out[f"d{k}"] = _fd(loss, a, h)
        return out
