"""Broken: evaluation divides by √running_var + ε instead of √(running_var + ε).

Written the way most cs231n solutions are (the template's conventions: momentum 0.9 on the old
value, a biased running variance, running_var starting at zeros, ε = 1e-8 hard-coded), which the
checker reports as notes. The one real mistake is in test mode: ε is added after the square
root. With an ordinary running variance the two differ by ~1e-5 relative, invisible in a
loss curve; for a channel whose variance is near ε (a dead or constant feature) the output is
off by a large factor. Training mode is right, so every training check passes.

Check it with::

    gammabeta check examples/broken_batchnorm/eval_eps_outside_sqrt.py
"""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization, training or test mode; returns (out, cache)."""
    mode = bn_param["mode"]
    eps = 1e-8
    momentum = bn_param.get("momentum", 0.9)
    n, d = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(d, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(d, dtype=x.dtype))
    cache = None
    if mode == "train":
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc * xc).mean(axis=0)
        std = np.sqrt(var + eps)
        xhat = xc / std
        out = gamma * xhat + beta
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        cache = (xhat, gamma, std)
    elif mode == "test":
        out = gamma * (x - running_mean) / (np.sqrt(running_var) + eps) + beta  # BUG
    else:
        raise ValueError(f'invalid forward batchnorm mode "{mode}"')
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    """Gradients of the training-mode forward pass: (dx, dgamma, dbeta)."""
    xhat, gamma, std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma / (n * std) * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
