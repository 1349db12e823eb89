"""Our own normalization classes in the shapes real code takes (constructor names, eval switches,
where parameters and gradients live), each correct unless its docstring names a bug."""

import copy

import numpy as np


class MyTorchBatchNorm:
    """CMU mytorch style: BatchNorm(in_feature, alpha=0.9), BW/Bb of shape (1, F), dLdBW/dLdBb,
    running_M/running_V, forward(Z, eval=False), ε = 1e-8 hard-coded, biased running variance."""

    def __init__(self, in_feature, alpha=0.9):
        self.alpha, self.eps = alpha, 1e-8
        self.BW, self.Bb = np.ones((1, in_feature)), np.zeros((1, in_feature))
        self.dLdBW, self.dLdBb = np.zeros((1, in_feature)), np.zeros((1, in_feature))
        self.running_M, self.running_V = np.zeros((1, in_feature)), np.ones((1, in_feature))

    def forward(self, Z, eval=False):
        if eval:
            return self.BW * (Z - self.running_M) / np.sqrt(self.running_V + self.eps) + self.Bb
        self.Z, self.N = Z, Z.shape[0]
        self.M, self.V = Z.mean(axis=0, keepdims=True), Z.var(axis=0, keepdims=True)
        self.NZ = (Z - self.M) / np.sqrt(self.V + self.eps)
        self.running_M = self.alpha * self.running_M + (1 - self.alpha) * self.M
        self.running_V = self.alpha * self.running_V + (1 - self.alpha) * self.V
        return self.BW * self.NZ + self.Bb

    def backward(self, dLdBZ):
        self.dLdBW = np.sum(dLdBZ * self.NZ, axis=0, keepdims=True)
        self.dLdBb = np.sum(dLdBZ, axis=0, keepdims=True)
        g = dLdBZ * self.BW
        n = self.N
        std = np.sqrt(self.V + self.eps)
        return (n * g - g.sum(0) - self.NZ * (g * self.NZ).sum(0)) / (n * std)


class MyTorchBatchNormIgnoresMomentum(MyTorchBatchNorm):
    """Bug: the constructor takes alpha but the update uses a hard-coded 0.9."""

    def __init__(self, in_feature, alpha=0.9):
        super().__init__(in_feature, alpha)
        self.alpha = 0.9


class TextbookBatchNormalization:
    """Deep Learning from Scratch style: γ and β given to the constructor, forward(x, train_flg),
    running statistics created on the first forward pass (zeros), momentum on the old value."""

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.running_mean, self.running_var = running_mean, running_var

    def forward(self, x, train_flg=True):
        if self.running_mean is None:
            self.running_mean = np.zeros(x.shape[1])
            self.running_var = np.zeros(x.shape[1])
        if train_flg:
            mu = x.mean(axis=0)
            self.xc = x - mu
            var = np.mean(self.xc ** 2, axis=0)
            self.std = np.sqrt(var + 10e-7)
            self.xn = self.xc / self.std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            self.xn = (x - self.running_mean) / np.sqrt(self.running_var + 10e-7)
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        n = dout.shape[0]
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        g = dout * self.gamma
        return (n * g - g.sum(0) - self.xn * (g * self.xn).sum(0)) / (n * self.std)


class Recorder:
    """A stand-in for the optimizer some libraries pass to initialize(); never used here."""


class LazyBatchNormalization:
    """ML-From-Scratch style: BatchNormalization(momentum=0.99); γ and β created by
    initialize(optimizer) after set_input_shape; forward_pass(X, training=True);
    backward_pass(accum_grad) hands the gradients to the optimizer; ε = 0.01;
    momentum on the old value; biased running variance, which starts as the first batch's."""

    def __init__(self, momentum=0.99):
        self.momentum, self.eps = momentum, 0.01
        self.running_mean = self.running_var = None
        self.input_shape = None

    def set_input_shape(self, shape):
        self.input_shape = shape

    def initialize(self, optimizer):
        self.gamma = np.ones(self.input_shape)
        self.beta = np.zeros(self.input_shape)
        self.gamma_opt, self.beta_opt = copy.copy(optimizer), copy.copy(optimizer)

    def forward_pass(self, X, training=True):
        if self.running_mean is None:
            self.running_mean, self.running_var = X.mean(axis=0), X.var(axis=0)
        if training:
            mean, var = X.mean(axis=0), X.var(axis=0)
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mean
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            mean, var = self.running_mean, self.running_var
        self.X_centered = X - mean
        self.stddev_inv = 1 / np.sqrt(var + self.eps)
        return self.gamma * self.X_centered * self.stddev_inv + self.beta

    def backward_pass(self, accum_grad):
        gamma = self.gamma
        X_norm = self.X_centered * self.stddev_inv
        self.gamma = self.gamma_opt.update(self.gamma, np.sum(accum_grad * X_norm, axis=0))
        self.beta = self.beta_opt.update(self.beta, np.sum(accum_grad, axis=0))
        n = accum_grad.shape[0]
        return (1 / n) * gamma * self.stddev_inv * (
            n * accum_grad - np.sum(accum_grad, axis=0)
            - self.X_centered * self.stddev_inv ** 2 * np.sum(accum_grad * self.X_centered, axis=0))


class FoldedEpsBatchNorm:
    """ε folded into the stored running variance (running_var = avg of var + ε), eval dividing
    by √running_var: consistent. train()/eval() methods, PyTorch momentum 0.1, unbiased."""

    def __init__(self, num_features, eps=1e-3, momentum=0.1):
        self.eps, self.momentum = eps, momentum
        self.weight, self.bias = np.ones(num_features), np.zeros(num_features)
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features) + eps
        self.training = True

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def forward(self, x):
        if self.training:
            n = x.shape[0]
            mu, var = x.mean(0), x.var(0)
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mu
            self.running_var = (1 - m) * self.running_var + m * (var * n / (n - 1) + self.eps)
            self.std = np.sqrt(var + self.eps)
        else:
            mu, self.std = self.running_mean, np.sqrt(self.running_var)
        self.xn = (x - mu) / self.std
        return self.weight * self.xn + self.bias

    def backward(self, dy):
        n = dy.shape[0]
        self.dweight, self.dbias = (dy * self.xn).sum(0), dy.sum(0)
        g = dy * self.weight
        return (n * g - g.sum(0) - self.xn * (g * self.xn).sum(0)) / (n * self.std)


class LayerNormGradsList:
    """LayerNorm(dim, eps=1e-8): gradients kept as self.grads = [dγ, dβ], no eval mode."""

    def __init__(self, dim, eps=1e-8):
        self.gamma, self.beta, self.eps = np.ones(dim), np.zeros(dim), eps

    def forward(self, x):
        self.std = np.sqrt(x.var(axis=1, keepdims=True) + self.eps)
        self.xn = (x - x.mean(axis=1, keepdims=True)) / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, gradient):
        self.grads = [np.sum(gradient * self.xn, axis=0), gradient.sum(axis=0)]
        g = gradient * self.gamma
        d = g.shape[1]
        return (d * g - g.sum(1, keepdims=True)
                - self.xn * (g * self.xn).sum(1, keepdims=True)) / (d * self.std)


class OddNamesBatchNorm:
    """Names no list guesses: running statistics ema_mu / ema_sig2 and gradients grad_scale /
    grad_shift, found by watching what a training step and a backward pass change."""

    def __init__(self, n):
        self.g, self.b = np.ones(n), np.zeros(n)
        self.ema_mu, self.ema_sig2 = np.zeros(n), np.ones(n)

    def forward(self, x, training=True):
        if training:
            if len(x) < 2:
                raise ValueError("need two or more samples")
            mu, var = x.mean(0), x.var(0)
            self.ema_mu = 0.9 * self.ema_mu + 0.1 * mu
            self.ema_sig2 = 0.9 * self.ema_sig2 + 0.1 * var * len(x) / (len(x) - 1)
        else:
            mu, var = self.ema_mu, self.ema_sig2
        self.std = np.sqrt(var + 1e-5)
        self.xn = (x - mu) / self.std
        return self.g * self.xn + self.b

    def backward(self, dy):
        n = len(dy)
        self.grad_scale, self.grad_shift = (dy * self.xn).sum(0), dy.sum(0)
        gd = dy * self.g
        return (n * gd - gd.sum(0) - self.xn * (gd * self.xn).sum(0)) / (n * self.std)


class SGDInBackwardBatchNorm:
    """backward(dout, lr) updates γ and β itself (plain SGD) and stores no gradient."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        self.gamma, self.beta = np.ones(num_features), np.zeros(num_features)
        self.running_mean, self.running_var = np.zeros(num_features), np.ones(num_features)
        self.momentum, self.eps = momentum, eps

    def forward(self, x, train=True):
        if train:
            if len(x) < 2:
                raise ValueError("need two or more samples")
            mu, var = x.mean(0), x.var(0)
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mu
            self.running_var = (1 - m) * self.running_var + m * x.var(0, ddof=1)
        else:
            mu, var = self.running_mean, self.running_var
        self.std = np.sqrt(var + self.eps)
        self.xn = (x - mu) / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dout, lr):
        n = len(dout)
        dgamma, dbeta = (dout * self.xn).sum(0), dout.sum(0)
        gd = dout * self.gamma
        dx = (n * gd - gd.sum(0) - self.xn * (gd * self.xn).sum(0)) / (n * self.std)
        self.gamma = self.gamma - lr * dgamma
        self.beta = self.beta - lr * dbeta
        return dx


class UnknownFlagBatchNorm:
    """forward(x, predicting=False): a mode keyword no list knows, read from its default; the
    running statistics rm and rv found by watching a training step."""

    def __init__(self, c):
        self.gamma, self.beta = np.ones(c), np.zeros(c)
        self.rm, self.rv = np.zeros(c), np.ones(c)

    def forward(self, x, predicting=False):
        if not predicting:
            mu, var = x.mean(0), x.var(0)
            self.rm = 0.9 * self.rm + 0.1 * mu
            self.rv = 0.9 * self.rv + 0.1 * x.var(0, ddof=1)
        else:
            mu, var = self.rm, self.rv
        self.std = np.sqrt(var + 1e-5)
        self.xn = (x - mu) / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dy):
        n = len(dy)
        self.dgamma, self.dbeta = (dy * self.xn).sum(0), dy.sum(0)
        gd = dy * self.gamma
        return (n * gd - gd.sum(0) - self.xn * (gd * self.xn).sum(0)) / (n * self.std)


class RequiredMomentumBatchNorm:
    """The constructor requires a momentum (the Keras convention): the checker finds which
    value makes sense from the probe run (0.9 here, not PyTorch's 0.1)."""

    def __init__(self, n, momentum):
        self.gamma, self.beta, self.momentum = np.ones(n), np.zeros(n), momentum
        self.running_mean, self.running_var = np.zeros(n), np.ones(n)

    def forward(self, x, training=True):
        if training:
            mu, var = x.mean(0), x.var(0)
            m = self.momentum
            self.running_mean = m * self.running_mean + (1 - m) * mu
            self.running_var = m * self.running_var + (1 - m) * x.var(0, ddof=1)
        else:
            mu, var = self.running_mean, self.running_var
        self.std = np.sqrt(var + 1e-5)
        self.xn = (x - mu) / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dy):
        n = len(dy)
        self.dgamma, self.dbeta = (dy * self.xn).sum(0), dy.sum(0)
        gd = dy * self.gamma
        return (n * gd - gd.sum(0) - self.xn * (gd * self.xn).sum(0)) / (n * self.std)


class BatchNorm2dNCHW:
    """(N, C, H, W) only, γ of shape (1, C, 1, 1), train()/eval()."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        self.weight = np.ones((1, num_features, 1, 1))
        self.bias = np.zeros((1, num_features, 1, 1))
        self.running_mean = np.zeros((1, num_features, 1, 1))
        self.running_var = np.ones((1, num_features, 1, 1))
        self.momentum, self.eps, self.training = momentum, eps, True

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def forward(self, x):
        assert x.ndim == 4, "expects (N, C, H, W)"
        if self.training:
            mu = x.mean((0, 2, 3), keepdims=True)
            var = x.var((0, 2, 3), keepdims=True)
            m = x.size // x.shape[1]
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mu
            self.running_var = ((1 - self.momentum) * self.running_var
                                + self.momentum * var * m / (m - 1))
        else:
            mu, var = self.running_mean, self.running_var
        self.std = np.sqrt(var + self.eps)
        self.xn = (x - mu) / self.std
        return self.weight * self.xn + self.bias

    def backward(self, dout):
        m = dout.size // dout.shape[1]
        ax = (0, 2, 3)
        self.dweight = (dout * self.xn).sum(ax, keepdims=True)
        self.dbias = dout.sum(ax, keepdims=True)
        g = dout * self.weight
        return (m * g - g.sum(ax, keepdims=True)
                - self.xn * (g * self.xn).sum(ax, keepdims=True)) / (m * self.std)


class GroupNormClass:
    """GroupNorm(num_groups, num_channels) with weight/bias of shape (C,)."""

    def __init__(self, num_groups, num_channels, eps=1e-5):
        self.G, self.eps = num_groups, eps
        self.weight = np.ones(num_channels)
        self.bias = np.zeros(num_channels)

    def forward(self, x):
        n, c, h, w = x.shape
        xg = x.reshape(n, self.G, -1)
        self.mu = xg.mean(2, keepdims=True)
        self.std = np.sqrt(xg.var(2, keepdims=True) + self.eps)
        self.xn = ((xg - self.mu) / self.std).reshape(x.shape)
        return self.weight.reshape(1, -1, 1, 1) * self.xn + self.bias.reshape(1, -1, 1, 1)

    def backward(self, dout):
        n, c, h, w = dout.shape
        self.dweight = (dout * self.xn).sum((0, 2, 3))
        self.dbias = dout.sum((0, 2, 3))
        g = (dout * self.weight.reshape(1, -1, 1, 1)).reshape(n, self.G, -1)
        xn = self.xn.reshape(n, self.G, -1)
        m = xn.shape[2]
        dx = (m * g - g.sum(2, keepdims=True)
              - xn * (g * xn).sum(2, keepdims=True)) / (m * self.std)
        return dx.reshape(dout.shape)
