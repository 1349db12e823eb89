"""A correct batch normalization as a class, with PyTorch's semantics.

``BatchNorm(num_features)`` has ``forward(x)``/``backward(dout)``, ``train()``/``eval()``,
parameters ``gamma``/``beta`` with gradients ``dgamma``/``dbeta`` (set by ``backward``, which
returns dx), and buffers ``running_mean`` (starts at 0) and ``running_var`` (starts at 1).

* x of shape (N, C) or (N, C, H, W); statistics per channel over every axis but 1 (m values);
* ``momentum`` is the weight of the new batch (PyTorch's convention, default 0.1);
* training normalizes with the biased variance and stores the unbiased one, ×m/(m − 1);
* the variance is the two-pass mean((x − μ)²), stable with a large common offset;
* a batch of one value per channel raises ValueError in training, as PyTorch does.

Check it with::

    gammabeta check examples/broken_batchnorm/correct_class.py:BatchNorm
"""

import numpy as np


class BatchNorm:
    """Batch normalization over axis 1 of (N, C) or (N, C, H, W) inputs."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.eps = eps
        self.momentum = momentum
        self.gamma = np.ones(num_features)
        self.beta = np.zeros(num_features)
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)
        self.dgamma = self.dbeta = None
        self.training = True
        self._cache = None

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def forward(self, x):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        m = x.size // x.shape[1]
        if self.training:
            if m < 2:
                raise ValueError(f"BatchNorm: training needs more than one value per channel, "
                                 f"got x of shape {x.shape}")
            mu = x.mean(axis=axes)
            xc = x - mu.reshape(shape)
            var = (xc * xc).mean(axis=axes)
            a = self.momentum
            self.running_mean = (1 - a) * self.running_mean + a * mu
            self.running_var = (1 - a) * self.running_var + a * var * (m / (m - 1))
        else:
            xc = x - self.running_mean.reshape(shape)
            var = self.running_var
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat = xc * inv_std.reshape(shape)
        self._cache = (xhat, inv_std, axes, shape, m, self.training)
        return self.gamma.reshape(shape) * xhat + self.beta.reshape(shape)

    def backward(self, dout):
        xhat, inv_std, axes, shape, m, training = self._cache
        self.dbeta = dout.sum(axis=axes)
        self.dgamma = (dout * xhat).sum(axis=axes)
        g = (self.gamma * inv_std).reshape(shape)
        if not training:  # the statistics are constants in eval mode
            return g * dout
        dbeta_m = (self.dbeta / m).reshape(shape)
        dgamma_m = (self.dgamma / m).reshape(shape)
        return g * (dout - dbeta_m - xhat * dgamma_m)
