"""State shared by the checks of one run: the sandbox, seeded data and call helpers.

Every call into the user's layer goes through :class:`Ctx`, which checks the shapes of what
comes back (turning a wrong shape into a :class:`~gammabeta.check.sandbox.UserFailure` with a
sentence naming the function, the shape it returned and the shape expected).
"""

from __future__ import annotations

import zlib

import numpy as np

from . import diagnose as dg
from .report import Finding
from .sandbox import UserFailure

__all__ = ["Ctx", "Abort", "cmp_finding", "TOL", "TOL_HYP", "TOL_FD", "TOL_F32", "TOL_OFFSET"]

TOL = 1e-5          # float64 results against the float64 reference (relative to max(1, |ref|))
TOL_HYP = 1e-4      # matching the prediction of a hypothesis
TOL_FD = 1e-5       # backward against central differences (float64)
TOL_F32 = 2e-4      # float32 results against the float64 reference
TOL_OFFSET = 2e-2   # float32 with a common offset of 1e4 (a float32 ulp of 1e4 is 1e-3)


class Abort(Exception):
    """Stop the battery: the remaining checks cannot run (the message says why)."""


class Ctx:
    """The sandbox, the options, the report and what earlier checks learned."""

    def __init__(self, sb, opts, report, info: dict, norm=None, groups: int = 1):
        from .reference import NORMS

        self.sb, self.opts, self.report, self.info = sb, opts, report, info
        self.norm = norm or NORMS["batchnorm"]
        self.groups = int(groups)
        self.c, self.n = {"layernorm": (5, 4)}.get(self.norm.name, (3, 8))
        if self.norm.name == "groupnorm":  # C/G = 3 channels a group (4 when G = 3)
            self.c, self.n = self.groups * (4 if self.groups == 3 else 3), 2
        self.spatial: tuple = tuple(self.norm.spatial)  # (H, W) for (N, C, H, W) input
        from .width import fit_width

        self.width_note = fit_width(self, info)  # the width --init-args fix, or why not
        self.eps = 1e-5
        self.nominal_eps = 1e-5  # what the checker asked for (bn_param['eps'], the attribute)
        self.backward_ok = True
        self.eps_detected = False
        self.default_momentum = None  # set when a required momentum needs Keras's 0.9
        self.given_eps = False
        self.constructed = ""
        self.mutated: list = []  # calls that changed their input, in order
        self.has_eval = True
        self.running: dict = {}
        self.gamma = self.beta = None
        self.last_warnings: list = []

    # ----- data -------------------------------------------------------------------------------
    def rng(self, tag: str) -> np.random.Generator:
        """A generator seeded by the run's seed and the check's name (reproducible reports)."""
        return np.random.default_rng([int(self.opts.seed), zlib.crc32(tag.encode())])

    def params(self, rng, dtype=np.float64):
        """Random γ in [0.5, 2] and β ~ N(0, 1): never the ones/zeros that hide bugs."""
        gamma = rng.uniform(0.5, 2.0, self.c)
        beta = rng.normal(0.0, 1.0, self.c)
        beta += np.where(np.abs(beta) < 0.2, 0.5, 0.0)
        return gamma.astype(dtype), beta.astype(dtype)

    def per_group(self, rng, lo: float, hi: float, n: int, ndim: int) -> np.ndarray:
        """One uniform draw per statistics group (channel, sample or (sample, group)),
        shaped to broadcast against an input of ``n`` samples and ``ndim`` axes."""
        rest = (1,) * (ndim - 2)
        if self.norm.stat == "batch":
            return rng.uniform(lo, hi, self.c).reshape((1, self.c) + rest)
        if self.norm.stat == "layer":
            return rng.uniform(lo, hi, n).reshape((n, 1) + rest)
        g = rng.uniform(lo, hi, (n, self.groups))
        return np.repeat(g, self.c // self.groups, axis=1).reshape((n, self.c) + rest)

    def batch(self, rng, n=None, spatial=None, dtype=np.float64, loc=(-2, 2), scale=(0.5, 2.5)):
        """Input of shape ``(n, C, *spatial)`` with its own mean and scale per statistics group;
        ``loc``/``scale`` are a (low, high) range drawn per group, or one number."""
        n = self.n if n is None else n
        spatial = self.spatial if spatial is None else spatial
        shape = (n, self.c) + tuple(spatial)
        lo = self.per_group(rng, *loc, n, len(shape)) if isinstance(loc, tuple) else loc
        sc = self.per_group(rng, *scale, n, len(shape)) if isinstance(scale, tuple) else scale
        x = rng.normal(size=shape) * sc + lo
        return x.astype(dtype)

    def ref(self, x, dy=None, gamma=None, beta=None):
        """The float64 reference for ``x`` with the layer's γ, β and ε (see reference.py)."""
        from .reference import train_ref

        return train_ref(x, self.gamma if gamma is None else gamma,
                         self.beta if beta is None else beta, self.eps, dy, norm=self.norm,
                         groups=self.groups)

    # ----- descriptions -----------------------------------------------------------------------
    def construct_desc(self) -> str:
        """How the layer is constructed, for messages."""
        if self.info.get("style") != "class":
            return self.info.get("forward", "forward")
        return self.constructed or f"{self.info['class']}(...)"

    def fwd_desc(self, x, train: bool) -> str:
        """A forward call as it appears in messages."""
        mode = "train" if train else "test"
        if self.info.get("style") == "class":
            return (f"{self.info['class']}.forward(x of shape {tuple(x.shape)}) in "
                    f"{'training' if train else 'evaluation'} mode")
        return f"{self.info['forward']}(x of shape {tuple(x.shape)}, mode={mode!r})"

    def bwd_desc(self, dout) -> str:
        """A backward call as it appears in messages."""
        return f"{self.info.get('backward_call', 'backward')}(dout of shape {tuple(dout.shape)})"

    # ----- calls ------------------------------------------------------------------------------
    def reset(self, gamma, beta, momentum=None) -> tuple[dict, dict]:
        """Fresh layer with γ, β (and momentum when given); remembers eps and γ, β as held."""
        x = self.batch(np.random.default_rng(0))
        if momentum is None:
            momentum = self.default_momentum
        meta, arrays = self.sb.call("reset", {"c": self.c, "eps": 1e-5, "momentum": momentum,
                                              "groups": self.groups},
                                    {"gamma": gamma, "beta": beta, "x": x},
                                    what=self.construct_desc() or "constructing the layer")
        if meta.get("adapter"):
            self.info.update(meta["adapter"])
        eps = meta.get("eps")
        self.nominal_eps = float(eps) if isinstance(eps, (int, float)) and eps > 0 else 1e-5
        if not self.eps_detected:
            self.eps = self.nominal_eps
        self.given_eps = bool(meta.get("eps_given"))
        self.constructed = meta.get("constructed") or self.constructed
        self.gamma = arrays["gamma"].astype(np.float64).reshape(-1)
        self.beta = arrays["beta"].astype(np.float64).reshape(-1)
        self.has_eval = bool(meta.get("has_eval", True))
        return meta, arrays

    def forward(self, x, train: bool = True) -> np.ndarray:
        """The layer's output for ``x``; a wrong shape raises :class:`UserFailure`."""
        what = self.fwd_desc(x, train)
        meta, arrays = self.sb.call("forward", {"train": bool(train)}, {"x": x}, what=what)
        self._noted(meta, what)
        out = arrays["out"]
        if out.shape != x.shape:
            raise UserFailure("bad_return", f"{what} returned an array of shape "
                              f"{tuple(out.shape)}; expected the input's shape {tuple(x.shape)}",
                              where=what)
        return out

    def backward(self, dout) -> dict:
        """dx, dγ, dβ for the last forward; shapes checked, (1, C) gradients flattened."""
        what = self.bwd_desc(dout)
        meta, g = self.sb.call("backward", {}, {"dout": dout}, what=what)
        self._noted(meta, what)
        if g["dx"].shape != dout.shape:
            raise UserFailure("bad_return", f"{what} returned dx of shape {tuple(g['dx'].shape)};"
                              f" expected the input's shape {tuple(dout.shape)}", where=what)
        for k in ("dgamma", "dbeta"):
            a = g[k]
            if a.size == self.c:
                g[k] = a.reshape(self.c)
                continue
            hint = ""
            if a.shape == dout.shape:
                hint = (": one value per element, it is not summed over the batch" +
                        (" and positions" if dout.ndim > 2 else "") +
                        f" (d{k[1:]} = Σ dy{'·x̂' if k == 'dgamma' else ''})")
            raise UserFailure("bad_return", f"{what} returned {k} of shape {tuple(a.shape)}; "
                              f"expected ({self.c},), one per channel{hint}", where=what)
        return g

    def _noted(self, meta: dict, what: str) -> None:
        """Keep a call's NumPy warnings, and remember it if it changed its input in place."""
        self.last_warnings = meta.get("warnings", [])
        if meta.get("mutated") and what not in self.mutated:
            self.mutated.append(what)

    def running_stats(self):
        """``(running_mean, running_var)`` as float64 (None where the layer has none)."""
        _, arrays = self.sb.call("running", {}, {}, what="reading the running statistics")
        out = []
        for k in ("running_mean", "running_var"):
            a = arrays.get(k)
            if a is not None and a.size != self.c:
                what = self.where_name(k)
                hint = (f" ({a.size} = H·W: statistics per position, taken over the wrong axes)"
                        if self.spatial and a.size == int(np.prod(self.spatial)) else "")
                raise UserFailure("bad_return", f"{what} has shape {tuple(a.shape)}; expected "
                                  f"({self.c},), one value per channel{hint}", where=what)
            out.append(None if a is None else a.astype(np.float64).reshape(-1))
        return tuple(out)

    def numgrad(self, x, dout, h: float) -> dict:
        """Central differences of the layer's own forward pass (in the child)."""
        _, arrays = self.sb.call("numgrad", {"h": h}, {"x": x, "dout": dout},
                                 what=f"finite differences of {self.fwd_desc(x, True)}")
        for k in ("dgamma", "dbeta"):  # γ held as (1, C) or (1, C, 1, 1)
            if arrays[k].size == self.c:
                arrays[k] = arrays[k].reshape(self.c)
        return arrays

    # ----- findings ---------------------------------------------------------------------------
    def add(self, key, status, title, message, cause=None, cmp=None, tol=None, details=None):
        """Append a finding; ``cmp`` is a :func:`~gammabeta.check.diagnose.compare` result."""
        f = Finding(key, status, title, message, cause=cause, tolerance=tol,
                    details=list(details or []))
        if cmp is not None:
            f.max_error, f.index = cmp.get("err"), cmp.get("index")
            f.got, f.expected = cmp.get("got"), cmp.get("want")
        return self.report.add(f)

    def forward_is_wrong(self, key: str) -> str | None:
        """A cause for a later failure that follows from a failed training forward pass."""
        if key == "forward_train" or "forward_train" not in self.report:
            return None
        f = self.report["forward_train"]
        if f.status != "fail":
            return None
        why = f"; {f.cause}" if f.cause else ""
        return f"follows from the training forward pass, which is already wrong (see " \
               f"forward_train{why})"

    def where_name(self, role: str) -> str:
        """How the user's code holds ``role`` (e.g. ``bn_param['running_var']``, ``self.rv``)."""
        if self.info.get("style") == "class":
            path = (self.running.get("paths") or {}).get(role) or role
            return f"{self.info['class']}.{path}"
        return f"bn_param[{role!r}]"


def cmp_finding(ctx, key, title, got, want, tol, ok_msg, bad_msg, hyps=(), cause=None,
                 details=None):
    """Compare, then add a pass or a fail (with the hypothesis that matches, if any)."""
    c = dg.compare(got, want)
    if c["err"] <= tol:
        ctx.add(key, "pass", title, f"{ok_msg} (max error {c['err']:.2g})", cmp=c, tol=tol)
        return True
    if c.get("nonfinite"):
        bad_msg += " (NaN/inf in the result)"
    cause = cause or dg.best_match(got, hyps, max(tol, TOL_HYP)) or ctx.forward_is_wrong(key)
    ctx.add(key, "fail", title, bad_msg, cause=cause, cmp=c, tol=tol, details=details)
    return False
