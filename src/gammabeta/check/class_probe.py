"""How :class:`gammabeta.check.classes.NormClass` constructs a class from its parameter
names and finds γ, β, the statistics and the mode switch of an instance it knows nothing about:
names first, then an ``initialize``/``build``-style call and a first forward pass (lazily
created parameters), then perturbing every array of C values and watching the output (β shifts
it by a constant per channel, γ scales x̂); running statistics under unknown names by watching
what one training step moves towards the batch statistics.
"""

from __future__ import annotations

import inspect

import numpy as np

from .access import Unusable, get_path, param_array
from .names import (
    BETA,
    BETA_ARGS,
    EPS,
    EVAL_KW,
    GAMMA,
    GAMMA_ARGS,
    GROUP_ARGS,
    INIT_METHODS,
    MODE_ATTRS,
    MOMENTUM,
    MOMENTUM_ARGS,
    NUM_ARGS,
    RUNNING_MEAN,
    RUNNING_VAR,
    SIZE_LIKE,
    STR_KW,
    TRAIN_KW,
    arrays_of,
    is_stat_or_grad,
)

__all__ = ["Discovery"]


def _kw_sense(param) -> str:
    """How a forward keyword switches modes: a known name, else its default (``True`` means
    training, as in ``train_flg=True``; ``False`` means evaluation, as in
    ``inference=False``); a string default means 'train'/'test' values."""
    if isinstance(param.default, str) or param.name in STR_KW:
        return "str"
    if param.name in TRAIN_KW:
        return "train"
    if param.name in EVAL_KW:
        return "eval"
    return "eval" if param.default is False else "train"


class Discovery:
    """Mixin: construction and discovery for a class adapter with ``cls``, ``sig``, ``obj``,
    ``c``, ``attrs``, ``paths``."""

    # ----- construction -----------------------------------------------------------------------
    def _ctor_args(self, c, gamma, beta, momentum, groups, shape_as_tuple=False):
        """Positional and keyword arguments for the constructor, from its parameter names."""
        if self.init_args is not None or self.init_kwargs:
            args, kw = list(self.init_args or []), dict(self.init_kwargs)
            name = self._ctor_momentum_name() if momentum is not None else None
            if name:  # the momentum under test, where the given arguments put it
                pos = [p.name for p in self.sig.parameters.values()
                       if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:len(args)]
                if name in pos:
                    args[pos.index(name)] = momentum
                else:
                    kw[name] = momentum
            return args, kw, "given"
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
                if p.annotation in (int, "int") or SIZE_LIKE.search(p.name):
                    val = (c,) if shape_as_tuple or "shape" in p.name else c
                elif p.name in MOMENTUM_ARGS:
                    val = 0.1  # a required momentum, outside the probe run
                    self.momentum_filled = True
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
        """Build an instance (a second try passes sizes as tuples, for ``shape`` arguments)."""
        args, kw, how = self._ctor_args(c, gamma, beta, momentum, groups)
        try:
            obj = self.cls(*args, **kw)
        except TypeError:
            if how == "given" and self.sig is not None:  # a usage error, not the code's
                try:
                    self.sig.bind(*args, **kw)
                except TypeError as e:
                    raise Unusable(f"the --init-args do not fit {self.name}{self.sig}: {e}; "
                                   "give them as the constructor takes them") from None
            if how != "inferred" or not any(isinstance(v, int) for v in kw.values()):
                raise
            args, kw, how = self._ctor_args(c, gamma, beta, momentum, groups, True)
            obj = self.cls(*args, **kw)
        shown = [repr(a) for a in args] + [
            f"{k}={'<array>' if isinstance(v, np.ndarray) else repr(v)}" for k, v in kw.items()]
        self.constructed = f"{self.name}({', '.join(shown)})"
        return obj


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
            if need_array and isinstance(v, list) and len(v) == self.c and all(
                    isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
                return path  # a plain list of C numbers; the checker puts an array there
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

    def _adopt(self, found: dict, how: str) -> None:
        """Take the probed paths for the roles names did not find; say so in the report."""
        for role, path in found.items():
            if self.paths.get(role) is None:
                self.paths[role] = path
                self.discovered.append(f"{role} {how}: {self.name}.{path}")

    def _probe_running(self, x):
        """Running statistics under names nobody guessed: the arrays of C values that one
        training step moves towards that batch's mean (or variance) by one common weight."""
        skip = {self.paths.get("gamma"), self.paths.get("beta")}
        before = {k: a.copy() for k, a in arrays_of(self.obj)
                  if a.size == self.c and k not in skip and "grad" not in k.lower()}
        rng = np.random.default_rng(1)
        xb = rng.normal(size=x.shape) * rng.uniform(0.5, 2, self.c).reshape(
            (1, -1) + (1,) * (x.ndim - 2)) + rng.uniform(3, 6, self.c).reshape(
            (1, -1) + (1,) * (x.ndim - 2))
        try:
            self._fwd(xb, True)
        except Exception:  # noqa: BLE001 - the battery reports a forward that fails
            return {}
        axes = (0,) + tuple(range(2, x.ndim))
        m = xb.size // self.c
        mu, var = xb.mean(axis=axes), xb.var(axis=axes)
        targets = {"running_mean": [mu], "running_var": [var, var * m / (m - 1)]}
        found = {}
        for k, a in arrays_of(self.obj):
            old = before.get(k)
            if old is None or a.size != self.c or np.array_equal(a, old):
                continue
            new, old = a.reshape(-1).astype(np.float64), old.reshape(-1).astype(np.float64)
            for role, ts in targets.items():
                for t in ts:
                    with np.errstate(all="ignore"):
                        w = (new - old) / (t - old)
                    if np.all(np.isfinite(w)) and 0 < w.mean() <= 1 and np.ptp(w) < 1e-6:
                        found.setdefault(role, k)
        return found

    def _probe_params(self, x):
        """γ and β among the unnamed arrays of C values: perturb each, watch the output."""
        base = self._fwd(x, True)
        found = {}
        for path, a in list(arrays_of(self.obj)):
            if a.size != self.c or is_stat_or_grad(path):
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
                self._adopt(self._probe_params(x), "found by perturbing arrays")
        for role in ("gamma", "beta"):
            if p[role] is None:
                found = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays_of(self.obj))
                sym = "γ" if role == "gamma" else "β"
                raise Unusable(f"{self.constructed} has no attribute for {sym} (tried "
                               f"{', '.join((GAMMA if role == 'gamma' else BETA)[:6])}, ... and "
                               f"perturbing every array of {self.c} values); its arrays are: "
                               f"{found or 'none'}. Name it with --{role}-attr")
        p["running_mean"] = self._find("running_mean", RUNNING_MEAN)
        p["running_var"] = self._find("running_var", RUNNING_VAR)
        if p["running_mean"] is None or p["running_var"] is None:
            self._adopt(self._probe_running(x), "found by watching a training step")
        p["eps"] = self._find("eps", EPS, need_array=False)
        p["momentum"] = self._find("momentum", MOMENTUM, need_array=False)
        self.discovered.insert(0, f"constructed as {self.constructed}; γ = {p['gamma']}, β = "
                                  f"{p['beta']}; mode: {self._mode_desc()}")

    def _detect_mode(self):
        """How to switch modes: a forward keyword, train()/eval(), or an attribute."""
        fwd = getattr(self.obj, self.fwd_name or "forward", None)
        try:
            params = inspect.signature(fwd).parameters
        except (TypeError, ValueError):
            params = {}
        if "mode" in self.attrs and self.attrs["mode"] in params:  # a forward keyword
            return ("kwarg", self.attrs["mode"], _kw_sense(params[self.attrs["mode"]]))
        if "mode" in self.attrs:
            path = self.attrs["mode"]
            cur = get_path(self.obj, path, None)
            sense = "str" if isinstance(cur, str) else (
                "eval" if path.rpartition(".")[2] in EVAL_KW else "train")
            return ("attr", path, sense)
        for names, sense in ((TRAIN_KW, "train"), (EVAL_KW, "eval"), (STR_KW, "str")):
            for n in names:
                if n in params:
                    return ("kwarg", n, sense)
        flags = [p for p in list(params.values())[1:] if isinstance(p.default, bool)]
        if len(flags) == 1:  # one boolean keyword of another name: its default says which
            return ("kwarg", flags[0].name, _kw_sense(flags[0]))
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

