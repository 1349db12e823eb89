"""Name a mistake by testing hypotheses numerically, never by reading the user's source.

For each failing quantity the battery builds the answers that classic mistakes would give
(from the pieces :func:`gammabeta.check.reference.train_ref` returns) and asks which one the
user's numbers match. When none does, :func:`residual_shape` looks at the structure of the
error per statistics group (a constant, a multiple of x̂, or both), which still points at the
mean or variance path of the backward pass.
"""

from __future__ import annotations

import numpy as np

from .reference import backward_parts, group_mean, train_ref

__all__ = ["compare", "best_match", "forward_hypotheses", "dx_hypotheses",
           "dgamma_hypotheses", "dbeta_hypotheses", "residual_shape", "group_ids"]

MEAN_PATH = "dx is off by a constant per group: the mean path of the backward pass is missing"
VAR_PATH = ("dx is off by a term proportional to x̂: the variance path of the backward pass is "
            "missing")
GAMMA_IGNORED = ("dx is right for γ = 1 only: the backward pass ignores γ (dx must be scaled by "
                 "γ/√(σ²+ε)); tests with γ = 1, β = 0 cannot see this")
NAIVE_VAR = ("the variance is computed as E[x²] − E[x]² (catastrophic cancellation in float32 "
             "with a large offset); compute mean((x − μ)²) after subtracting the mean")


def compare(got, want) -> dict:
    """Largest error of ``got`` against ``want``: relative to max(1, max|want|), with its index."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return {"err": float("inf"), "index": None, "got": None, "want": None,
                "shape": list(got.shape)}
    with np.errstate(all="ignore"):
        diff = np.abs(got - want)
    bad = ~np.isfinite(got)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return {"err": float("inf"), "index": list(idx), "got": float(got[idx]),
                "want": float(want[idx]), "nonfinite": True}
    if diff.size == 0:
        return {"err": 0.0, "index": None, "got": None, "want": None}
    if not np.all(np.isfinite(diff)):  # the prediction itself is not finite
        return {"err": float("inf"), "index": None, "got": None, "want": None}
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    scale = max(1.0, float(np.max(np.abs(want))))
    return {"err": float(diff[idx] / scale), "index": list(idx), "got": float(got[idx]),
            "want": float(want[idx])}


def best_match(got, hypotheses, tol: float):
    """The cause whose predicted array ``got`` matches best within ``tol``; else None."""
    best = None
    for pred, cause in hypotheses:
        if pred is None:
            continue
        e = compare(got, pred)["err"]
        if e <= tol and (best is None or e < best[1]):
            best = (cause, e)
    return best[0] if best else None


def _b(ref, a):
    """Reshape a per-channel array for broadcasting against the input."""
    return np.asarray(a).reshape(ref["stats"]["bshape"])


def _standardize(a, axes, eps: float) -> np.ndarray:
    """(a − mean)/√(var + ε) over ``axes`` (kept), NaN-tolerant."""
    with np.errstate(all="ignore"):
        return (a - a.mean(axis=axes, keepdims=True)) / np.sqrt(a.var(axis=axes, keepdims=True)
                                                                + eps)


def _renorm(ref, x, norm_name: str, **kw):
    """The output if the statistics were taken as another kind would take them."""
    from .reference import NORMS

    r = train_ref(x, ref["gamma"], ref["beta"], ref["eps"], norm=NORMS[norm_name], **kw)
    return r["y"]


def layout_hypotheses(ref, x):
    """Outputs of statistics taken over the wrong values (axis, reshape, grouping)."""
    s = ref["stats"]
    norm, eps, g, b = s["norm"], ref["eps"], ref["gamma"], ref["beta"]
    x = np.asarray(x, dtype=np.float64)
    out = []
    if norm.stat == "batch":
        out.append((_renorm(ref, x, "layernorm") if x.ndim == 2 else None,
                    "normalizes over the wrong axis: statistics per sample (over the features) "
                    "instead of per feature over the batch"))
        if x.ndim == 4:
            n, c, h, w = x.shape
            out.append((_b(ref, g) * _standardize(x, 0, eps) + _b(ref, b),
                        "(N, C, H, W) input is normalized per position (over N only), not "
                        "per channel over N, H and W"))
            out.append((_b(ref, g) * _standardize(x, (2, 3), eps) + _b(ref, b),
                        "statistics per sample and channel over (H, W) (instance norm, e.g. "
                        "batch norm called once per sample) instead of per channel over N, H "
                        "and W"))
            xp = _standardize(x.reshape(-1, h * w), 0, eps)  # per position over N and C
            out.append((_b(ref, g) * xp.reshape(x.shape) + _b(ref, b),
                        "statistics per position over N and C (x reshaped to (N·C, H·W)) "
                        "instead of per channel over N, H and W"))
            flat = x.reshape(-1, c)  # reshape without moving C last: channels scrambled
            y = train_ref(flat, g, b, eps)["y"].reshape(x.shape)
            out.append((y, "channels scrambled: x.reshape(-1, C) without first moving C to the "
                           "last axis (transpose(0, 2, 3, 1)), so each 'channel' mixes values "
                           "of several channels and positions"))
            moved = x.transpose(0, 2, 3, 1).reshape(-1, c)
            y2 = train_ref(moved, g, b, eps)["y"].reshape(x.shape)
            out.append((y2, "channels scrambled on the way back: the (N·H·W, C) result is "
                            "reshaped to (N, C, H, W) without transposing it back"))
    elif norm.stat == "layer":
        out.append((_renorm(ref, x, "batchnorm") if x.ndim == 2 else None,
                    "normalizes over the wrong axis: statistics per feature over the batch "
                    "(batch norm) instead of per sample over the features"))
    else:
        groups = s["groups"]
        c = x.shape[1]
        if c % groups == 0 and c // groups != groups:
            out.append((_renorm(ref, x, "groupnorm", groups=c // groups),
                        f"wrong grouping: {c // groups} groups of {groups} channels instead of "
                        f"G = {groups} groups of {c // groups} (G and C/G swapped in the "
                        "reshape)"))
        perm = np.argsort(np.arange(c) % groups, kind="stable")
        xp = x[:, perm]
        yp = train_ref(xp, g[perm], b[perm], eps, norm=norm, groups=groups)["y"]
        y = np.empty_like(yp)
        y[:, perm] = yp
        out.append((y, "wrong grouping: channels are grouped interleaved (reshape to (N, C/G, G, "
                       "...)) instead of G blocks of C/G consecutive channels (reshape to (N, G, "
                       "C/G, ...))"))
        out.append((_renorm(ref, x, "layernorm"), "normalizes over all channels of a sample "
                                                  "(layer norm) instead of per group"))
        if x.ndim == 4 and c % groups == 0:
            n, _, h, w = x.shape
            per_pixel = _standardize(x.reshape(n, groups, c // groups, h, w), 2,
                                     eps).reshape(x.shape)
            inst = _standardize(x, (2, 3), eps)
            out.append((_b(ref, g) * per_pixel + _b(ref, b),
                        "statistics over the group's channels only, separately at each position "
                        "(H, W): group norm takes them over the group's channels and all "
                        "positions, (C/G, H, W)"))
            out.append((_b(ref, g) * inst + _b(ref, b),
                        "statistics per sample and channel over (H, W) (instance norm) instead "
                        "of over the group's C/G channels and (H, W)"))
            out.append((_renorm(ref, x, "batchnorm"),
                        "statistics per channel over (N, H, W) (batch norm) instead of per "
                        "sample over the group's channels and (H, W)"))
    return out


def forward_hypotheses(ref, x, eps: float):
    """Training outputs of classic forward mistakes, each with its one-sentence cause."""
    s, g, b, xhat = ref["stats"], ref["gamma"], ref["beta"], ref["xhat"]
    x = np.asarray(x, dtype=np.float64)
    xc = x - s["mean"]
    gb, bb = _b(ref, g), _b(ref, b)
    with np.errstate(all="ignore"):
        hyps = [
            (gb * xc / np.sqrt(s["unbiased"] + eps) + bb,
             "the forward pass normalizes with the unbiased variance (÷(m−1)); normalize with "
             "the biased one (÷m)"),
            (xhat, "γ and β are not applied: the output is x̂"),
            (bb * xhat + gb, "γ and β are swapped: the output is β·x̂ + γ"),
            (gb * xhat, "β is not added"),
            (gb * xhat - bb, "β is subtracted instead of added: the output is γ·x̂ − β"),
            (gb * xc / (s["var"] + eps) + bb,
             "the forward pass divides by the variance instead of the standard deviation"),
            (gb * xc / (np.sqrt(s["var"]) + eps) + bb,
             "ε is added to the standard deviation instead of the variance: use √(σ² + ε)"),
            (gb * xc / np.sqrt(s["var"]) + bb, "ε is missing: divide by √(σ² + ε), not σ"),
            (gb * x * ref["inv_std"] + bb, "the mean is not subtracted"),
        ]
        if s["norm"].running:
            hyps.append((gb * x / np.sqrt(1 + eps) + bb,
                         "the training forward pass uses the running statistics instead of the "
                         "batch statistics"))
    return hyps + layout_hypotheses(ref, x)


def dx_hypotheses(ref, dy):
    """dx of classic backward mistakes (missing mean or variance path, γ ignored, ...)."""
    s, xhat = ref["stats"], ref["xhat"]
    norm, groups, m = s["norm"], s["groups"], s["m"]
    dy = np.asarray(dy, dtype=np.float64)
    gh = _b(ref, ref["gamma"]) * dy
    istd = ref["inv_std"]
    n = dy.shape[0]
    with np.errstate(all="ignore"):
        hyps = [
            (istd * (gh - xhat * group_mean(gh * xhat, norm, groups)), MEAN_PATH),
            (istd * (gh - group_mean(gh, norm, groups)), VAR_PATH),
            (istd * gh, "dx = γ·dy/√(σ²+ε): the backward pass treats the mean and variance as "
                        "constants (both the mean and the variance paths are missing)"),
            (backward_parts(dy, ref, gamma=np.ones_like(ref["gamma"]))["dx"], GAMMA_IGNORED),
            (-ref["dx"], "dx has the wrong sign"),
            (ref["dx"] / m, "dx is divided by the group size m once too often"),
            (ref["dx"] * m, "dx is m times too large (a missing 1/m)"),
        ]
        if n != m:
            hyps += [(ref["dx"] / n, "dx is divided by the batch size N once too often"),
                     (ref["dx"] * n, "dx is N times too large (a missing 1/N)")]
    return hyps


def dgamma_hypotheses(ref, x, dy):
    """dγ of classic mistakes."""
    red = (0,) + tuple(range(2, np.ndim(dy)))
    m, n = ref["stats"]["m"], np.shape(dy)[0]
    dy = np.asarray(dy, dtype=np.float64)
    hyps = [((dy * np.asarray(x, dtype=np.float64)).sum(axis=red),
             "dγ uses x instead of x̂ (dγ = Σ dy·x̂)"),
            (ref["dbeta"], "dγ and dβ are swapped"),
            (ref["dgamma"] / n, "dγ is averaged over the batch instead of summed (÷N)"),
            (ref["dgamma"] * ref["gamma"], "dγ is multiplied by γ"),
            (-ref["dgamma"], "dγ has the wrong sign")]
    if m != n:
        hyps.append((ref["dgamma"] / m, "dγ is averaged instead of summed (÷m)"))
    return hyps


def dbeta_hypotheses(ref, dy=None):
    """dβ of classic mistakes."""
    n = ref["xhat"].shape[0]
    m = ref["stats"]["m"]
    hyps = [(ref["dgamma"], "dγ and dβ are swapped"),
            (ref["dbeta"] / n, "dβ is averaged over the batch instead of summed (÷N)"),
            (ref["dbeta"] * ref["gamma"], "dβ is multiplied by γ"),
            (-ref["dbeta"], "dβ has the wrong sign")]
    if m != n:
        hyps.append((ref["dbeta"] / m, "dβ is averaged instead of summed (÷m)"))
    return hyps


def group_ids(shape, norm, groups: int = 1) -> np.ndarray:
    """An integer label per element: which statistics group it belongs to."""
    n, c = shape[0], shape[1]
    rest = (1,) * (len(shape) - 2)
    if norm.stat == "batch":
        ids = np.arange(c).reshape((1, c) + rest)
    elif norm.stat == "layer":
        ids = np.arange(n).reshape((n, 1) + rest)
    else:
        ids = (np.arange(n)[:, None] * groups + np.arange(c)[None, :] // (c // groups))
        ids = ids.reshape((n, c) + rest)
    return np.broadcast_to(ids, shape)


def scaled_dy(got, ref, dy) -> str | None:
    """dx = k·γ·dy per group (no mean or variance path at all), with the factor k named."""
    got = np.asarray(got, dtype=np.float64)
    gd = _b(ref, ref["gamma"]) * np.asarray(dy, dtype=np.float64)
    ids = group_ids(got.shape, ref["stats"]["norm"], ref["stats"]["groups"])
    istd = ref["inv_std"]
    ratios, sigmas = [], []
    for k in np.unique(ids):
        sel = ids == k
        den = float(np.sum(gd[sel] * gd[sel]))
        if den == 0:
            return None
        c = float(np.sum(got[sel] * gd[sel])) / den
        if np.max(np.abs(got[sel] - c * gd[sel])) > 1e-6 * max(1.0, np.max(np.abs(got[sel]))):
            return None
        sigmas.append(float(np.mean(1.0 / istd[sel])))
        ratios.append(c * sigmas[-1])  # k·σ: 1 when k = 1/σ
    r = np.array(ratios)
    sig = np.array(sigmas)
    if np.allclose(r, 1.0, rtol=1e-4):
        what = "1/√(σ²+ε), the right scale"
    elif np.allclose(r, sig ** 2, rtol=1e-4):
        what = "√(σ²+ε): it multiplies by the standard deviation instead of dividing"
    elif np.allclose(r, sig, rtol=1e-4):
        what = "1: the division by √(σ²+ε) is missing too"
    else:
        what = "not 1/√(σ²+ε)"
    return ("dx is γ·dy times one factor per group (the factor is " + what + "): the mean and "
            "variance paths of the backward pass (the sums over the group) are missing")


def residual_shape(diff, ref, tol: float) -> str | None:
    """Describe ``diff`` (user dx − reference dx) when it is a + b·x̂ per group; else None."""
    diff = np.asarray(diff, dtype=np.float64)
    xhat = ref["xhat"]
    ids = group_ids(diff.shape, ref["stats"]["norm"], ref["stats"]["groups"])
    scale = max(float(np.max(np.abs(diff))), 1e-300)
    a_big = b_big = False
    for k in np.unique(ids):
        sel = ids == k
        d, xh = diff[sel], xhat[sel]
        design = np.stack([np.ones_like(xh), xh], axis=1)
        coef, *_ = np.linalg.lstsq(design, d, rcond=None)
        if np.max(np.abs(design @ coef - d)) > 1e-3 * scale + tol:
            return None
        a_big |= abs(coef[0]) > 1e-3 * scale
        b_big |= abs(coef[1]) > 1e-3 * scale
    if a_big and not b_big:
        return "dx is off by a constant per group: the mean path of the backward pass is wrong"
    if b_big and not a_big:
        return ("dx is off by a term proportional to x̂: the variance path of the backward pass "
                "is wrong")
    return ("dx is off by a + b·x̂ per group: both the mean and the variance paths of the "
            "backward pass are wrong")
