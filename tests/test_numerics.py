"""BatchNorm numerics against a float64 reference over offsets, scales, N and dtypes.

The reference runs in float64 on *the same* (already rounded) input values, so what is
measured is the error of gammabeta's algorithm, not the rounding of the input. Bounds, as
stated in ``gammabeta.nn.batchnorm``'s docstring:

=========  ==========================================  ==================================
dtype      y, dγ, dβ, running stats (relative)          dx (relative to |dy|·|γ|/√(σ²+ε))
=========  ==========================================  ==================================
float32    2e-6  (≈ 16 ε₃₂; measured ≤ 3e-7)             2e-6
float16    1e-3  (one float16 rounding of the output)     1e-3
=========  ==========================================  ==================================

(running_mean relative to momentum·max|x|: a mean is exact to ε of the data's magnitude)
for offsets 0 … 1e6, standard deviations 0 (a constant channel) and 1e-4 … 1e4, N = 2 and 64
(float16 only where the values fit its range, |x| < 6e4).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import gammabeta.nn as nn

BOUND = {np.float32: 2e-6, np.float16: 1e-3}
OFFSETS = [0.0, 1e2, 1e4, 1e6]
STDS = [0.0, 1e-4, 1e-2, 1.0, 1e2, 1e4]
CASES = [(dt, o, s, n) for dt, o, s, n in itertools.product([np.float32, np.float16], OFFSETS,
                                                            STDS, [2, 64])
         if dt is np.float32 or o + 4 * s < 6e4]


def reference(x, dy, g, b, eps, momentum):
    """Float64 BatchNorm forward/backward and running-stat update from the formulas."""
    ax = (0, 2)
    m = x.shape[0] * x.shape[2]
    mean = x.mean(ax)
    var = ((x - mean[None, :, None]) ** 2).mean(ax)
    xh = (x - mean[None, :, None]) / np.sqrt(var + eps)[None, :, None]
    y = xh * g[None, :, None] + b[None, :, None]
    db, dg = dy.sum(ax), (dy * xh).sum(ax)
    dx = (g / np.sqrt(var + eps))[None, :, None] * (
        dy - db[None, :, None] / m - xh * dg[None, :, None] / m)
    rm = momentum * mean
    rv = (1 - momentum) + momentum * var * m / (m - 1)
    return y, dx, dg, db, rm, rv, np.sqrt(var + eps)


def rel(a, ref, scale=None):
    scale = max(np.abs(ref).max(), 1e-30) if scale is None else scale
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / scale)


@pytest.mark.parametrize("dtype,offset,std,n", CASES)
def test_batchnorm_error_bounds(dtype, offset, std, n):
    rng = np.random.default_rng(int(offset) % 97 + int(std * 1e4) % 89 + n)
    c = 4
    x = (offset + std * rng.standard_normal((n, c, 3))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    bn = nn.BatchNorm1d(c, gamma_init="normal(mean=1, std=0.5)", beta_init="normal", rng=rng)
    g, b = bn.weight.data.astype(np.float64), bn.bias.data.astype(np.float64)
    y = bn(x)
    dx = bn.backward(dy)
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    yr, dxr, dgr, dbr, rmr, rvr, sd = reference(x.astype(np.float64), dy.astype(np.float64),
                                               g, b, bn.eps, bn.momentum)
    bound = BOUND[dtype]
    assert rel(y, yr) <= bound
    assert rel(dx, dxr, np.abs(dy).max() * np.abs(g).max() / sd.min()) <= bound
    # the parameter gradients are accumulated in float32 (statistics dtype): ε₃₂-level bounds
    assert rel(bn.weight.grad, dgr, np.abs(dy.astype(np.float64)).sum() * 3) <= BOUND[np.float32]
    assert rel(bn.bias.grad, dbr, np.abs(dy.astype(np.float64)).sum()) <= BOUND[np.float32]
    # a float32 mean is exact to ε₃₂ of the data's magnitude, not of the mean itself
    xmax = float(np.abs(x.astype(np.float64)).max())
    assert rel(bn.running_mean, rmr, max(bn.momentum * xmax, 1e-30)) <= BOUND[np.float32]
    assert rel(bn.running_var, rvr) <= BOUND[np.float32]


def test_constant_channel_gives_beta_and_finite_gradients():
    bn = nn.BatchNorm1d(3, gamma_init="normal", beta_init="normal",
                        rng=np.random.default_rng(0))
    x = np.full((8, 3), 7.25, dtype=np.float32)
    y = bn(x)
    np.testing.assert_array_equal(y, np.broadcast_to(bn.bias.data, (8, 3)))
    dx = bn.backward(np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32))
    assert np.isfinite(dx).all()
