"""The two BatchNorm paths, compiled kernels (Numba) and pure NumPy, agree with the formulas.

By default small arrays take the NumPy path and large ones the kernels; here each path is
forced on every shape, including long rows (L ≥ 64) and 4-D inputs, so both stay covered.
"""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta import backend

from .test_numerics import reference

SHAPES = [(2, 3, 1), (8, 3, 100), (5, 4, 67), (16, 7, 3)]


def run_bn(shape, mode, offset=0.0, training=True, dtype=np.float32, x=None, dy=None):
    """Forward and backward of a BatchNorm1d/2d with random γ, β in JIT mode ``mode``:
    ``(x, dy, layer, y, dx)``; ``x``/``dy`` default to seeded random arrays."""
    rng = np.random.default_rng(sum(shape))
    x = (offset + 2 * rng.standard_normal(shape)).astype(dtype) if x is None else x
    dy = rng.standard_normal(shape).astype(dtype) if dy is None else dy
    cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    bn = cls(shape[1], gamma_init="normal(mean=1, std=0.5)", beta_init="normal",
             rng=np.random.default_rng(1), dtype=dtype)
    if not training:
        bn.running_mean[...] = offset
        bn.running_var[...] = 3.0
        bn.eval()
    with backend.jit(mode):
        y = bn(x)
        dx = bn.backward(dy)
    return x, dy, bn, y.copy(), dx.copy()


@pytest.mark.parametrize("mode", ["off", "force"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_both_paths_match_the_float64_formulas(mode, shape, offset):
    if mode == "force" and backend.kernels(np, 10**9) is None:
        pytest.skip("numba is not installed: only the NumPy path exists")
    x, dy, bn, y, dx = run_bn(shape, mode, offset)
    g, b = bn.weight.data.astype(np.float64), bn.bias.data.astype(np.float64)
    yr, dxr, dgr, dbr, rmr, rvr, sd = reference(x.astype(np.float64), dy.astype(np.float64),
                                               g, b, bn.eps, bn.momentum)
    assert np.abs(y - yr).max() <= 2e-6 * np.abs(yr).max()
    scale = np.abs(dy).max() * np.abs(g).max() / sd.min()
    assert np.abs(dx - dxr).max() <= 2e-6 * scale
    assert np.abs(bn.weight.grad - dgr).max() <= 2e-6 * np.abs(dy).sum()
    assert np.abs(bn.running_var - rvr).max() <= 2e-6 * np.abs(rvr).max()


@pytest.mark.parametrize("shape", SHAPES)
def test_paths_agree_in_eval_mode(shape):
    if backend.kernels(np, 10**9) is None:
        pytest.skip("numba is not installed: only the NumPy path exists")
    _, _, _, y0, dx0 = run_bn(shape, "off", training=False)
    _, _, _, y1, dx1 = run_bn(shape, "force", training=False)
    assert np.abs(y0 - y1).max() <= 1e-6 * np.abs(y0).max()
    assert np.abs(dx0 - dx1).max() <= 1e-6 * np.abs(dx0).max()


def test_bn2d_paths_agree():
    if backend.kernels(np, 10**9) is None:
        pytest.skip("numba is not installed: only the NumPy path exists")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 9, 11)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    outs = []
    for mode in ("off", "force"):
        bn = nn.BatchNorm2d(3, gamma_init="normal", beta_init="normal",
                            rng=np.random.default_rng(1))
        with backend.jit(mode):
            outs.append((bn(x), bn.backward(dy), bn.running_var.copy()))
    for a, b in zip(outs[0], outs[1], strict=True):
        assert np.abs(a - b).max() <= 2e-6 * np.abs(a).max()


def test_set_jit_refuses_unknown_modes():
    from gammabeta.errors import ConfigError

    with pytest.raises(ConfigError, match=r"mode='fast'; expected 'auto', 'force' or 'off'"):
        backend.set_jit("fast")


@pytest.mark.parametrize("mode", ["off", "force"])
@pytest.mark.parametrize("training", [False, True])
def test_read_only_running_statistics_are_copied_not_refused(mode, training):
    """Running statistics that arrive read-only (a joblib memory map of a fitted estimator)
    work in both paths, eval and training, as a writable twin does."""
    if mode == "force" and backend.kernels(np, 10**9) is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 3, 9)).astype(np.float32)
    layers = []
    for frozen in (False, True):
        bn = nn.BatchNorm1d(3)
        bn.running_mean[...] = rng.standard_normal(3) if not frozen else layers[0].running_mean
        bn.running_var[...] = 1.5 if not frozen else layers[0].running_var
        if frozen:
            for k in ("running_mean", "running_var"):
                bn._buffers[k].flags.writeable = False
        bn.train(training)
        layers.append(bn)
    outs = []
    for bn in layers:
        with backend.jit(mode):
            outs.append((bn(x), bn.running_mean.copy(), bn.running_var.copy()))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(b, a)
    assert layers[1].running_mean.flags.writeable
