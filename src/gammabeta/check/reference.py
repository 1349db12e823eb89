"""What a correct normalization layer returns, in float64, for every kind the checker knows.

One closed form covers them all; only the *groups* over which the statistics are taken differ:

============================  =========================  ================  ===============
kind                          input                      statistics over   γ, β per
============================  =========================  ================  ===============
``batchnorm``                 (N, C) or (N, C, H, W)     N (and H, W)      channel
``spatial_batchnorm``         (N, C, H, W)               N, H, W           channel
``layernorm``                 (N, D)                     D, per sample     feature
``groupnorm``                 (N, C, H, W), G groups     C/G, H, W         channel
============================  =========================  ================  ===============

With μ and σ² the mean and (biased) variance of a group of m values and ε > 0::

    x̂ = (x − μ) / √(σ² + ε),      y = γ·x̂ + β
    dx = (1/√(σ² + ε)) · (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),   ĝ = γ·dy  (means over the group)
    dγ = Σ dy·x̂,   dβ = Σ dy      (sums over every axis but 1)

The batch kinds keep running statistics with PyTorch's update (new-batch weight w = momentum,
unbiased variance, starting at 0 and 1); evaluation uses them:
``y = γ·(x − running_mean)/√(running_var + ε) + β``. The tests check these formulas value by
value against ``torch.nn.functional.batch_norm``/``layer_norm``/``group_norm``.

Besides the reference, :mod:`gammabeta.check.diagnose` builds the *wrong* answers of classic
mistakes from the pieces returned here, to name a mistake by which prediction the user's numbers
match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Norm", "NORMS", "stats", "train_ref", "eval_ref", "running_after", "group_mean"]


@dataclass(frozen=True)
class Norm:
    """A kind of normalization: which values share one mean and variance.

    Attributes
    ----------
    name : str
        ``batchnorm``, ``spatial_batchnorm``, ``layernorm`` or ``groupnorm``.
    stat : str
        ``batch`` (per channel over N and positions), ``layer`` (per sample over all features)
        or ``group`` (per sample and group of C/G consecutive channels).
    running : bool
        Whether the layer keeps running statistics for evaluation.
    spatial : tuple
        The (H, W) the checker's inputs use ((): 2-D input).
    """

    name: str
    stat: str
    running: bool
    spatial: tuple = ()
    title: str = ""

    def axes(self, ndim: int) -> tuple:
        """The axes reduced for one statistic (groups are handled by :func:`group_mean`)."""
        if self.stat == "batch":
            return (0,) + tuple(range(2, ndim))
        return tuple(range(1, ndim))


NORMS = {
    "batchnorm": Norm("batchnorm", "batch", True, (), "batch normalization"),
    "spatial_batchnorm": Norm("spatial_batchnorm", "batch", True, (3, 4),
                              "spatial batch normalization"),
    "layernorm": Norm("layernorm", "layer", False, (), "layer normalization"),
    "groupnorm": Norm("groupnorm", "group", False, (3, 4), "group normalization"),
}


def group_mean(a, norm: Norm, groups: int = 1, dtype=np.float64) -> np.ndarray:
    """The mean of ``a`` over each statistics group, broadcast back to ``a``'s shape, computed
    in ``dtype`` (float32 to reproduce what float32 code computes)."""
    a = np.asarray(a, dtype=dtype)
    if norm.stat == "group":
        n = a.shape[0]
        g = a.reshape(n, groups, -1).mean(axis=2, keepdims=True, dtype=dtype)
        return np.broadcast_to(g, (n, groups, a[0].size // groups)).reshape(a.shape)
    return np.broadcast_to(a.mean(axis=norm.axes(a.ndim), keepdims=True, dtype=dtype), a.shape)


def _count(shape, norm: Norm, groups: int) -> int:
    """Values per statistics group (m)."""
    size = int(np.prod(shape))
    if norm.stat == "batch":
        return size // shape[1]
    if norm.stat == "layer":
        return size // shape[0]
    return size // (shape[0] * groups)


def _bshape(ndim: int) -> tuple:
    """How a per-channel array broadcasts against the input: (1, C, 1, ...)."""
    return (1, -1) + (1,) * (ndim - 2)


def stats(x, norm: Norm | None = None, groups: int = 1) -> dict:
    """Per-group statistics in float64: mean and biased/unbiased variance (broadcast to x),
    plus the per-channel vectors for the batch kinds (``mean_c``, ``var_c``, ``unbiased_c``)."""
    norm = norm or NORMS["batchnorm"]
    x = np.asarray(x, dtype=np.float64)
    m = _count(x.shape, norm, groups)
    mean = group_mean(x, norm, groups)
    var = group_mean((x - mean) ** 2, norm, groups)
    with np.errstate(all="ignore"):
        unbiased = var * m / (m - 1) if m > 1 else np.full_like(var, np.nan)
    out = {"mean": mean, "var": var, "unbiased": unbiased, "m": m, "norm": norm,
           "groups": groups, "axes": norm.axes(x.ndim), "bshape": _bshape(x.ndim)}
    if norm.stat == "batch":
        idx = (0, slice(None)) + (0,) * (x.ndim - 2)
        out.update(mean_c=mean[idx].copy(), var_c=var[idx].copy(),
                   unbiased_c=unbiased[idx].copy())
    return out


def train_ref(x, gamma, beta, eps: float, dy=None, norm: Norm | None = None,
              groups: int = 1) -> dict:
    """Training-mode output, gradients and the pieces the diagnoses need (x̂, 1/σ, ...)."""
    norm = norm or NORMS["batchnorm"]
    x = np.asarray(x, dtype=np.float64)
    s = stats(x, norm, groups)
    bs = s["bshape"]
    g = np.asarray(gamma, dtype=np.float64).reshape(-1)
    b = np.asarray(beta, dtype=np.float64).reshape(-1)
    with np.errstate(all="ignore"):  # ε = 0 (detected) on a constant group: NaN, as the code
        inv_std = 1.0 / np.sqrt(s["var"] + eps)
        xhat = (x - s["mean"]) * inv_std
    out = {"y": g.reshape(bs) * xhat + b.reshape(bs), "stats": s, "xhat": xhat,
           "inv_std": inv_std, "gamma": g, "beta": b, "eps": eps}
    if dy is not None:
        dy = np.asarray(dy, dtype=np.float64)
        out.update(backward_parts(dy, out))
    return out


def backward_parts(dy, ref: dict, gamma=None) -> dict:
    """dx, dγ, dβ for upstream ``dy`` given a :func:`train_ref` result (γ overridable)."""
    s = ref["stats"]
    norm, groups = s["norm"], s["groups"]
    g = ref["gamma"] if gamma is None else np.asarray(gamma, dtype=np.float64)
    xhat = ref["xhat"]
    gh = g.reshape(s["bshape"]) * dy
    dx = ref["inv_std"] * (gh - group_mean(gh, norm, groups)
                           - xhat * group_mean(gh * xhat, norm, groups))
    red = (0,) + tuple(range(2, dy.ndim))
    return {"dx": dx, "dgamma": (dy * xhat).sum(axis=red), "dbeta": dy.sum(axis=red)}


def eval_ref(x, gamma, beta, eps: float, running_mean, running_var) -> np.ndarray:
    """Evaluation-mode output of a batch kind with the given running statistics."""
    x = np.asarray(x, dtype=np.float64)
    bs = _bshape(x.ndim)
    rm = np.asarray(running_mean, dtype=np.float64).reshape(bs)
    rv = np.asarray(running_var, dtype=np.float64).reshape(bs)
    g = np.asarray(gamma, dtype=np.float64).reshape(bs)
    b = np.asarray(beta, dtype=np.float64).reshape(bs)
    with np.errstate(all="ignore"):
        return g * (x - rm) / np.sqrt(rv + eps) + b


def running_after(batches, w: float = 0.1, unbiased: bool = True, r0=(0.0, 1.0),
                  fold_eps: float = 0.0):
    """Running mean and variance (per channel) after training steps on ``batches``.

    The recurrence ``r ← (1 − w)·r + w·b`` with b the batch mean and the unbiased (PyTorch) or
    biased batch variance, from start values ``r0``; ``fold_eps`` adds ε to each stored variance
    (implementations that keep var + ε).
    """
    c = np.asarray(batches[0]).shape[1]
    rm = np.broadcast_to(np.asarray(r0[0], dtype=np.float64), (c,)).copy()
    rv = np.broadcast_to(np.asarray(r0[1], dtype=np.float64), (c,)).copy()
    for xb in batches:
        s = stats(xb)
        rm = (1 - w) * rm + w * s["mean_c"]
        rv = (1 - w) * rv + w * ((s["unbiased_c"] if unbiased else s["var_c"]) + fold_eps)
    return rm, rv
