"""A robustness gap (WARN): a batch of one silently turns the running variance into NaN.

The unbiased variance for running_var is computed with ``x.var(axis=0, ddof=1)``, which for
N = 1 divides 0 by N − 1 = 0: NumPy only warns and returns NaN, and every later evaluation
returns NaN. (PyTorch raises "Expected more than 1 value per channel when training".)

Check it with::

    gammabeta check examples/broken_batchnorm/warn_batch_of_one_nan.py:batchnorm_forward
"""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization, training or test mode; returns (out, cache)."""
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    n, d = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(d, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.ones(d, dtype=x.dtype))

    if mode == "train":
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc * xc).mean(axis=0)  # biased, used to normalize
        inv_std = 1.0 / np.sqrt(var + eps)
        xhat = xc * inv_std
        out = gamma * xhat + beta
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * x.var(axis=0, ddof=1)
        cache = (xhat, gamma, inv_std)
    elif mode == "test":
        inv_std = 1.0 / np.sqrt(running_var + eps)
        out = gamma * (x - running_mean) * inv_std + beta
        cache = None
    else:
        raise ValueError(f'invalid forward batchnorm mode "{mode}"')

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    """Gradients of the training-mode forward pass: (dx, dgamma, dbeta)."""
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma * inv_std * (dout - dbeta / n - xhat * dgamma / n)
    return dx, dgamma, dbeta
