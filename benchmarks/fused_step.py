"""A bound for issue #17's last line: the 784-256-256-10 BN MLP step with nothing but its GEMMs
left outside compiled code.

``raw_step.py`` showed that bare NumPy (no modules, no checks) misses 1.5× the step's GEMMs on
this project's machine. This file goes further, to what a NumPy + Numba program can do: the
same step as ``make bench``'s case ``MLP 784-256-256-10 + BN, batch 128`` (gammabeta's own model
and its weights, AdamW with weight decay 0.05 on the matrices, PyTorch's BatchNorm semantics,
running statistics included), written as

* the eight matrix products of NumPy's BLAS, each writing into a buffer allocated once
  (``np.matmul(..., out=...)``; the weight gradients straight into one flat gradient buffer);
* three compiled passes for everything else: BatchNorm + ReLU forward, ReLU + BatchNorm
  backward, softmax cross-entropy with its gradient;
* one AdamW call per parameter group over one flat buffer of parameters, gradients and both
  moments (the fused kernel of :mod:`gammabeta.optim._kernels`).

It is a measurement, not a design: a whole-step program for one architecture. ``check`` runs
a few steps of it and of gammabeta's (same model, same data) and returns the largest difference
of the updated parameters and running statistics.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gammabeta import optim
from gammabeta.models import build_model
from gammabeta.nn.losses import CrossEntropyLoss
from gammabeta.nn.sequential import backward_params_only
from gammabeta.optim import _kernels
from gammabeta.optim.optimizers import _fused_scalars

__all__ = ["fused_step", "gammabeta_step", "check"]


@njit(cache=True, nogil=True, error_model="numpy")
def bn_relu_forward(h, g, b, eps, momentum, out, mean, inv, run_mean, run_var):
    """out = max(γ·(h − μ)/√(σ² + ε) + β, 0) with batch statistics over the rows of ``h``;
    the running statistics move by ``momentum`` (unbiased variance, as PyTorch)."""
    n, c = h.shape
    mean[:] = 0
    inv[:] = 0
    for i in range(n):
        for j in range(c):
            mean[j] += h[i, j]
    for j in range(c):
        mean[j] /= n
    for i in range(n):
        for j in range(c):
            d = h[i, j] - mean[j]
            inv[j] += d * d
    for j in range(c):
        var = inv[j] / n
        run_mean[j] = (1 - momentum) * run_mean[j] + momentum * mean[j]
        run_var[j] = (1 - momentum) * run_var[j] + momentum * var * n / (n - 1)
        inv[j] = 1 / np.sqrt(var + eps)
    for i in range(n):
        for j in range(c):
            y = (h[i, j] - mean[j]) * inv[j] * g[j] + b[j]
            out[i, j] = y if y > 0 else 0


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def relu_bn_backward(dy, y, h, mean, inv, g, dg, db, dx):
    """dx of BatchNorm (batch statistics) for the gradient ``dy`` of the ReLU after it (``y``:
    the ReLU's output), as ``dx = a·dy' + b·h + c`` per channel (``dy'``: dy where y > 0);
    dγ, dβ into ``dg``, ``db``."""
    n, c = h.shape
    dg[:] = 0
    db[:] = 0
    for i in range(n):
        for j in range(c):
            d = dy[i, j] if y[i, j] > 0 else 0
            dx[i, j] = d
            db[j] += d
            dg[j] += d * ((h[i, j] - mean[j]) * inv[j])
    a = np.empty(c, h.dtype)
    b = np.empty(c, h.dtype)
    c0 = np.empty(c, h.dtype)
    for j in range(c):
        a[j] = g[j] * inv[j]
        b[j] = -a[j] * inv[j] * dg[j] / n
        c0[j] = -a[j] * db[j] / n - b[j] * mean[j]
    for i in range(n):
        for j in range(c):
            dx[i, j] = a[j] * dx[i, j] + b[j] * h[i, j] + c0[j]


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy(z, bias, target, dz, dbias):
    """Mean cross-entropy of the logits ``z + bias`` (``z`` gets the bias added); its
    gradient into ``dz`` and the bias's into ``dbias``."""
    n, c = z.shape
    loss = 0.0
    dbias[:] = 0
    for i in range(n):
        for j in range(c):
            z[i, j] += bias[j]
        mx = z[i, 0]
        for j in range(c):
            mx = max(mx, z[i, j])
        s = 0.0
        for j in range(c):
            dz[i, j] = np.exp(z[i, j] - mx)
            s += dz[i, j]
        loss += np.log(s) + mx - z[i, target[i]]
        for j in range(c):
            dz[i, j] = dz[i, j] / s / n
        dz[i, target[i]] -= 1.0 / n
        for j in range(c):
            dbias[j] += dz[i, j]
    return loss / n


def _model_and_data(batch: int, seed: int = 0):
    """gammabeta's model of the step case and its batch, drawn as ``cases.make_step`` draws
    them."""
    rng = np.random.default_rng(seed)
    model = build_model("mlp", (784,), 10, rng=rng, hidden=(256, 256), dropout=0.0)
    x = rng.standard_normal((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return model, x, y


def _page_aligned(nbytes: int, count: int, dtype) -> list:
    """``count`` zeroed arrays of ``nbytes`` each, every one starting on a page boundary."""
    stride = -(-nbytes // 4096) * 4096
    buf = np.zeros(count * stride + 4096, np.uint8)
    base = -buf.ctypes.data % 4096
    return [buf[base + i * stride:base + i * stride + nbytes].view(dtype) for i in range(count)]


def fused_step(batch: int = 128, seed: int = 0, aligned: bool = True):
    """The fused step (a closure) and its model's parameters by state-dict name.

    ``aligned``: the flat parameter, gradient and moment buffers start on page boundaries
    (``False``: four separate ``np.zeros``, wherever malloc puts them)."""
    model, x, target = _model_and_data(batch, seed)
    sd = model.state_dict()
    groups = (("0.weight", "3.weight", "6.weight"),  # weight decay 0.05
              ("1.weight", "1.bias", "4.weight", "4.bias", "6.bias"))  # none
    f = np.float32
    views, flats = {}, []
    for names in groups:
        total = sum(sd[k].size for k in names)
        if aligned:
            p, gr, m, v = _page_aligned(4 * total, 4, f)
        else:
            p, gr, m, v = (np.zeros(total, f) for _ in range(4))
        at = 0
        for k in names:
            size = sd[k].size
            p[at:at + size] = np.asarray(sd[k], f).reshape(-1)
            views[k] = p[at:at + size].reshape(sd[k].shape)
            views["grad " + k] = gr[at:at + size].reshape(sd[k].shape)
            at += size
        flats.append((p, gr, m, v))
    for k in ("1.running_mean", "1.running_var", "4.running_mean", "4.running_var"):
        views[k] = np.array(sd[k], f)
    w1, w2, w3, b3 = views["0.weight"], views["3.weight"], views["6.weight"], views["6.bias"]
    bn1 = (views["1.weight"], views["1.bias"], views["1.running_mean"], views["1.running_var"])
    bn2 = (views["4.weight"], views["4.bias"], views["4.running_mean"], views["4.running_var"])
    dw1, dw2, dw3 = views["grad 0.weight"], views["grad 3.weight"], views["grad 6.weight"]
    dbn1 = (views["grad 1.weight"], views["grad 1.bias"])
    dbn2 = (views["grad 4.weight"], views["grad 4.bias"])
    db3 = views["grad 6.bias"]
    h1, a1, h2, a2, da2, dh2, da1, dh1 = (np.empty((batch, 256), f) for _ in range(8))
    mu1, iv1, mu2, iv2 = (np.empty(256, f) for _ in range(4))
    z, dz = np.empty((batch, 10), f), np.empty((batch, 10), f)
    eps, momentum = f(1e-5), f(0.1)
    step_count = [0]

    def step():
        np.matmul(x, w1.T, out=h1)
        bn_relu_forward(h1, bn1[0], bn1[1], eps, momentum, a1, mu1, iv1, bn1[2], bn1[3])
        np.matmul(a1, w2.T, out=h2)
        bn_relu_forward(h2, bn2[0], bn2[1], eps, momentum, a2, mu2, iv2, bn2[2], bn2[3])
        np.matmul(a2, w3.T, out=z)
        softmax_cross_entropy(z, b3, target, dz, db3)
        np.matmul(dz.T, a2, out=dw3)
        np.matmul(dz, w3, out=da2)
        relu_bn_backward(da2, a2, h2, mu2, iv2, bn2[0], dbn2[0], dbn2[1], dh2)
        np.matmul(dh2.T, a1, out=dw2)
        np.matmul(dh2, w2, out=da1)
        relu_bn_backward(da1, a1, h1, mu1, iv1, bn1[0], dbn1[0], dbn1[1], dh1)
        np.matmul(dh1.T, x, out=dw1)
        step_count[0] += 1
        for (p, gr, m, v), wd in zip(flats, (0.05, 0.0), strict=True):
            _kernels.adam_update(p, gr, m, v, *_fused_scalars(1e-3, 1e-8, wd, 0.9, 0.999, True,
                                                              np.float32, step_count[0]))

    return step, {k: v for k, v in views.items() if not k.startswith("grad ")}


def gammabeta_step(batch: int = 128, seed: int = 0):
    """gammabeta's step of the same case, as ``cases.make_step`` runs it, and its model (not
    ``make_step``'s own: its floor count runs one training-mode forward first, which moves the
    BatchNorm statistics once)."""
    model, x, y = _model_and_data(batch, seed)
    opt = optim.AdamW(optim.param_groups(model, 0.05), lr=1e-3)
    loss_fn = CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y)
        backward_params_only(model, loss_fn.backward())
        opt.step()

    return step, model


def check(steps: int = 3) -> float:
    """Largest absolute difference between the fused step's parameters and running statistics
    and gammabeta's after ``steps`` steps from the same start."""
    fused, values = fused_step()
    ours, model = gammabeta_step()
    for _ in range(steps):
        fused()
        ours()
    sd = model.state_dict()
    return max(float(np.max(np.abs(values[k] - np.asarray(sd[k])))) for k in values)
