"""A convention, not a bug: running_var starts at 0 (the cs231n template's own default).

Everything else is right (see correct.py), so the checker passes it with a NOTE. When it
matters: on the first training step the running variance becomes (1 − momentum)·var = 0.1·var,
so evaluation right after a few steps divides by a far too small variance (outputs about √10
times too large); PyTorch starts at 1 (nnabla PR #294 changed the same).

Check it with::

    gammabeta check examples/broken_batchnorm/convention_running_var_zero.py:batchnorm_forward
"""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization, training or test mode; returns (out, cache)."""
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    n, d = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(d, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(d, dtype=x.dtype))  # PyTorch: ones

    if mode == "train":
        if n < 2:
            raise ValueError(f"batchnorm_forward: training needs more than one sample per "
                             f"feature, got x of shape {x.shape}")
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc * xc).mean(axis=0)  # biased, used to normalize
        inv_std = 1.0 / np.sqrt(var + eps)
        xhat = xc * inv_std
        out = gamma * xhat + beta
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var * (n / (n - 1))
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
