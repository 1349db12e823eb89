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

from .access import BadReturn, Unusable, describe_value, get_path, param_array, set_path, to_array

__all__ = ["NormClass"]

NUM_ARGS = {"num_features", "num_feature", "n_features", "nfeatures", "features", "feature_size",
            "feature_dim", "num_channels", "channels", "n_channels", "nchannels", "in_channels",
            "channel", "dim", "dims", "d", "D", "size", "C", "c", "n", "N", "num_units", "units",
            "n_units", "in_features", "input_dim", "in_dim", "n_in", "out_features",
            "hidden_size", "hidden_dim", "width", "neurons", "num_neurons", "normalized_shape",
            "num_dims", "input_size", "nb_features", "n_feature", "n_neurons", "num_inputs",
            "out_channels", "n_dim", "ndim", "feat_dim", "d_model", "embed_dim", "num_feat",
            "shape", "input_shape", "in_size", "layer_size", "depth"}
GAMMA_ARGS = {"gamma", "weight", "scale", "g", "gamma_init", "init_gamma"}
BETA_ARGS = {"beta", "bias", "shift", "b", "beta_init", "init_beta"}
MOMENTUM_ARGS = ("momentum", "decay", "rho", "moving_average_fraction", "bn_momentum",
                 "running_momentum", "average_decay", "mom", "moment", "alpha")
GROUP_ARGS = {"G", "g_num", "groups", "num_groups", "group", "n_groups", "group_num", "ngroups"}
GAMMA = ("gamma", "weight", "scale", "g", "W", "BW", "gammas", "_gamma", "gamma_", "bn_weight",
         "params.gamma", "params.weight", "params.scale", "params.W", "param.gamma",
         "parameters.gamma", "weights.gamma", "parameters.scaler", "params.scaler", "scaler")
BETA = ("beta", "bias", "shift", "b", "Bb", "betas", "_beta", "beta_", "bn_bias", "params.beta",
        "params.bias", "params.shift", "params.b", "param.beta", "parameters.beta", "weights.beta",
        "parameters.intercept", "params.intercept", "intercept")
RUNNING_MEAN = ("running_mean", "moving_mean", "run_mean", "running_M", "running_mu",
                "mean_running", "rolling_mean", "avg_mean", "pop_mean", "population_mean",
                "global_mean", "mov_mean", "_mean", "mean", "mu", "bn_param.running_mean",
                "params.running_mean", "buffers.running_mean", "_running_mean",
                "running_avg_mean", "avg_mean")
RUNNING_VAR = ("running_var", "moving_var", "run_var", "running_V", "running_variance",
               "moving_variance", "var_running", "rolling_var", "avg_var", "pop_var",
               "population_var", "global_var", "mov_var", "_variance", "_var", "variance",
               "var", "sigma2", "bn_param.running_var", "params.running_var",
               "buffers.running_var", "_running_var", "running_avg_var")
EPS = ("eps", "epsilon", "eps_", "_eps", "bn_param.eps")
MOMENTUM = ("momentum", "decay", "rho", "bn_param.momentum", "_momentum", "alpha")
TRAIN_KW = ("training", "train", "is_training", "train_flg", "train_mode", "is_train", "istrain",
            "trainable", "train_flag", "isTrain", "is_train_mode", "training_mode", "learn")
EVAL_KW = ("eval", "evaluation", "inference", "test", "is_test", "testing", "test_mode",
           "deterministic", "predict", "is_inference", "eval_mode")
STR_KW = ("mode", "phase", "state", "stage")
MODE_ATTRS = ("training", "is_training", "train_mode", "mode", "phase", "is_train", "istrain",
              "train_flg", "bn_param.mode", "eval_mode", "inference", "is_test", "test_mode")
FORWARD = ("forward", "forward_pass", "forward_propagation", "fprop", "forward_prop", "__call__")
BACKWARD = ("backward", "backward_pass", "backward_propagation", "bprop", "backward_prop",
            "backprop")
INIT_METHODS = ("initialize", "init", "build", "init_params", "initialize_parameters",
                "init_parameters", "setup")
LR_ARGS = {"lr", "learning_rate", "eta", "alpha", "step_size", "rate"}
_SIZE_LIKE = re.compile(r"feat|dim|chan|size|unit|neuron|^n_?in|^in_|^num|width|^n$|^c$|^d$",
                        re.IGNORECASE)


class RecordingOptimizer:
    """Passed to ``initialize(optimizer)``: records each update's gradient, changes nothing."""

    def __init__(self):
        self.seen: dict = {}

    def __copy__(self):
        twin = RecordingOptimizer()
        twin.seen = self.seen  # copies made by the layer report to the same log
        return twin

    def __deepcopy__(self, memo):
        return self.__copy__()

    def update(self, w, grad, *args, **kwargs):
        self.seen[id(w)] = np.array(grad, dtype=np.float64, copy=True)
        return w

    step = __call__ = update


def _arrays_of(obj, depth: int = 1, prefix: str = ""):
    """(path, array) for every float array attribute (and dict entry, one level down)."""
    try:
        items = list(vars(obj).items())
    except TypeError:
        return
    for k, v in items:
        a = param_array(v)
        if a is not None and a.dtype.kind == "f":
            yield prefix + k, a
        elif isinstance(v, Mapping):
            for kk, vv in v.items():
                aa = param_array(vv)
                if isinstance(kk, str) and aa is not None and aa.dtype.kind == "f":
                    yield f"{prefix}{k}.{kk}", aa
        elif depth > 0 and hasattr(v, "__dict__") and not callable(v) \
                and not isinstance(v, (np.ndarray, RecordingOptimizer)):
            yield from _arrays_of(v, depth - 1, f"{prefix}{k}.")


def _is_stat_or_grad(path: str) -> bool:
    """Names that hold running statistics, caches or gradients, never γ/β."""
    last = path.rpartition(".")[2].lower()
    return any(t in last for t in ("running", "moving", "mean", "var", "grad", "cache", "std",
                                   "mu", "sigma", "xhat", "x_hat", "norm", "input", "out")) \
        or (last.startswith("d") and len(last) > 1 and last not in ("d",))


class NormClass:
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
                "discovered": self.discovered}

    # ----- construction -----------------------------------------------------------------------
    def _ctor_args(self, c, gamma, beta, momentum, groups, shape_as_tuple=False):
        """Positional and keyword arguments for the constructor, from its parameter names."""
        if self.init_args is not None or self.init_kwargs:
            kw = dict(self.init_kwargs)
            if momentum is not None:
                name = self._ctor_momentum_name()
                if name:
                    kw[name] = momentum
            return list(self.init_args or []), kw, "given"
        args, kw = [], {}
        if self.sig is None:
            return [c], kw, "guessed"
        for p in self.sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            val = inspect.Parameter.empty
            if p.name in GROUP_ARGS:
                val = groups
            elif p.name in NUM_ARGS:
                tup = shape_as_tuple or "shape" in p.name
                val = (c,) if tup else c
            elif p.name in GAMMA_ARGS:
                val = np.array(gamma, dtype=np.float64).reshape(-1)
            elif p.name in BETA_ARGS:
                val = np.array(beta, dtype=np.float64).reshape(-1)
            elif p.name in MOMENTUM_ARGS and momentum is not None:
                val = momentum
            elif p.default is inspect.Parameter.empty:
                if p.annotation in (int, "int") or _SIZE_LIKE.search(p.name):
                    val = (c,) if shape_as_tuple or "shape" in p.name else c
                elif p.name in MOMENTUM_ARGS:
                    val = None  # decided by the caller (a required momentum)
                elif p.name in ("eps", "epsilon"):
                    val = 1e-5
                else:
                    raise Unusable(f"cannot tell what to pass for {self.name}'s constructor "
                                   f"argument {p.name!r}; give the arguments with --init-args")
            if val is inspect.Parameter.empty:
                continue
            if p.kind == p.POSITIONAL_ONLY:
                args.append(val)
            else:
                kw[p.name] = val
        return args, kw, "inferred"

    def _ctor_momentum_name(self):
        """The constructor's momentum parameter, if it has one."""
        if self.sig is None:
            return None
        return next((n for n in MOMENTUM_ARGS if n in self.sig.parameters), None)

    def _construct(self, c, gamma, beta, momentum, groups):
        """Build an instance; a required momentum gets 0.1 unless the caller gives one."""
        args, kw, how = self._ctor_args(c, gamma, beta, momentum, groups)
        for k, v in list(kw.items()):
            if v is None and k in MOMENTUM_ARGS:
                kw[k] = 0.1
        try:
            obj = self.cls(*args, **kw)
        except TypeError:
            if how != "inferred" or not any(isinstance(v, int) for v in kw.values()):
                raise
            args, kw, how = self._ctor_args(c, gamma, beta, momentum, groups, True)
            obj = self.cls(*args, **kw)
        shown = [repr(a) for a in args] + [
            f"{k}={'<array>' if isinstance(v, np.ndarray) else repr(v)}" for k, v in kw.items()]
        self.constructed = f"{self.name}({', '.join(shown)})"
        return obj

    # ----- discovery --------------------------------------------------------------------------
    def _find(self, role, candidates, need_array=True):
        """The first of ``candidates`` (or the user's path) holding C values or a number."""
        if role in self.attrs:
            path = self.attrs[role]
            if get_path(self.obj, path, None) is None:
                raise Unusable(f"{self.name} has no attribute {path!r} (given for {role})")
            return path
        for path in candidates:
            v = get_path(self.obj, path, None)
            a = param_array(v)
            if a is not None and a.size == self.c and a.dtype.kind == "f":
                return path
            if not need_array and isinstance(v, (int, float, np.floating)) \
                    and not isinstance(v, bool):
                return path
        return None

    def _lazy_init(self, x) -> None:
        """Call an initialize/build-style method, then one forward pass, so that parameters
        created lazily exist."""
        if callable(getattr(self.obj, "set_input_shape", None)):
            try:
                self.obj.set_input_shape(tuple(x.shape[1:]))
            except Exception:  # noqa: BLE001 - user code; the forward pass will tell
                pass
        for name in INIT_METHODS:
            meth = getattr(self.obj, name, None)
            if not callable(meth):
                continue
            try:
                params = [p for p in inspect.signature(meth).parameters.values()
                          if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL,
                                                                     p.VAR_KEYWORD)]
            except (TypeError, ValueError):
                continue
            args = []
            for p in params:
                if "optim" in p.name or p.name in ("opt", "updater"):
                    args.append(self.optimizer)
                elif "shape" in p.name:
                    args.append(tuple(x.shape[1:]))
                elif p.name in NUM_ARGS:
                    args.append(self.c)
                else:
                    args = None
                    break
            if args is not None:
                meth(*args)
                self.discovered.append(f"called {name}() to create the parameters")
                return

    def _probe_params(self, x):
        """γ and β among the unnamed arrays of C values: perturb each, watch the output."""
        base = self._fwd(x, True)
        found = {}
        for path, a in list(_arrays_of(self.obj)):
            if a.size != self.c or _is_stat_or_grad(path):
                continue
            old = a.copy()
            a += 0.5
            try:
                d = self._fwd(x, True) - base
            finally:
                a[...] = old
            if not np.all(np.isfinite(d)) or np.max(np.abs(d)) < 1e-9:
                continue
            red = (0,) + tuple(range(2, d.ndim))
            const = np.allclose(d, np.mean(d, axis=red, keepdims=True), atol=1e-9)
            if const and np.allclose(d, 0.5, atol=1e-6):
                found.setdefault("beta", path)
            elif not const:
                found.setdefault("gamma", path)
        return found

    def _detect(self, x) -> None:
        """Find γ, β, running statistics, ε, momentum and the mode switch."""
        p = self.paths
        for role, cands in (("gamma", GAMMA), ("beta", BETA)):
            p[role] = self._find(role, cands)
        if p["gamma"] is None or p["beta"] is None:
            self._lazy_init(x)
            for role, cands in (("gamma", GAMMA), ("beta", BETA)):
                p[role] = p[role] or self._find(role, cands)
        self.mode = self._detect_mode()
        if p["gamma"] is None or p["beta"] is None:
            self._fwd(x, True)  # lazily created on the first forward pass?
            for role, cands in (("gamma", GAMMA), ("beta", BETA)):
                p[role] = p[role] or self._find(role, cands)
            if p["gamma"] is None or p["beta"] is None:
                probed = self._probe_params(x)
                for role in ("gamma", "beta"):
                    if p[role] is None and role in probed:
                        p[role] = probed[role]
                        self.discovered.append(f"{'γ' if role == 'gamma' else 'β'} found by "
                                               f"perturbing arrays: {self.name}.{p[role]}")
        for role in ("gamma", "beta"):
            if p[role] is None:
                found = ", ".join(f"{k} {tuple(a.shape)}" for k, a in _arrays_of(self.obj))
                sym = "γ" if role == "gamma" else "β"
                raise Unusable(f"{self.constructed} has no attribute for {sym} (tried "
                               f"{', '.join((GAMMA if role == 'gamma' else BETA)[:6])}, ... and "
                               f"perturbing every array of {self.c} values); its arrays are: "
                               f"{found or 'none'}. Name it with --{role}-attr")
        p["running_mean"] = self._find("running_mean", RUNNING_MEAN)
        p["running_var"] = self._find("running_var", RUNNING_VAR)
        p["eps"] = self._find("eps", EPS, need_array=False)
        p["momentum"] = self._find("momentum", MOMENTUM, need_array=False)
        self.discovered.insert(0, f"constructed as {self.constructed}; γ = {p['gamma']}, β = "
                                  f"{p['beta']}; mode: {self._mode_desc()}")

    def _detect_mode(self):
        """How to switch modes: a forward keyword, train()/eval(), or an attribute."""
        if "mode" in self.attrs:
            cur = get_path(self.obj, self.attrs["mode"], None)
            return ("attr", self.attrs["mode"], "str" if isinstance(cur, str) else "train")
        fwd = getattr(self.obj, self.fwd_name or "forward", None)
        try:
            params = inspect.signature(fwd).parameters
        except (TypeError, ValueError):
            params = {}
        for names, sense in ((TRAIN_KW, "train"), (EVAL_KW, "eval"), (STR_KW, "str")):
            for n in names:
                if n in params:
                    return ("kwarg", n, sense)
        if callable(getattr(self.obj, "train", None)) and callable(getattr(self.obj, "eval", None)):
            return ("methods",)
        for path in MODE_ATTRS:
            v = get_path(self.obj, path, None)
            if isinstance(v, (bool, str, np.bool_)):
                sense = "str" if isinstance(v, str) else (
                    "eval" if path.rpartition(".")[2] in EVAL_KW else "train")
                return ("attr", path, sense)
        return None

    def _mode_desc(self) -> str:
        if self.mode is None:
            return "none found"
        if self.mode[0] == "kwarg":
            return f"forward keyword {self.mode[1]}="
        if self.mode[0] == "methods":
            return "train()/eval()"
        return f"attribute {self.mode[1]}"

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

    def _eval_string_from_source(self) -> None:
        """For a string mode ('train'/'test'), the eval value the code compares with."""
        try:
            src = inspect.getsource(self.cls)
        except (OSError, TypeError):
            return
        for s in ("test", "eval", "inference", "predict", "val", "valid", "evaluation"):
            if f"'{s}'" in src or f'"{s}"' in src:
                self.eval_string = s
                return

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
                "momentum_set": bool(via), "momentum_via": via, "constructed": self.constructed}
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
        cands = [f"{pre}d{last}", f"d{last}", f"_d{bare}", f"d{bare}", f"d_{last}", f"grad_{last}", f"{last}_grad",
                 f"{path}.grad", f"dLd{last}", f"dL_d{last}", f"dLd{last.lstrip('B')}",
                 f"grads.{last}", f"grads.d{last}", f"grad.{last}", f"gradients.{last}",
                 f"param_grads.{last}", f"dparams.{last}", f"d{role}", f"d_{role}",
                 f"grad_{role}", f"{role}_grad", f"grads.{role}", f"grads.d{role}",
                 f"dL_d{role}", f"dLd{role}", f"{last}_gradient", f"delta_{last}",
                 f"grad{last}", f"grad{last.capitalize()}", f"d{last.capitalize()}"]
        return list(dict.fromkeys(cands))

    def _call_backward(self, dout):
        """Call backward (a learning-rate argument gets 0, so nothing moves)."""
        for role in ("gamma", "beta"):  # gradients held on Parameter-like objects: clear
            holder = get_path(self.obj, self.paths[role], None)
            if holder is not None and not isinstance(holder, np.ndarray) \
                    and hasattr(holder, "grad"):
                try:
                    holder.grad = None
                except (AttributeError, TypeError):
                    pass
        if self.bwd_name is None:
            raise BadReturn(f"{self.name} has no backward method (tried {', '.join(BACKWARD)})")
        bwd = getattr(self.obj, self.bwd_name)
        kw = {}
        try:
            for p in list(inspect.signature(bwd).parameters.values())[1:]:
                if p.default is p.empty and p.name in LR_ARGS:
                    kw[p.name] = 0.0
        except (TypeError, ValueError):
            pass
        self.optimizer.seen.clear()
        return bwd(dout, **kw)

    def backward(self, dout) -> dict:
        """Run ``backward``; dγ, dβ from its returned tuple or dict, attributes, or the
        recording optimizer."""
        g_arr, b_arr = self.params()
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
                if rec is None:
                    raise BadReturn(f"{who} returned only dx and no attribute holds d{role} "
                                    f"after it (tried {', '.join(tried[:8])}, ...); return "
                                    f"(dx, dgamma, dbeta) or name it with --d{role}-attr")
                out[f"d{role}"] = rec
        return out

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
