"""Which ε does the code actually use?  Read it off the training output, not the source.

Many real implementations hard-code ε (1e-8, 1e-6, 0.01) or ignore the one they are given.
Comparing them with PyTorch's 1e-5 would blame the backward pass or the evaluation mode for a
convention. From the training output y on a batch with a small variance (σ² ≈ 1e-3, where
ε = 1e-8 … 1e-2 all move the output measurably), with γ and β known::

    x̂ = (y − β) / γ,    (x − μ)² / x̂² = σ² + ε      (ε inside the square root)
                        (x − μ) / x̂   = σ + ε        (ε added to σ: a mistake)

Each element gives one estimate of ε; when they agree across every group to 1e-7 relative, that
is the code's ε. Otherwise (a wrong forward pass) nothing is concluded and the nominal ε stays.
"""

from __future__ import annotations

import numpy as np

from .reference import stats
from .sandbox import UserFailure

__all__ = ["estimate_eps", "check_epsilon"]


def estimate_eps(x, y, gamma, beta, norm, groups: int = 1):
    """``(eps, "inside" | "outside")`` when one ε explains ``y`` exactly; else None."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    s = stats(x, norm, groups)
    bs = s["bshape"]
    g = np.asarray(gamma, dtype=np.float64).reshape(bs)
    b = np.asarray(beta, dtype=np.float64).reshape(bs)
    with np.errstate(all="ignore"):
        xh = (y - b) / g
        xc = x - s["mean"]
        sel = np.isfinite(xh) & (np.abs(xh) > 0.2) & (np.abs(xc) > 0)
        if sel.sum() < 4:
            return None
        v = s["var"][sel]
        ratio = xc[sel] / xh[sel]
        for model, e in (("inside", ratio ** 2 - v), ("outside", ratio - np.sqrt(v))):
            if not np.all(np.isfinite(e)):
                continue
            med = float(np.median(e))
            tol = 1e-7 * (float(np.max(v)) + abs(med))
            if float(np.max(e) - np.min(e)) <= tol and med >= -tol and np.all(ratio > 0):
                return max(med, 0.0), model
    return None


def _tidy(eps: float) -> float:
    """1.0000003e-08 → 1e-08: the round number the code most likely wrote."""
    if eps == 0:
        return 0.0
    r = float(f"{eps:.2g}")
    return r if abs(r - eps) <= 1e-5 * eps else eps


def check_epsilon(ctx) -> None:
    """Detect the code's ε; a NOTE when it differs from the one the checker passed."""
    rng = ctx.rng("epsilon")
    g, b = ctx.params(rng)
    x = ctx.batch(rng, loc=(-1, 1), scale=(0.02, 0.06))
    ctx.reset(g, b)
    try:
        y = ctx.forward(x, True)
    except UserFailure as e:
        if e.kind == "timeout":
            raise
        return
    est = estimate_eps(x, y, ctx.gamma, ctx.beta, ctx.norm, ctx.groups)
    if est is None:
        return
    eps, model = est
    eps = _tidy(eps)
    nominal = ctx.nominal_eps
    if model == "inside" and abs(eps - nominal) <= 1e-4 * nominal:
        return
    ctx.eps, ctx.eps_detected = eps, True
    if model == "outside":
        return  # forward_train names it: ε added to σ instead of σ²
    if eps == 0:
        ctx.add("epsilon", "note", "ε", "the code uses no ε (it divides by σ, not √(σ² + ε)); "
                "every check below compares with ε = 0",
                cause="see tiny_variance: a constant channel then gives inf/NaN")
        return
    given = (f"it was given ε = {nominal:g} and uses ε = {eps:g}" if ctx.given_eps
             else f"it uses ε = {eps:g}")
    ctx.add("epsilon", "note", "ε",
            f"{given} (PyTorch's default is 1e-5); every check below compares with the code's "
            f"own ε = {eps:g}",
            cause=("a convention, not a failure; ε only matters for channels whose variance is "
                   f"near or below {eps:g}" + ("; the ε passed in is ignored" if ctx.given_eps
                                               else "")))
