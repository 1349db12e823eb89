"""Name a mistake by testing hypotheses numerically, never by reading the user's source.

For each failing quantity the battery builds the answers that classic mistakes would give
(from :mod:`gammabeta.check.reference`) and asks which one the user's numbers match. When none
does, :func:`residual_shape` looks at the structure of the error per channel (a constant, a
multiple of x̂, or both), which still points at the mean or variance path of the backward pass.
"""

from __future__ import annotations

import numpy as np

__all__ = ["compare", "best_match", "forward_hypotheses", "dx_hypotheses",
           "dgamma_hypotheses", "dbeta_hypotheses", "residual_shape"]

MEAN_PATH = "dx is off by a constant per channel: the mean path of the backward pass is missing"
VAR_PATH = ("dx is off by a term proportional to x̂: the variance path of the backward pass is "
            "missing")
GAMMA_IGNORED = ("dx is right for γ = 1 only: the backward pass ignores γ (dx must be scaled by "
                 "γ/√(σ²+ε)); tests with γ = 1, β = 0 cannot see this")


def compare(got, want) -> dict:
    """Largest error of ``got`` against ``want``: relative to max(1, max|want|), with its index."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return {"err": float("inf"), "index": None, "got": None, "want": None,
                "shape": list(got.shape)}
    diff = np.abs(got - want)
    bad = ~np.isfinite(got)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return {"err": float("inf"), "index": list(idx), "got": float(got[idx]),
                "want": float(want[idx]), "nonfinite": True}
    if diff.size == 0:
        return {"err": 0.0, "index": None, "got": None, "want": None}
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    scale = max(1.0, float(np.max(np.abs(want))))
    return {"err": float(diff[idx] / scale), "index": list(idx), "got": float(got[idx]),
            "want": float(want[idx])}


def best_match(got, hypotheses, tol: float):
    """The cause whose predicted array ``got`` matches best within ``tol``; else None."""
    best = None
    for pred, cause in hypotheses:
        e = compare(got, pred)["err"]
        if e <= tol and (best is None or e < best[1]):
            best = (cause, e)
    return best[0] if best else None


def _b(ref, a):
    """Reshape a per-channel array for broadcasting against the input."""
    return np.asarray(a).reshape(ref["stats"]["bshape"])


def forward_hypotheses(ref, x, eps: float):
    """Training outputs of classic forward mistakes, each with its one-sentence cause."""
    s, g, b, xhat = ref["stats"], ref["gamma"], ref["beta"], ref["xhat"]
    x = np.asarray(x, dtype=np.float64)
    xc = x - _b(ref, s["mean"])
    with np.errstate(all="ignore"):
        return [
            (_b(ref, g) * xc / _b(ref, np.sqrt(s["unbiased"] + eps)) + _b(ref, b),
             "the forward pass normalizes with the unbiased variance (÷(m−1)); batch norm "
             "normalizes with the biased one (÷m) and stores the unbiased one"),
            (xhat, "γ and β are not applied: the output is x̂"),
            (_b(ref, b) * xhat + _b(ref, g), "γ and β are swapped: the output is β·x̂ + γ"),
            (_b(ref, g) * xhat, "β is not added"),
            (_b(ref, g) * xc / _b(ref, s["var"] + eps) + _b(ref, b),
             "the forward pass divides by the variance instead of the standard deviation"),
            (_b(ref, g) * xc / _b(ref, np.sqrt(s["var"]) + eps) + _b(ref, b),
             "ε is added to the standard deviation instead of the variance: use √(σ² + ε)"),
            (_b(ref, g) * xc / _b(ref, np.sqrt(s["var"])) + _b(ref, b),
             "ε is missing: divide by √(σ² + ε), not σ"),
            (_b(ref, g) * x * _b(ref, ref["inv_std"]) + _b(ref, b),
             "the batch mean is not subtracted"),
            (_b(ref, g) * x / np.sqrt(1 + eps) + _b(ref, b),
             "the training forward pass uses the running statistics instead of the batch "
             "statistics"),
        ]


def dx_hypotheses(ref, dy):
    """dx of classic backward mistakes (missing mean or variance path, γ ignored, ...)."""
    s, xhat = ref["stats"], ref["xhat"]
    m = s["m"]
    dy = np.asarray(dy, dtype=np.float64)
    g = _b(ref, ref["gamma"] * ref["inv_std"])
    dbeta_m = _b(ref, ref["dbeta"] / m)
    dgamma_m = _b(ref, ref["dgamma"] / m)
    return [
        (g * (dy - xhat * dgamma_m), MEAN_PATH),
        (g * (dy - dbeta_m), VAR_PATH),
        (g * dy, "dx = γ·dy/√(σ²+ε): the backward pass treats the batch mean and variance as "
                 "constants (both the mean and the variance paths are missing)"),
        (ref["dx"] / _b(ref, ref["gamma"]), GAMMA_IGNORED),
        (-ref["dx"], "dx has the wrong sign"),
        (ref["dx"] / m, "dx is divided by the batch size m once too often"),
        (ref["dx"] * m, "dx is m times too large (a missing 1/m)"),
    ]


def dgamma_hypotheses(ref, x, dy):
    """dγ of classic mistakes."""
    axes, m = ref["stats"]["axes"], ref["stats"]["m"]
    dy = np.asarray(dy, dtype=np.float64)
    return [
        ((dy * np.asarray(x, dtype=np.float64)).sum(axis=axes),
         "dγ uses x instead of x̂ (dγ = Σ dy·x̂)"),
        (ref["dbeta"], "dγ and dβ are swapped"),
        (ref["dgamma"] / m, "dγ is averaged over the batch instead of summed"),
        (ref["dgamma"] * ref["gamma"], "dγ is multiplied by γ"),
        (-ref["dgamma"], "dγ has the wrong sign"),
    ]


def dbeta_hypotheses(ref):
    """dβ of classic mistakes."""
    m = ref["stats"]["m"]
    return [
        (ref["dgamma"], "dγ and dβ are swapped"),
        (ref["dbeta"] / m, "dβ is averaged over the batch instead of summed"),
        (ref["dbeta"] * ref["gamma"], "dβ is multiplied by γ"),
        (-ref["dbeta"], "dβ has the wrong sign"),
    ]


def residual_shape(diff, xhat, axes, tol: float) -> str | None:
    """Describe ``diff`` (user dx − reference dx) when it is a + b·x̂ per channel; else None."""
    diff = np.asarray(diff, dtype=np.float64)
    c = diff.shape[1]
    moved_d = np.moveaxis(diff, 1, 0).reshape(c, -1)
    moved_x = np.moveaxis(xhat, 1, 0).reshape(c, -1)
    scale = max(float(np.max(np.abs(diff))), 1e-300)
    a_big = b_big = False
    for k in range(c):
        design = np.stack([np.ones_like(moved_x[k]), moved_x[k]], axis=1)
        coef, *_ = np.linalg.lstsq(design, moved_d[k], rcond=None)
        if np.max(np.abs(design @ coef - moved_d[k])) > 1e-3 * scale + tol:
            return None
        a_big |= abs(coef[0]) > 1e-3 * scale
        b_big |= abs(coef[1]) > 1e-3 * scale
    if a_big and not b_big:
        return "dx is off by a constant per channel: the mean path of the backward pass is wrong"
    if b_big and not a_big:
        return ("dx is off by a term proportional to x̂: the variance path of the backward pass "
                "is wrong")
    return ("dx is off by a + b·x̂ per channel: both the mean and the variance paths of the "
            "backward pass are wrong")
