"""The battery of normalization checks, each on fresh seeded data with random γ and β.

Order: the layer runs at all (``forward_runs``, ``backward_runs``); the ε the code uses
(:mod:`gammabeta.check.epsilon`); training forward; dx, dγ, dβ against the reference and against
finite differences; for the batch kinds running statistics (:mod:`gammabeta.check.running`),
evaluation mode and evaluation after one training step (:mod:`gammabeta.check.evalmode`) and a
batch of one; float32 with a 1e4 offset; a tiny variance and a constant channel; float32 against
float64; (N, C, H, W) for ``batchnorm``; inputs left unchanged. Each check adds findings to the
report; a failing one says what, where and (via :mod:`gammabeta.check.diagnose`) the likely
cause.

Verdicts: FAIL only when the math is wrong under the implementation's own conventions or its
numerics break on realistic inputs; conventions that differ from PyTorch (momentum as the weight
of the old value, a biased running variance, running_var starting at 0, another ε) are NOTEs;
robustness gaps (NaN on a batch of one, inputs changed in place) are WARNs.
"""

from __future__ import annotations

import numpy as np

from . import diagnose as dg
from .context import TOL, TOL_FD, TOL_HYP, Abort, cmp_finding
from .epsilon import check_epsilon
from .evalmode import check_eval_after_training, check_eval_mode, check_train_eq_eval
from .numerics import check_float32, check_large_offset, check_nchw, check_tiny_variance
from .running import check_running
from .sandbox import UserFailure
from .width import width_mismatch

__all__ = ["BATCHNORM_CHECKS", "checks_for"]


def check_runs(ctx) -> None:
    """forward_runs / backward_runs: shapes, types and finite values on ordinary data."""
    rng = ctx.rng("runs")
    g, b = ctx.params(rng)
    x = ctx.batch(rng)
    ctx.reset(g, b)
    layout = ""
    try:
        y = ctx.forward(x, True)
    except UserFailure as e:
        y = None
        if e.kind in ("raised", "bad_return") and not ctx.spatial \
                and ctx.norm.name == "batchnorm":  # perhaps (N, C, H, W) only?
            x4 = ctx.batch(rng, spatial=(2, 3))
            try:
                ctx.reset(g, b)
                y = ctx.forward(x4, True)
                ctx.spatial, x = (2, 3), x4
                layout = f"; (N, C) input is refused ({e.message}), so every check uses " \
                         "(N, C, H, W) input"
            except UserFailure:
                y = None
        if y is None:
            if width_mismatch(ctx, e):  # fed a width --init-args may not build: run.py says so
                raise e from None
            ctx.add("forward_runs", "fail", "forward runs", e.message, details=e.tail)
            raise Abort("the forward pass does not run (see forward_runs)") from None
    if not np.all(np.isfinite(y)):
        ctx.add("forward_runs", "fail", "forward runs",
                f"{ctx.fwd_desc(x, True)} returned NaN/inf on ordinary data",
                cmp=dg.compare(y, np.zeros_like(y)), details=ctx.last_warnings)
        raise Abort("the forward pass returns NaN/inf (see forward_runs)")
    ctx.add("forward_runs", "pass", "forward runs",
            f"{ctx.fwd_desc(x, True)} returns a finite array of the input's shape{layout}")
    dy = rng.normal(size=x.shape)
    try:
        grads = ctx.backward(dy)
    except UserFailure as e:
        ctx.backward_ok = False
        ctx.add("backward_runs", "fail", "backward runs", e.message, details=e.tail)
        return
    bad = [k for k in ("dx", "dgamma", "dbeta") if not np.all(np.isfinite(grads[k]))]
    if bad:
        ctx.backward_ok = False
        ctx.add("backward_runs", "fail", "backward runs",
                f"{ctx.bwd_desc(dy)} returned NaN/inf in {', '.join(bad)}",
                details=ctx.last_warnings)
        return
    ctx.add("backward_runs", "pass", "backward runs",
            f"{ctx.bwd_desc(dy)} returns dx, dγ, dβ of the right shapes")


def check_forward_train(ctx) -> None:
    """The training output against the reference."""
    rng = ctx.rng("forward_train")
    g, b = ctx.params(rng)
    x = ctx.batch(rng)
    ctx.reset(g, b)
    y = ctx.forward(x, True)
    ref = ctx.ref(x)
    cmp_finding(ctx, "forward_train", "forward (training)", y, ref["y"], TOL,
                 "training output matches the reference",
                 "training output differs from the reference",
                 hyps=dg.forward_hypotheses(ref, x, ctx.eps))


def _grads(ctx, g, b, x, dy):
    """dx, dγ, dβ of a fresh layer after one forward pass on ``x``."""
    ctx.reset(g, b)
    ctx.forward(x, True)
    return ctx.backward(dy)


def check_backward(ctx) -> None:
    """dx, dγ, dβ against the reference, with hypotheses for a wrong dx."""
    rng = ctx.rng("backward")
    g, b = ctx.params(rng)
    x = ctx.batch(rng)
    dy = rng.normal(size=x.shape)
    got = _grads(ctx, g, b, x, dy)
    ref = ctx.ref(x, dy)
    c = dg.compare(got["dx"], ref["dx"])
    if c["err"] <= TOL:
        ctx.add("backward_dx", "pass", "dx", f"dx matches the reference (max error "
                f"{c['err']:.2g})", cmp=c, tol=TOL)
    else:
        cause = dg.best_match(got["dx"], dg.dx_hypotheses(ref, dy), TOL_HYP)
        if cause is None:
            cause = dg.residual_shape(got["dx"] - ref["dx"], ref, TOL) \
                or dg.scaled_dy(got["dx"], ref, dy) or ctx.forward_is_wrong("backward_dx")
        details = []
        # the γ = 1, β = 0 experiment: would the usual initialization have shown the bug?
        c1, ones = ctx.c, np.ones(ctx.c)
        got1 = _grads(ctx, ones, np.zeros(c1), x, dy)
        ref1 = ctx.ref(x, dy, gamma=ones, beta=np.zeros(c1))
        e1 = dg.compare(got1["dx"], ref1["dx"])["err"]
        if e1 <= TOL:
            details.append(f"with γ = 1, β = 0 this dx matches the reference (max error "
                           f"{e1:.2g}): the usual initialization hides the bug, random γ shows it")
            if cause is None:
                cause = dg.GAMMA_IGNORED
        ctx.add("backward_dx", "fail", "dx", "dx differs from the reference", cause=cause, cmp=c,
                tol=TOL, details=details)
    x_ = np.asarray(x, dtype=np.float64)
    cmp_finding(ctx, "backward_dgamma", "dγ", got["dgamma"], ref["dgamma"], TOL,
                 "dγ matches the reference", "dγ differs from the reference",
                 hyps=dg.dgamma_hypotheses(ref, x_, dy))
    cmp_finding(ctx, "backward_dbeta", "dβ", got["dbeta"], ref["dbeta"], TOL,
                 "dβ matches the reference", "dβ differs from the reference",
                 hyps=dg.dbeta_hypotheses(ref, dy))


def check_gradcheck(ctx) -> None:
    """Backward against central differences of the user's own forward (no reference)."""
    rng = ctx.rng("gradcheck")
    g, b = ctx.params(rng)
    x = ctx.batch(rng, n=6)
    dy = rng.normal(size=x.shape)
    got = _grads(ctx, g, b, x, dy)
    y = ctx.forward(x, True)
    low = y.dtype != np.float64
    h, tol = (1e-2, 1e-2) if low else (1e-5, TOL_FD)
    ctx.reset(g, b)
    num = ctx.numgrad(x, dy, h)
    worst, worst_key = None, None
    for k in ("dx", "dgamma", "dbeta"):
        c = dg.compare(got[k], num[k])
        if worst is None or c["err"] > worst["err"]:
            worst, worst_key = c, k
    note = " (forward computes in lower precision: h = 1e-2)" if low else ""
    if worst["err"] <= tol:
        ctx.add("gradcheck", "pass", "finite differences",
                f"dx, dγ, dβ match central differences of the forward pass (max error "
                f"{worst['err']:.2g}){note}", cmp=worst, tol=tol)
    else:
        cause = "the backward pass is not the derivative of this forward pass"
        ref = ctx.ref(x, dy)
        if dg.compare(num[worst_key], ref[worst_key])["err"] <= 1e-4:  # the forward is right
            hyps = {"dx": dg.dx_hypotheses(ref, dy),
                    "dgamma": dg.dgamma_hypotheses(ref, x, dy),
                    "dbeta": dg.dbeta_hypotheses(ref, dy)}[worst_key]
            why = dg.best_match(got[worst_key], hyps, TOL_HYP)
            cause += f" ({why})" if why else ""
        ctx.add("gradcheck", "fail", "finite differences",
                f"{worst_key} differs from central differences of the forward pass{note}",
                cause=cause, cmp=worst, tol=tol)


def check_batch_of_one(ctx) -> None:
    """N = 1: a clear error, or finite results; silent NaN/inf fails."""
    title = "batch of one"
    rng = ctx.rng("batch_of_one")
    g, b = ctx.params(rng)
    x1 = ctx.batch(rng, n=1, spatial=(1, 1) if ctx.spatial else ())
    ctx.reset(g, b)
    try:
        y = ctx.forward(x1, True)
    except UserFailure as e:
        if e.kind in ("raised", "bad_return"):
            ctx.add("batch_of_one", "pass", title,
                    f"training on x of shape {x1.shape} raises an error: {e.message}")
            return
        raise
    warns = list(ctx.last_warnings)
    problems = []
    if not np.all(np.isfinite(y)):
        problems.append(("the output", y, "with one sample the variance is 0 and the forward "
                         "pass divides by it (no ε, or ÷(m − 1) = 0)"))
    if ctx.backward_ok:
        try:
            d = ctx.backward(rng.normal(size=x1.shape))
            warns += ctx.last_warnings
            for k in ("dx", "dgamma", "dbeta"):
                if not np.all(np.isfinite(d[k])):
                    problems.append((k, d[k], "the backward pass divides by zero for m = 1"))
        except UserFailure as e:
            if e.kind == "timeout":
                raise
    rm, rv = ctx.running_stats()
    for name, a in (("running_mean", rm), ("running_var", rv)):
        if a is not None and not np.all(np.isfinite(a)):
            problems.append((name, a, "the unbiased correction m/(m − 1) divides by zero when "
                             "m = 1; refuse a batch of one with a clear error, as PyTorch does"))
    if not problems:
        ctx.add("batch_of_one", "pass", title,
                f"training on x of shape {x1.shape} returns finite values (PyTorch raises "
                "instead; both are acceptable)")
        return
    what, arr, cause = problems[0]
    c = dg.compare(arr, np.zeros_like(arr))
    c["want"] = None  # there is no expected value, only "finite"
    ctx.add("batch_of_one", "warn", title,
            f"returns NaN/inf silently for a batch of one: {what} is not finite after "
            f"training on x of shape {x1.shape}", cause=cause, cmp=c,
            details=[f"NumPy warned: {w}" for w in warns])


def check_inputs_unchanged(ctx) -> None:
    """WARN when a forward or backward call changed its input array in place."""
    title = "inputs unchanged"
    if ctx.mutated:
        calls = ctx.mutated
        ctx.add("inputs_unchanged", "warn", title,
                f"{calls[0]} changed its input array in place"
                + (f" ({len(calls) - 1} more call(s) did too)" if len(calls) > 1 else ""),
                cause="the caller's x or dout is overwritten (e.g. x -= mu); work on a copy. "
                      "Every comparison above used the original input")
    else:
        ctx.add("inputs_unchanged", "pass", title,
                "no forward or backward call changed its input arrays")


# key, title, function, needs the backward pass
BATCHNORM_CHECKS = [
    ("forward_runs", "forward runs", check_runs, False),
    ("epsilon", "ε", check_epsilon, False),
    ("forward_train", "forward (training)", check_forward_train, False),
    ("backward_dx", "dx, dγ, dβ", check_backward, True),
    ("gradcheck", "finite differences", check_gradcheck, True),
    ("running_stats", "running statistics", check_running, False),
    ("eval_mode", "evaluation mode", check_eval_mode, False),
    ("eval_after_training", "eval after one training step", check_eval_after_training, False),
    ("batch_of_one", "batch of one", check_batch_of_one, False),
    ("large_offset", "float32, offset 1e4", check_large_offset, False),
    ("tiny_variance", "tiny variance", check_tiny_variance, False),
    ("float32", "float32", check_float32, False),
    ("nchw", "(N, C, H, W)", check_nchw, False),
    ("inputs_unchanged", "inputs unchanged", check_inputs_unchanged, False),
]

# layer and group normalization: no running statistics, train = eval
NORM_CHECKS = [c for c in BATCHNORM_CHECKS if c[0] not in (
    "running_stats", "eval_mode", "eval_after_training", "batch_of_one", "nchw")]
NORM_CHECKS.insert(5, ("train_eq_eval", "evaluation mode", check_train_eq_eval, False))


def checks_for(norm) -> list:
    """The battery for a kind of normalization."""
    return BATCHNORM_CHECKS if norm.running else NORM_CHECKS
