"""Driving a user's normalization *class* with no configuration; runs in the child process.

Real classes differ in every detail, so each is discovered, not assumed:

* **construction**: the constructor's parameters are read by name (``num_features``,
  ``feature_size``, ``dim``, ``C``, ... → the number of channels; ``gamma``/``beta`` → the
  checker's random arrays; ``momentum`` → the momentum under test; ``G``/``num_groups`` → the
  groups); parameters with defaults are left alone.
* **γ and β**: common names first (``gamma``, ``weight``, ``BW``, ``params['gamma']``, ...); a
  parameter created lazily is looked for again after an ``initialize(optimizer)``/``build``-style
  call and after the first forward pass; failing names, every array of C values is perturbed and
  the output watched (β shifts it by a constant, γ scales x̂).
* **the mode switch**: ``train()``/``eval()``; a forward keyword (``training``, ``train_flg``,
  ``inference``, ``eval``, ``mode``, ...; the negative ones inverted); an attribute.
* **gradients**: the tuple backward returns, attributes named after γ/β (``dgamma``,
  ``dLdBW``, ``weight.grad``, ``grads['gamma']``), or the updates an optimizer passed to
  ``initialize`` receives (a recording optimizer that changes nothing).

Every discovery is reported back (``info()["discovered"]``) so the report can say what was found.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping

import numpy as np

from .access import (
    BadReturn,
    Unusable,
    clear_grads,
    describe_value,
    get_path,
    param_array,
    set_path,
    to_array,
)
from .class_probe import Discovery
from .names import (
    BACKWARD,
    FORWARD,
    LR_ARGS,
    RUNNING_MEAN,
    RUNNING_VAR,
    RecordingOptimizer,
    arrays_of,
)
from .width import given_width

__all__ = ["NormClass"]

class NormClass(Discovery):
    """A normalization class driven through construct / forward / backward / read-back."""

    style = "class"

    def __init__(self, cls, name: str, init_args=None, init_kwargs=None, attrs=None):
        self.cls, self.name = cls, name
        self.init_args = None if init_args is None else list(init_args)
        self.init_kwargs = dict(init_kwargs or {})
        self.attrs = {k: v for k, v in (attrs or {}).items() if v}
        self.obj = None
        self.paths: dict = {}
        self.mode = None  # ("kwarg", name, sense) | ("methods",) | ("attr", path, sense)
        self.fwd_name = next((m for m in FORWARD if callable(getattr(cls, m, None))), None)
        self.bwd_name = next((m for m in BACKWARD if callable(getattr(cls, m, None))), None)
        self.optimizer = RecordingOptimizer()
        self.discovered: list = []
        self.constructed = ""
        self.c = self.groups = None
        self.sig = self._signature(cls)
        self._width = None

    @staticmethod
    def _signature(cls):
        try:
            return inspect.signature(cls)
        except (TypeError, ValueError):
            return None

    def info(self) -> dict:
        """What the parent needs to describe and drive this layer."""
        return {"style": self.style, "class": self.name, "describe": f"class {self.name}",
                "forward_call": f"{self.name}.{self.fwd_name or 'forward'}",
                "backward_call": f"{self.name}.{self.bwd_name or 'backward'}",
                "paths": self.paths, "mode": None if self.mode is None else list(self.mode),
                "discovered": self.discovered, "width": self.given_width()}

    def given_width(self):
        """The width (and groups) --init-args fix, found once; None when none were given."""
        if self.init_args is None and not self.init_kwargs:
            return None
        if self._width is None:
            self._width = given_width(self.cls, self.name, self.sig, self.init_args,
                                      self.init_kwargs, self.attrs)
        return self._width

    # ----- calls ------------------------------------------------------------------------------
    def _mode_value(self, sense, train: bool, current=None):
        if sense == "train":
            return bool(train)
        if sense == "eval":
            return not train
        if train:
            return "train" if not isinstance(current, str) or current != "training" else current
        return "test" if current not in ("eval", "inference", "evaluation") else current

    def _fwd(self, x, train: bool):
        """Call the forward method in the given mode."""
        kw = {}
        if self.mode is not None:
            if self.mode[0] == "kwarg":
                kw[self.mode[1]] = self._mode_value(self.mode[2], train, self.eval_string)
            elif self.mode[0] == "methods":
                self.obj.train() if train else self.obj.eval()
            else:
                cur = get_path(self.obj, self.mode[1], None)
                set_path(self.obj, self.mode[1], self._mode_value(self.mode[2], train,
                                                                  self.eval_string or cur))
        fwd = getattr(self.obj, self.fwd_name or "forward")
        return to_array(fwd(x, **kw), f"the output of {self.name}.{self.fwd_name}")

    eval_string = None
    sgd_grads: dict = {}
    momentum_filled = False

    def reset(self, c: int, gamma, beta, eps: float, momentum, groups=None, x=None) -> dict:
        """Construct a fresh instance and give it γ, β (and momentum when given)."""
        self.c, self.groups = c, groups
        self.obj = self._construct(c, gamma, beta, momentum, groups)
        if self.fwd_name is None or self.bwd_name is None:
            which = "forward" if self.fwd_name is None else "backward"
            raise Unusable(f"{self.name} has no {which} method (tried "
                           f"{', '.join(FORWARD if which == 'forward' else BACKWARD)}); the "
                           "checker tests hand-written forward and backward passes (layers "
                           "differentiated by an autograd engine are out of its scope)")
        if not self.paths:
            self._detect(np.asarray(x) if x is not None else
                         np.random.default_rng(0).normal(size=(8, c)))
            if self.mode and self.mode[-1] == "str":
                self._eval_string_from_source()
            self.obj = self._construct(c, gamma, beta, momentum, groups)
            self._lazy_init_if_needed(x, c)
        else:
            self._lazy_init_if_needed(x, c)
        for role, value in (("gamma", gamma), ("beta", beta)):
            old = param_array(get_path(self.obj, self.paths[role], None))
            shape = old.shape if old is not None and old.size == value.size else value.shape
            set_path(self.obj, self.paths[role], value.reshape(shape).copy())  # keep (1, C)
        via = ""
        if momentum is not None:
            if self._ctor_momentum_name():
                via = "constructor"
            elif self.paths.get("momentum"):
                set_path(self.obj, self.paths["momentum"], momentum)
                via = "attribute"
        info = {"has_eval": self.mode is not None, "momentum": None, "eps": None,
                "momentum_set": bool(via), "momentum_via": via, "constructed": self.constructed,
                "momentum_filled": self.momentum_filled and momentum is None}
        for role in ("eps", "momentum"):
            if self.paths.get(role) is not None:
                v = get_path(self.obj, self.paths[role], None)
                info[role] = float(v) if isinstance(v, (int, float, np.floating)) else None
        return info

    def _lazy_init_if_needed(self, x, c) -> None:
        """A fresh instance whose γ was created lazily gets created the same way."""
        if param_array(get_path(self.obj, self.paths["gamma"], None)) is not None:
            return
        xx = np.asarray(x) if x is not None else np.random.default_rng(0).normal(size=(8, c))
        self._lazy_init(xx)
        if param_array(get_path(self.obj, self.paths["gamma"], None)) is None:
            self._fwd(xx, True)  # created on the first forward pass: reset its statistics
            for role in ("running_mean", "running_var"):
                a = param_array(get_path(self.obj, self.paths.get(role) or "", None))
                if a is not None:
                    a[...] = 0.0 if role == "running_mean" else 1.0

    def params(self):
        """The live γ and β arrays (finite differences perturb them in place)."""
        return (param_array(get_path(self.obj, self.paths["gamma"])),
                param_array(get_path(self.obj, self.paths["beta"])))

    def forward(self, x, train: bool) -> np.ndarray:
        """Run the forward method in the given mode."""
        if self.mode is None and not train:
            raise Unusable(f"cannot switch {self.name} to evaluation mode: no train()/eval() "
                           "methods, no mode attribute and no forward keyword; name one with "
                           "--mode-attr")
        return self._fwd(x, train)

    def _grad_paths(self, role: str) -> list[str]:
        """Where dγ or dβ may be found after ``backward``."""
        if f"d{role}" in self.attrs:
            return [self.attrs[f"d{role}"]]
        path = self.paths[role]
        head, _, last = path.rpartition(".")
        pre = f"{head}." if head else ""
        bare = last.lstrip("_")
        cands = [f"{pre}d{last}", f"d{last}", f"_d{bare}", f"d{bare}", f"d_{last}",
                 f"grad_{last}", f"{last}_grad",
                 f"{path}.grad", f"dLd{last}", f"dL_d{last}", f"dLd{last.lstrip('B')}",
                 f"grads.{last}", f"grads.d{last}", f"grad.{last}", f"gradients.{last}",
                 f"param_grads.{last}", f"dparams.{last}", f"d{role}", f"d_{role}",
                 f"grad_{role}", f"{role}_grad", f"grads.{role}", f"grads.d{role}",
                 f"dL_d{role}", f"dLd{role}", f"{last}_gradient", f"delta_{last}",
                 f"grad{last}", f"grad{last.capitalize()}", f"d{last.capitalize()}"]
        return list(dict.fromkeys(cands))

    def _call_backward(self, dout):
        """Call backward; a required learning-rate argument gets 1 (see below)."""
        clear_grads(self.obj, [self.paths["gamma"], self.paths["beta"]])
        if self.bwd_name is None:
            raise BadReturn(f"{self.name} has no backward method (tried {', '.join(BACKWARD)})")
        bwd = getattr(self.obj, self.bwd_name)
        kw = {}
        try:
            for p in list(inspect.signature(bwd).parameters.values())[1:]:
                if p.default is p.empty and p.name in LR_ARGS:
                    kw[p.name] = 1.0
        except (TypeError, ValueError):
            pass
        self.optimizer.seen.clear()
        self.sgd_grads = {}
        if not kw:
            return bwd(dout)
        # backward(dout, lr) that updates γ, β itself: with lr = 1 a plain SGD step moves each
        # by exactly −gradient; read that off, then put the parameters back
        before = {r: np.array(a, copy=True) for r, a in zip(("gamma", "beta"), self.params(),
                                                            strict=True)}
        res = bwd(dout, **kw)
        for role, old in before.items():
            cur = param_array(get_path(self.obj, self.paths[role], None))
            if cur is not None and cur.shape == old.shape and not np.array_equal(cur, old):
                self.sgd_grads[role] = (old - cur).astype(np.float64)
                set_path(self.obj, self.paths[role], old)
        return res

    def backward(self, dout) -> dict:
        """Run ``backward``; dγ, dβ from its returned tuple or dict, attributes, or the
        recording optimizer."""
        g_arr, b_arr = self.params()
        known = {self.paths.get(r) for r in ("gamma", "beta", "running_mean", "running_var")}
        before = {k: a.copy() for k, a in arrays_of(self.obj)
                  if a.size == self.c and k not in known}
        res = self._call_backward(dout)
        who = f"{self.name}.{self.bwd_name}"
        if isinstance(res, Mapping):
            pick = {k: next((res[n] for n in names if n in res), None) for k, names in (
                ("dx", ("dx", "dX", "dinput", "dx_hat", "grad_input", "dLdZ", "dout")),
                ("dgamma", ("dgamma", "gamma", "dweight", "weight", "dW", "W")),
                ("dbeta", ("dbeta", "beta", "dbias", "bias", "db", "b")))}
            if pick["dx"] is None:
                raise BadReturn(f"{who} returned a dict without dx (keys: {', '.join(res)})")
            res = tuple(pick.values()) if pick["dgamma"] is not None else pick["dx"]
        if isinstance(res, (tuple, list)) and len(res) == 2 and isinstance(res[1], (tuple, list)):
            res = (res[0], *res[1])
        if isinstance(res, (tuple, list)):
            if len(res) == 3:
                return {k: to_array(v, f"the {k} returned by {who}")
                        for k, v in zip(("dx", "dgamma", "dbeta"), res, strict=True)}
            if len(res) != 1:
                raise BadReturn(f"{who} returned {describe_value(res)}; expected dx or a tuple "
                                "(dx, dgamma, dbeta)")
            res = res[0]
        if res is None:
            raise BadReturn(f"{who} returned None; expected dx (the gradient with respect to "
                            "the input)")
        out = {"dx": to_array(res, f"the dx returned by {who}")}
        for role, arr in (("gamma", g_arr), ("beta", b_arr)):
            tried = self._grad_paths(role)
            for path in tried:
                v = get_path(self.obj, path, None)
                a = param_array(v)
                if a is not None and a.size == self.c:
                    out[f"d{role}"] = to_array(a, f"{self.name}.{path}")
                    break
            else:
                rec = self._grad_from_lists(role)
                rec = self.optimizer.seen.get(id(arr)) if rec is None else rec
                if rec is None:
                    cur = param_array(get_path(self.obj, self.paths[role], None))
                    rec = self.optimizer.seen.get(id(cur))
                if rec is None and role in self.sgd_grads:
                    rec = self.sgd_grads[role]
                    note = (f"d{role} read off the update {who}(dout, lr=1) applied to "
                            f"{self.paths[role]} (a plain SGD step)")
                    if note not in self.discovered:
                        self.discovered.append(note)
                if rec is None:
                    rec = self._grad_by_change(role, before, known, dout)
                if rec is None:
                    raise BadReturn(f"{who} returned only dx and no attribute holds d{role} "
                                    f"after it (tried {', '.join(tried[:8])}, ...); return "
                                    f"(dx, dgamma, dbeta) or name it with --d{role}-attr")
                out[f"d{role}"] = rec
        return out

    def _grad_by_change(self, role: str, before: dict, known: set, dout):
        """dγ/dβ under names nobody guessed: the two arrays of C values that backward created
        or changed; the one whose name says bias/beta/shift (or, failing names, the one equal
        to Σ dy) is dβ."""
        moved = {k: a for k, a in arrays_of(self.obj) if a.size == self.c and k not in known
                 and (k not in before or not np.array_equal(before[k], a))}
        if len(moved) != 2:
            return None
        beta_hint = re.compile(r"(beta|bias|shift|(^|[^a-z])b$|_b$|db$)", re.IGNORECASE)
        hinted = [k for k in moved if beta_hint.search(k.rpartition(".")[2])]
        if len(hinted) == 1:
            b_key = hinted[0]
        else:
            red = (0,) + tuple(range(2, np.ndim(dout)))
            sdy = np.asarray(dout, dtype=np.float64).sum(axis=red)
            b_key = min(moved, key=lambda k: float(np.max(np.abs(
                moved[k].reshape(-1).astype(np.float64) - sdy))))
        key = b_key if role == "beta" else next(k for k in moved if k != b_key)
        self.attrs[f"d{role}"] = key  # found once: read from there from now on
        self.discovered.append(f"d{role} found as the array backward changed: "
                               f"{self.name}.{key}")
        return np.array(moved[key], dtype=np.float64)

    def _grad_from_lists(self, role: str):
        """dγ/dβ from ``self.grads = [dγ, dβ]`` or a ``gradients()`` method (γ first)."""
        i = 0 if role == "gamma" else 1
        for name in ("grads", "gradients", "grad", "param_grads"):
            v = getattr(self.obj, name, None)
            if callable(v):
                try:
                    v = v()
                except Exception:  # noqa: BLE001 - not a getter after all
                    continue
            if isinstance(v, (list, tuple)) and len(v) >= 2:
                a = param_array(v[i])
                if a is not None and a.size == self.c:
                    return np.array(a, dtype=np.float64)
        return None

    def set_running(self, rm, rv) -> bool:
        """Overwrite the running statistics found, in their own shape and dtype."""
        for role, v in (("running_mean", rm), ("running_var", rv)):
            path = self.paths.get(role)
            old = param_array(get_path(self.obj, path, None)) if path else None
            if old is None or old.size != v.size:
                return False
            set_path(self.obj, path, v.reshape(old.shape).astype(old.dtype))
        return True

    def running(self) -> dict:
        """The running statistics held by the instance (None where absent)."""
        out = {}
        for role, cands in (("running_mean", RUNNING_MEAN), ("running_var", RUNNING_VAR)):
            if self.paths.get(role) is None:  # created lazily by forward?
                self.paths[role] = self._find(role, cands)
            v = None if self.paths[role] is None else param_array(
                get_path(self.obj, self.paths[role], None))
            out[role] = None if v is None else to_array(v, f"{self.name}.{self.paths[role]}")
        return out
