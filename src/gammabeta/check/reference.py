"""What a correct BatchNorm returns: gammabeta.nn.BatchNorm1d/2d run in float64.

Besides the reference itself this module builds the *wrong* answers that classic mistakes give
(backward without the mean or the variance path, dx ignoring γ, eval with batch statistics,
running_var started at 0, ...), so that :mod:`gammabeta.check.diagnose` can name a mistake by
testing which hypothesis the user's numbers match.
"""

from __future__ import annotations

import numpy as np

from ..nn import BatchNorm1d, BatchNorm2d

__all__ = ["make_bn", "train_ref", "eval_ref", "running_after", "stats"]


def make_bn(c: int, ndim: int, gamma, beta, eps: float, momentum: float = 0.1):
    """A float64 reference layer with the given γ and β."""
    cls = BatchNorm2d if ndim == 4 else BatchNorm1d
    bn = cls(c, eps=eps, momentum=momentum, dtype=np.float64)
    bn.weight.data[...] = np.asarray(gamma, dtype=np.float64).reshape(c)
    bn.bias.data[...] = np.asarray(beta, dtype=np.float64).reshape(c)
    return bn


def stats(x) -> dict:
    """Per-channel batch statistics in float64: mean, biased and unbiased variance, count."""
    x = np.asarray(x, dtype=np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    xc = x - mean.reshape(bshape)
    var = (xc * xc).mean(axis=axes)
    unbiased = var * m / (m - 1) if m > 1 else np.full_like(var, np.nan)
    return {"mean": mean, "var": var, "unbiased": unbiased, "m": m, "axes": axes,
            "bshape": bshape}


def train_ref(x, gamma, beta, eps: float, dy=None) -> dict:
    """Training-mode output, gradients and the pieces the diagnoses need (x̂, 1/σ, ...)."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[1]
    bn = make_bn(c, x.ndim, gamma, beta, eps)
    out = {"y": bn(x)}
    s = stats(x)
    bs = s["bshape"]
    inv_std = 1.0 / np.sqrt(s["var"] + eps)
    xhat = (x - s["mean"].reshape(bs)) * inv_std.reshape(bs)
    g = np.asarray(gamma, dtype=np.float64).reshape(c)
    b = np.asarray(beta, dtype=np.float64).reshape(c)
    out.update(stats=s, xhat=xhat, inv_std=inv_std, gamma=g, beta=b)
    if dy is not None:
        dy = np.asarray(dy, dtype=np.float64)
        out["dx"] = bn.backward(dy)
        out["dgamma"] = bn.weight.grad.copy()
        out["dbeta"] = bn.bias.grad.copy()
    return out


def eval_ref(x, gamma, beta, eps: float, running_mean, running_var) -> np.ndarray:
    """Evaluation-mode output with the given running statistics."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[1]
    bn = make_bn(c, x.ndim, gamma, beta, eps)
    bn.running_mean[...] = np.asarray(running_mean, dtype=np.float64).reshape(c)
    bn.running_var[...] = np.asarray(running_var, dtype=np.float64).reshape(c)
    return bn.eval()(x)


def running_after(batches, w: float = 0.1, unbiased: bool = True, r0=(0.0, 1.0)):
    """Running mean and variance after training steps on ``batches`` with new-batch weight ``w``.

    With ``unbiased=True`` and ``r0=(0, 1)`` this is exactly PyTorch's update (the reference
    layer is used); otherwise the same recurrence with the biased variance or other start values.
    """
    c = np.asarray(batches[0]).shape[1]
    if unbiased and r0 == (0.0, 1.0) and 0.0 <= w <= 1.0:
        bn = make_bn(c, np.asarray(batches[0]).ndim, np.ones(c), np.zeros(c), 1e-5, momentum=w)
        for xb in batches:
            bn(np.asarray(xb, dtype=np.float64))
        return bn.running_mean.copy(), bn.running_var.copy()
    rm = np.full(c, float(r0[0]))
    rv = np.full(c, float(r0[1]))
    for xb in batches:
        s = stats(xb)
        rm = (1 - w) * rm + w * s["mean"]
        rv = (1 - w) * rv + w * (s["unbiased"] if unbiased else s["var"])
    return rm, rv
