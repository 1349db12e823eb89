"""Numerical checks: float32 with a 1e4 offset, a tiny variance, float32 against float64, and
(N, C, H, W) input (per-channel statistics over N, H, W, detected by trying).
"""

from __future__ import annotations

import numpy as np

from . import diagnose as dg
from .context import TOL, TOL_F32, TOL_OFFSET, cmp_finding
from .reference import group_mean, train_ref
from .sandbox import UserFailure

__all__ = ["check_large_offset", "check_tiny_variance", "check_float32", "check_nchw"]


def check_large_offset(ctx) -> None:
    """float32 input with a common offset of 1e4 against the float64 reference."""
    title = "float32, offset 1e4"
    rng = ctx.rng("large_offset")
    g, b = ctx.params(rng, np.float32)
    x = ctx.batch(rng, n=max(ctx.n, 16) if ctx.norm.stat == "batch" else ctx.n,
                  dtype=np.float32, loc=(1e4 - 1, 1e4 + 1), scale=(0.5, 2))
    ctx.reset(g, b)
    y = ctx.forward(x, True)
    ref = ctx.ref(x)
    xf = x.astype(np.float32)
    with np.errstate(all="ignore"):
        mu = group_mean(xf, ctx.norm, ctx.groups, dtype=np.float32)
        naive = group_mean(xf * xf, ctx.norm, ctx.groups, dtype=np.float32) - mu * mu
        bs = (1, -1) + (1,) * (x.ndim - 2)
        y_naive = g.reshape(bs) * (xf - mu) / np.sqrt(naive + np.float32(ctx.eps)) \
            + b.reshape(bs)
    c = dg.compare(y, ref["y"])
    cause = None
    if c["err"] > TOL_OFFSET:
        cn = dg.compare(y, y_naive)
        if c.get("nonfinite") and np.any(~np.isfinite(naive) | (naive < 0)):
            cause = "NaN: E[x²] − E[x]² came out negative in float32; " + \
                dg.NAIVE_VAR.split("; ")[1]
        elif cn["err"] < 0.1 * c["err"] or cn["err"] <= TOL_OFFSET:
            cause = "the output matches E[x²] − E[x]² evaluated in float32: " + dg.NAIVE_VAR
        else:
            cause = dg.best_match(y, dg.forward_hypotheses(ref, x, ctx.eps), TOL_OFFSET) \
                or ctx.forward_is_wrong("large_offset") or (
                "precision is lost in float32 with a large common offset (the output matches "
                "neither the reference nor the one-pass E[x²] − E[x]² variance)")
    cmp_finding(ctx, "large_offset", title, y, ref["y"], TOL_OFFSET,
                 "float32 input around 1e4 (std ~1) matches the float64 reference",
                 "float32 input around 1e4 (std ~1) loses precision", cause=cause)


def check_tiny_variance(ctx) -> None:
    """Standard deviation 1e-3 (variance below ε) against the reference."""
    rng = ctx.rng("tiny_variance")
    g, b = ctx.params(rng)
    x = ctx.batch(rng, loc=(-1, 1), scale=1e-3)
    if ctx.norm.stat == "batch":  # one channel of exact zeros, as after a dead ReLU
        x[:, 0] = 0.0
    else:
        x[0] = 0.0  # one all-zero sample for layer and group norm
    ctx.reset(g, b)
    y = ctx.forward(x, True)
    # an ε too small to detect (1e-32) still keeps an all-zero channel finite: compare with one
    ref = ctx.ref(x) if ctx.eps > 0 else train_ref(x, ctx.gamma, ctx.beta, 1e-30,
                                                     norm=ctx.norm, groups=ctx.groups)
    cause = None
    if not np.all(np.isfinite(y)) and ctx.eps == 0:
        cause = ("ε is missing: the code divides by σ, not √(σ² + ε), so a constant channel "
                 "(here all zeros, as after a dead ReLU) gives 0/0 = NaN instead of β")
    elif not np.all(np.isfinite(y)):
        cause = ("a constant channel gives inf/NaN: σ² = 0 and there is no ε (divide by "
                 "√(σ² + ε))" if ctx.eps == 0 else "a constant channel gives inf/NaN")
    cmp_finding(ctx, "tiny_variance", "tiny variance", y, ref["y"], TOL,
                 "std 1e-3 and an all-zero channel match the reference",
                 "std 1e-3 or an all-zero channel differs from the reference",
                 hyps=dg.forward_hypotheses(ref, x, ctx.eps), cause=cause)


def check_float32(ctx) -> None:
    """The layer's own float32 results against its own float64 results on the same data."""
    title = "float32"
    rng = ctx.rng("float32")
    g, b = ctx.params(rng, np.float32)
    x = ctx.batch(rng, dtype=np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    results = {}
    for dt in (np.float64, np.float32):
        ctx.reset(g.astype(dt), b.astype(dt))
        results[dt] = {"y": ctx.forward(x.astype(dt), True)}
        if ctx.backward_ok:
            results[dt].update(ctx.backward(dy.astype(dt)))
    r64, r32 = results[np.float64], results[np.float32]
    worst = max(((k, dg.compare(r32[k], r64[k])) for k in r64), key=lambda t: t[1]["err"])
    y = r32["y"]
    dt = f"; the output's dtype is {y.dtype}" if y.dtype != np.float32 else ""
    names = ", ".join(r64)
    if worst[1]["err"] <= TOL_F32:
        ctx.add("float32", "pass", title, f"float32 {names} agree with the layer's float64 "
                f"results (max error {worst[1]['err']:.2g}){dt}", cmp=worst[1], tol=TOL_F32)
    else:
        ctx.add("float32", "fail", title, f"float32 {worst[0]} differs from the layer's own "
                f"float64 result{dt}",
                cause="precision is lost in float32 (e.g. a one-pass variance E[x²] − E[x]², or "
                      "a float16 intermediate)", cmp=worst[1], tol=TOL_F32)


def check_nchw(ctx) -> None:
    """(N, C, H, W) input against BatchNorm2d, when the layer accepts it."""
    title = "(N, C, H, W)"
    if ctx.spatial:
        ctx.add("nchw", "pass", title, "per-channel statistics over N, H, W: every check above "
                "used (N, C, H, W) input")
        return
    rng = ctx.rng("nchw")
    g, b = ctx.params(rng)
    x = ctx.batch(rng, n=2, spatial=(4, 5))
    dy = rng.normal(size=x.shape)
    ctx.reset(g, b)
    try:
        y = ctx.forward(x, True)
    except UserFailure as e:
        if e.kind == "timeout":
            raise
        ctx.add("nchw", "note", title, f"(N, C, H, W) input is not supported: {e.message}",
                cause="fine for fully connected layers; a convolutional network needs per-channel "
                      "statistics over N, H and W (cs231n's spatial_batchnorm_forward)")
        return
    ref = ctx.ref(x, dy)
    hyps = dg.layout_hypotheses(ref, x)
    if not cmp_finding(ctx, "nchw", title, y, ref["y"], TOL,
                        "per-channel statistics over N, H, W match BatchNorm2d",
                        "(N, C, H, W) output differs from BatchNorm2d", hyps=hyps):
        f = ctx.report.findings[-1]
        if (f.cause or "").startswith("(N, C, H, W) input is normalized per position"):
            f.status = "note"
            f.message = ("(N, C, H, W) input is normalized per position (each (c, h, w) a "
                         "feature, as BatchNorm1d on flattened input), not per channel like "
                         "BatchNorm2d")
            f.cause = ("a convention for fully connected layers; a convolutional network needs "
                       "per-channel statistics over N, H and W (spatial batch norm)")
            f.max_error = f.index = f.got = f.expected = None
        return
    if ctx.backward_ok:
        d = ctx.backward(dy)
        worst = max(((k, dg.compare(d[k], ref[k])) for k in ("dx", "dgamma", "dbeta")),
                    key=lambda t: t[1]["err"])
        f = ctx.report.findings[-1]
        if worst[1]["err"] > TOL:
            f.status, f.message = "fail", f"(N, C, H, W) {worst[0]} differs from BatchNorm2d"
            f.max_error, f.index = worst[1]["err"], worst[1]["index"]
            f.got, f.expected = worst[1]["got"], worst[1]["want"]
        else:
            f.message += " (forward and backward)"
