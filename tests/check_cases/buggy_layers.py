"""Our own buggy cs231n-style functions, one real mistake each (the patterns the corpus showed).
Each ``X_forward`` pairs with ``X_backward``; the docstring names the bug."""

import numpy as np


def _bn_train(x, gamma, beta, eps):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    std = np.sqrt(var + eps)
    xn = (x - mu) / std
    return gamma * xn + beta, (xn, gamma, std)


def _store(bn_param, x2):
    """The cs231n running update (momentum on the old value, biased variance)."""
    mom, d = bn_param.get("momentum", 0.9), x2.shape[1]
    rm = bn_param.get("running_mean", np.zeros(d))
    rv = bn_param.get("running_var", np.zeros(d))
    bn_param["running_mean"] = mom * rm + (1 - mom) * x2.mean(axis=0)
    bn_param["running_var"] = mom * rv + (1 - mom) * x2.var(axis=0)


def _bn_backward(dout, cache):
    xn, gamma, std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xn).sum(axis=0)
    dx = gamma / (n * std) * (n * dout - dbeta - xn * dgamma)
    return dx, dgamma, dbeta


def evalepsout_bn_forward(x, gamma, beta, bn_param):
    """Bug: eval divides by √running_var + ε (ε outside the square root, eval only)."""
    eps, mom = bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    d = x.shape[1]
    rm = bn_param.get("running_mean", np.zeros(d))
    rv = bn_param.get("running_var", np.ones(d))
    if bn_param["mode"] == "train":
        out, cache = _bn_train(x, gamma, beta, eps)
        bn_param["running_mean"] = mom * rm + (1 - mom) * x.mean(axis=0)
        bn_param["running_var"] = mom * rv + (1 - mom) * x.var(axis=0)
        return out, cache
    return gamma * (x - rm) / (np.sqrt(rv) + eps) + beta, None


def evalepsout_bn_backward(dout, cache):
    return _bn_backward(dout, cache)


def lastbatch_bn_forward(x, gamma, beta, bn_param):
    """Bug: the running statistics are the last batch's (no average)."""
    eps = bn_param.get("eps", 1e-5)
    if bn_param["mode"] == "train":
        out, cache = _bn_train(x, gamma, beta, eps)
        bn_param["running_mean"] = x.mean(axis=0)
        bn_param["running_var"] = x.var(axis=0)
        return out, cache
    rm, rv = bn_param["running_mean"], bn_param["running_var"]
    return gamma * (x - rm) / np.sqrt(rv + eps) + beta, None


def lastbatch_bn_backward(dout, cache):
    return _bn_backward(dout, cache)


def avggrad_bn_forward(x, gamma, beta, bn_param):
    """Bug: dγ and dβ are averaged over the batch (÷N) in backward. Hard-coded ε = 1e-8 is a
    convention, not a bug."""
    if bn_param["mode"] == "test":
        rm, rv = bn_param["running_mean"], bn_param["running_var"]
        return gamma * (x - rm) / np.sqrt(rv + 1e-8) + beta, None
    _store(bn_param, x)
    return _bn_train(x, gamma, beta, 1e-8)


def avggrad_bn_backward(dout, cache):
    dx, dgamma, dbeta = _bn_backward(dout, cache)
    n = dout.shape[0]
    return dx, dgamma / n, dbeta / n


def scrambled_spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Bug: x.reshape(-1, C) without moving C last: channels scrambled."""
    n, c, h, w = x.shape
    if bn_param["mode"] == "test":
        rm, rv = bn_param["running_mean"], bn_param["running_var"]
        return (gamma * (x.reshape(-1, c) - rm) / np.sqrt(rv + 1e-5) + beta).reshape(x.shape), None
    _store(bn_param, x.reshape(-1, c))
    out, cache = _bn_train(x.reshape(-1, c), gamma, beta, bn_param.get("eps", 1e-5))
    return out.reshape(n, c, h, w), cache


def scrambled_spatial_batchnorm_backward(dout, cache):
    n, c, h, w = dout.shape
    dx, dg, db = _bn_backward(dout.reshape(-1, c), cache)
    return dx.reshape(n, c, h, w), dg, db


def interleaved_spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Bug: groups taken interleaved: reshape (N, C // G, G, H, W), not (N, G, C // G, ...)."""
    eps = gn_param.get("eps", 1e-5)
    n, c, h, w = x.shape
    xg = x.reshape(n, c // G, G, h, w)
    mu = xg.mean(axis=(1, 3, 4), keepdims=True)
    std = np.sqrt(xg.var(axis=(1, 3, 4), keepdims=True) + eps)
    xn = ((xg - mu) / std).reshape(n, c, h, w)
    return gamma * xn + beta, (xn, gamma, std, G)


def interleaved_spatial_groupnorm_backward(dout, cache):
    xn, gamma, std, G = cache
    n, c, h, w = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * xn).sum(axis=(0, 2, 3), keepdims=True)
    dxn = (dout * gamma).reshape(n, c // G, G, h, w)
    xg = xn.reshape(n, c // G, G, h, w)
    m = (c // G) * h * w
    dx = (m * dxn - dxn.sum(axis=(1, 3, 4), keepdims=True)
          - xg * (dxn * xg).sum(axis=(1, 3, 4), keepdims=True)) / (m * std)
    return dx.reshape(n, c, h, w), dgamma, dbeta


def wrongaxis_layernorm_forward(x, gamma, beta, ln_param):
    """Bug: statistics over the batch axis (that is batch norm, not layer norm)."""
    return _bn_train(x, gamma, beta, ln_param.get("eps", 1e-5))


def wrongaxis_layernorm_backward(dout, cache):
    return _bn_backward(dout, cache)


def nonedx_layernorm_forward(x, gamma, beta, ln_param):
    """Bug: backward returns dx = None (left unimplemented)."""
    mu = x.mean(axis=1, keepdims=True)
    std = np.sqrt(x.var(axis=1, keepdims=True) + ln_param.get("eps", 1e-5))
    xn = (x - mu) / std
    return gamma * xn + beta, (xn,)


def nonedx_layernorm_backward(dout, cache):
    (xn,) = cache
    return None, (dout * xn).sum(axis=0), dout.sum(axis=0)


def perposition_spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Bug: reshaped to (N·C, H·W), so statistics (and running statistics, of shape (H·W,)) are
    per position instead of per channel."""
    n, c, h, w = x.shape
    x2 = x.reshape(-1, h * w)
    if bn_param["mode"] == "test":
        rm, rv = bn_param["running_mean"], bn_param["running_var"]
        return gamma.reshape(1, c, 1, 1) * ((x2 - rm) / np.sqrt(rv + 1e-5)).reshape(x.shape) \
            + beta.reshape(1, c, 1, 1), None
    _store(bn_param, x2)
    mu, var = x2.mean(axis=0), x2.var(axis=0)
    xn = ((x2 - mu) / np.sqrt(var + 1e-5)).reshape(x.shape)
    return gamma.reshape(1, c, 1, 1) * xn + beta.reshape(1, c, 1, 1), (xn, gamma)


def perposition_spatial_batchnorm_backward(dout, cache):
    xn, gamma = cache
    return dout * gamma.reshape(1, -1, 1, 1), (dout * xn).sum((0, 2, 3)), dout.sum((0, 2, 3))


def perpixel_spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Bug: statistics over the group's channels at each position separately (axis 2 of
    (N, G, C // G, H, W) only), not over (C // G, H, W)."""
    n, c, h, w = x.shape
    xg = x.reshape(n, G, c // G, h, w)
    xn = ((xg - xg.mean(axis=2, keepdims=True))
          / np.sqrt(xg.var(axis=2, keepdims=True) + gn_param.get("eps", 1e-5))).reshape(x.shape)
    return gamma * xn + beta, (xn, gamma)


def perpixel_spatial_groupnorm_backward(dout, cache):
    xn, gamma = cache
    return dout * gamma, (dout * xn).sum((0, 2, 3), keepdims=True), dout.sum((0, 2, 3),
                                                                           keepdims=True)


def sigmadx_bn_forward(x, gamma, beta, bn_param):
    """Bug: dx = γ·dy·σ, an elementwise 'derivative' with no sums over the batch (and σ
    multiplied instead of divided)."""
    if bn_param["mode"] == "test":
        rm, rv = bn_param["running_mean"], bn_param["running_var"]
        return gamma * (x - rm) / np.sqrt(rv + 1e-5) + beta, None
    _store(bn_param, x)
    out, (xn, g, std) = _bn_train(x, gamma, beta, bn_param.get("eps", 1e-5))
    return out, (xn, g, std)


def sigmadx_bn_backward(dout, cache):
    xn, gamma, std = cache
    return dout * gamma * std, (dout * xn).sum(axis=0), dout.sum(axis=0)


def inplace_bn_forward(x, gamma, beta, bn_param):
    """Robustness gap (WARN): centres the caller's x in place (x -= mu). Otherwise correct."""
    eps, mom = bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    d = x.shape[1]
    if bn_param["mode"] == "test":
        rm, rv = bn_param["running_mean"], bn_param["running_var"]
        return gamma * (x - rm) / np.sqrt(rv + eps) + beta, None
    mu = x.mean(axis=0)
    x -= mu
    var = (x * x).mean(axis=0)
    bn_param["running_mean"] = mom * bn_param.get("running_mean", np.zeros(d)) + (1 - mom) * mu
    bn_param["running_var"] = mom * bn_param.get("running_var", np.zeros(d)) + (1 - mom) * var
    std = np.sqrt(var + eps)
    xn = x / std
    return gamma * xn + beta, (xn, gamma, std)


def inplace_bn_backward(dout, cache):
    return _bn_backward(dout, cache)
