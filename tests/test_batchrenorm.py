"""BatchRenorm1d/2d: a float64 reference, gradient checks with r and d held constant, the
schedule, r_max=1/d_max=0 as BatchNorm (ours and PyTorch's), evaluation as BatchNorm."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import ConfigError, ShapeError
from gammabeta.nn.batchrenorm import BatchRenorm1d, BatchRenorm2d

from ._torch import require_torch
from .gradcheck import check_module_grads, max_rel_err, numeric_grad

SHAPES = [(6, 3), (5, 3, 4), (4, 3, 3, 2)]


def make(shape, rng, **kw):
    """A float64 layer for ``shape`` with random γ/β (ones/zeros would hide backward bugs)."""
    cls = BatchRenorm2d if len(shape) == 4 else BatchRenorm1d
    kw.setdefault("warmup_steps", 0)
    kw.setdefault("ramp_steps", 0)
    return cls(shape[1], gamma_init="normal(mean=1, std=0.5)", beta_init="normal", rng=rng,
               dtype=np.float64, **kw)


def set_running(layer, mean, var):
    layer.running_mean[...] = mean
    layer.running_var[...] = var


def _col(v, ndim):
    return np.asarray(v).reshape((1, -1) + (1,) * (ndim - 2))


def ref_y(x, gamma, beta, r, d, eps):
    """y = γ ((x − μ_B)/σ_B · r + d) + β, r and d given (float64)."""
    axes = (0,) + tuple(range(2, x.ndim))
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    xhat = (x - _col(mu, x.ndim)) / _col(np.sqrt(var + eps), x.ndim) * _col(r, x.ndim) \
        + _col(d, x.ndim)
    return _col(gamma, x.ndim) * xhat + _col(beta, x.ndim)


def ref_step(x, gamma, beta, rm, rv, eps, r_lim, d_lim, momentum):
    """The paper's training step in float64: ``(y, r, d, new running_mean, new running_var)``."""
    axes = (0,) + tuple(range(2, x.ndim))
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    sigma = np.sqrt(rv + eps)
    r = np.clip(np.sqrt(var + eps) / sigma, 1 / r_lim, r_lim)
    d = np.clip((mu - rm) / sigma, -d_lim, d_lim)
    m = x.size // x.shape[1]
    return (ref_y(x, gamma, beta, r, d, eps), r, d, (1 - momentum) * rm + momentum * mu,
            (1 - momentum) * rv + momentum * var * m / (m - 1))


def rel(a, ref):
    return float(np.abs(np.asarray(a) - ref).max() / max(np.abs(ref).max(), 1e-300))


# ----- the forward against the reference, value by value --------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("where", ["unclipped", "clipped"])
def test_forward_and_running_stats_match_the_reference(shape, where):
    rng = np.random.default_rng(0)
    layer = make(shape, rng, momentum=0.3)
    c = shape[1]
    x = rng.standard_normal(shape) * rng.uniform(0.5, 2, c)[None, :].reshape(
        _col(np.ones(c), len(shape)).shape) + 1.5
    if where == "unclipped":  # running stats near the batch's: |log r| < log 3, |d| < 5
        mean, var = 1.5 + rng.uniform(-0.5, 0.5, c), rng.uniform(0.5, 2.0, c)
    else:  # far: r at 1/r_max, d at −d_max for every channel
        mean, var = np.full(c, 80.0), np.full(c, 100.0)
    set_running(layer, mean, var)
    y = layer(x)
    y_ref, r, d, rm, rv = ref_step(x, layer.weight.data, layer.bias.data, mean, var, 1e-5,
                                   3.0, 5.0, 0.3)
    if where == "unclipped":
        assert np.all((r > 1 / 3) & (r < 3)) and np.all(np.abs(d) < 5) and np.abs(d).min() > 0
    else:
        np.testing.assert_array_equal(r, 1 / 3)
        np.testing.assert_array_equal(d, -5.0)
    assert rel(y, y_ref) <= 1e-12
    assert rel(layer.running_mean, rm) <= 1e-12 and rel(layer.running_var, rv) <= 1e-12
    assert int(layer.num_batches_tracked) == 1


def test_unclipped_training_output_is_the_running_statistics_normalization():
    """With r and d not clipped, x̂ = (x − running_mean)/√(running_var + ε) (the paper's point)."""
    rng = np.random.default_rng(1)
    layer = BatchRenorm1d(4, affine=False, warmup_steps=0, ramp_steps=0, dtype=np.float64)
    set_running(layer, [0.5, -0.5, 1.0, 0.0], [1.5, 0.8, 1.2, 1.0])
    x = rng.standard_normal((64, 4)) + 0.3
    ref = (x - [0.5, -0.5, 1.0, 0.0]) / np.sqrt(np.array([1.5, 0.8, 1.2, 1.0]) + 1e-5)
    assert rel(layer(x), ref) <= 1e-12


# ----- gradients: r and d are constants --------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("where", ["unclipped", "clipped", "mixed"])
def test_gradcheck_with_r_and_d_held_constant(shape, where):
    """Central differences of the reference with r and d from the *unperturbed* batch."""
    rng = np.random.default_rng(2)
    layer = make(shape, rng, momentum=0.2)
    c = shape[1]
    x = rng.standard_normal(shape) * 1.3 - 0.4
    axes = (0,) + tuple(range(2, len(shape)))
    mu_b, var_b = x.mean(axis=axes), x.var(axis=axes)
    mean = {"unclipped": mu_b + rng.uniform(-0.3, 0.3, c), "clipped": np.full(c, 30.0),
            "mixed": np.linspace(-20.0, 0.0, c)}[where]
    var = {"unclipped": var_b * rng.uniform(0.5, 2.0, c), "clipped": np.full(c, 50.0),
           "mixed": np.linspace(0.01, 2.0, c)}[where]
    set_running(layer, mean, var)
    gamma, beta = layer.weight.data.copy(), layer.bias.data.copy()
    _, r, d, _, _ = ref_step(x, gamma, beta, mean, var, 1e-5, 3.0, 5.0, 0.2)
    if where == "unclipped":
        assert np.all((r > 1 / 3) & (r < 3) & (np.abs(d) < 5))
    if where == "mixed":  # some channels clipped, some not
        clipped = (r == 3.0) | (np.abs(d) == 5.0)
        assert clipped.any() and not clipped.all()
    dy = np.random.default_rng(3).standard_normal(shape)
    layer(x)
    layer.zero_grad()
    dx = layer.backward(dy)
    xs, gs, bs = x.copy(), gamma.copy(), beta.copy()

    def loss():
        return float(np.sum(ref_y(xs, gs, bs, r, d, 1e-5) * dy))

    assert max_rel_err(dx, numeric_grad(loss, xs)) <= 1e-6
    assert max_rel_err(layer.weight.grad, numeric_grad(loss, gs)) <= 1e-6
    assert max_rel_err(layer.bias.grad, numeric_grad(loss, bs)) <= 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_of_the_layer_itself_when_r_and_d_are_clipped(shape):
    """Clipped r and d do not depend on x locally: the layer's own finite differences (momentum
    0, so the running statistics stay put) must match backward."""
    rng = np.random.default_rng(4)
    layer = make(shape, rng, momentum=0.0)
    set_running(layer, np.full(shape[1], -60.0), np.full(shape[1], 60.0))
    x = rng.standard_normal(shape) + 0.5
    _, r, d, _, _ = ref_step(x, np.ones(shape[1]), np.zeros(shape[1]), -60.0, 60.0, 1e-5,
                             3.0, 5.0, 0.0)
    np.testing.assert_array_equal(r, 1 / 3)
    np.testing.assert_array_equal(d, 5.0)
    check_module_grads(layer, x)
    assert int(layer.num_batches_tracked) > 1
    np.testing.assert_array_equal(layer.running_mean, -60.0)


def test_affine_false_backward():
    rng = np.random.default_rng(5)
    layer = BatchRenorm1d(3, affine=False, warmup_steps=0, ramp_steps=0, dtype=np.float64)
    set_running(layer, [0.2, 9.0, -0.1], [0.9, 1.0, 0.05])
    x, dy = rng.standard_normal((7, 3, 2)), rng.standard_normal((7, 3, 2))
    _, r, d, _, _ = ref_step(x, np.ones(3), np.zeros(3), layer.running_mean.copy(),
                             layer.running_var.copy(), 1e-5, 3.0, 5.0, 0.01)
    layer(x)
    dx = layer.backward(dy)
    xs = x.copy()
    num = numeric_grad(lambda: float(np.sum(ref_y(xs, np.ones(3), np.zeros(3), r, d, 1e-5)
                                            * dy)), xs)
    assert max_rel_err(dx, num) <= 1e-6


# ----- r_max = 1, d_max = 0 is BatchNorm -------------------------------------------------------
def _pair(shape, dtype, **kw):
    c = shape[1]
    bn_cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    rn_cls = BatchRenorm2d if len(shape) == 4 else BatchRenorm1d
    init = dict(gamma_init="normal(mean=1, std=0.5)", beta_init="normal", dtype=dtype)
    bn = bn_cls(c, rng=np.random.default_rng(6), **init, **kw)
    rn = rn_cls(c, r_max=1.0, d_max=0.0, warmup_steps=0, ramp_steps=0,
                rng=np.random.default_rng(6), **init, **kw)
    return bn, rn


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_r_max_1_d_max_0_is_batchnorm_bit_for_bit(shape, dtype, momentum):
    bn, rn = _pair(shape, dtype, momentum=momentum)
    rng = np.random.default_rng(7)
    for _ in range(3):
        x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        y_bn, y_rn = bn(x), rn(x)
        assert y_rn.dtype == y_bn.dtype == dtype
        np.testing.assert_array_equal(y_rn, y_bn)
        np.testing.assert_array_equal(rn.backward(dy), bn.backward(dy))
    np.testing.assert_array_equal(rn.weight.grad, bn.weight.grad)
    np.testing.assert_array_equal(rn.bias.grad, bn.bias.grad)
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(rn.state_dict()[key], value)


def test_r_max_1_d_max_0_is_batchnorm_on_the_kernel_path_too():
    """BatchNorm runs its compiled kernels (when Numba is there) from 32768 values on: the same
    formulas, summed in another order."""
    bn, rn = _pair((64, 16, 64), np.float64, momentum=0.1)
    rng = np.random.default_rng(13)
    for _ in range(2):
        x, dy = rng.standard_normal((64, 16, 64)) * 3 + 2, rng.standard_normal((64, 16, 64))
        assert rel(rn(x), bn(x)) <= 1e-12
        assert rel(rn.backward(dy), bn.backward(dy)) <= 1e-12
    assert rel(rn.weight.grad, bn.weight.grad) <= 1e-12
    assert rel(rn.bias.grad, bn.bias.grad) <= 1e-12
    assert rel(rn.running_mean, bn.running_mean) <= 1e-12
    assert rel(rn.running_var, bn.running_var) <= 1e-12


def test_warm_up_is_batchnorm_with_the_same_momentum():
    rng = np.random.default_rng(8)
    rn = BatchRenorm1d(4, warmup_steps=3, ramp_steps=5)
    bn = nn.BatchNorm1d(4, momentum=0.01)
    for _ in range(3):
        x = rng.normal(3.0, 2.0, (16, 4)).astype(np.float32)
        np.testing.assert_array_equal(rn(x), bn(x))
    x = rng.normal(3.0, 2.0, (16, 4)).astype(np.float32)
    assert not np.array_equal(rn(x), bn(x))  # batch 4: the ramp has begun


@pytest.mark.parametrize("shape", SHAPES)
def test_r_max_1_d_max_0_matches_pytorch_batchnorm(shape):
    torch = require_torch()
    _, rn = _pair(shape, np.float64, momentum=0.1)
    ref = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(shape[1]).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(rn.weight.data))
        ref.bias.copy_(torch.from_numpy(rn.bias.data))
    rng = np.random.default_rng(9)
    for _ in range(3):
        x, dy = rng.standard_normal(shape) * 2 - 1, rng.standard_normal(shape)
        rn.zero_grad()
        ref.zero_grad()
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = ref(tx)
        ty.backward(torch.from_numpy(dy))
        assert rel(rn(x), ty.detach().numpy()) <= 1e-12
        assert rel(rn.backward(dy), tx.grad.numpy()) <= 1e-12
        assert rel(rn.weight.grad, ref.weight.grad.numpy()) <= 1e-12
        assert rel(rn.bias.grad, ref.bias.grad.numpy()) <= 1e-12
    assert rel(rn.running_mean, ref.running_mean.numpy()) <= 1e-12
    assert rel(rn.running_var, ref.running_var.numpy()) <= 1e-12
    assert int(rn.num_batches_tracked) == int(ref.num_batches_tracked) == 3


# ----- the schedule ----------------------------------------------------------------------------
def test_schedule_values():
    layer = BatchRenorm1d(2, r_max=3.0, d_max=5.0, warmup_steps=4, ramp_steps=8)
    got = {n: layer.renorm_limits(n) for n in (1, 4, 5, 6, 8, 12, 13, 1000)}
    assert got == {1: (1.0, 0.0), 4: (1.0, 0.0), 5: (1.25, 0.625), 6: (1.5, 1.25),
                   8: (2.0, 2.5), 12: (3.0, 5.0), 13: (3.0, 5.0), 1000: (3.0, 5.0)}
    assert layer.renorm_limits() == (1.0, 0.0)  # the next batch is the first
    now = BatchRenorm1d(2, warmup_steps=0, ramp_steps=0)
    assert now.renorm_limits() == now.renorm_limits(1) == (3.0, 5.0)
    jump = BatchRenorm1d(2, warmup_steps=3, ramp_steps=0)
    assert [jump.renorm_limits(n) for n in (3, 4)] == [(1.0, 0.0), (3.0, 5.0)]
    default = BatchRenorm1d(2)
    assert (default.warmup_steps, default.ramp_steps, default.momentum) == (200, 800, 0.01)
    assert default.renorm_limits(200) == (1.0, 0.0) and default.renorm_limits(1000) == (3.0, 5.0)


def test_forward_follows_the_schedule_and_a_checkpoint_resumes_it():
    rng = np.random.default_rng(10)
    kw = dict(r_max=3.0, d_max=5.0, warmup_steps=2, ramp_steps=4, momentum=0.05,
              dtype=np.float64)
    layer = BatchRenorm1d(3, **kw)
    set_running(layer, [10.0, -10.0, 0.0], [25.0, 0.04, 1.0])  # r, d clipped when allowed
    xs = [rng.standard_normal((8, 3)) for _ in range(7)]
    expected_limits = [(1.0, 0.0), (1.0, 0.0), (1.5, 1.25), (2.0, 2.5), (2.5, 3.75),
                       (3.0, 5.0), (3.0, 5.0)]
    for step, (x, lim) in enumerate(zip(xs, expected_limits, strict=True)):
        if step == 4:  # resume from a checkpoint in a new layer
            state = layer.state_dict()
            layer = BatchRenorm1d(3, **kw)
            layer.load_state_dict(state)
        assert layer.renorm_limits() == lim
        rm, rv = layer.running_mean.copy(), layer.running_var.copy()
        y_ref, *_ = ref_step(x, np.ones(3), np.zeros(3), rm, rv, 1e-5, *lim, 0.05)
        assert rel(layer(x), y_ref) <= 1e-12
    assert int(layer.num_batches_tracked) == 7


# ----- evaluation is BatchNorm's ---------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_eval_equals_batchnorm_eval(shape):
    rng = np.random.default_rng(11)
    layer = make(shape, rng)
    for _ in range(2):
        layer(rng.standard_normal(shape) + 1)
    bn = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], dtype=np.float64)
    bn.load_state_dict(layer.state_dict())
    layer.eval()
    bn.eval()
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    np.testing.assert_array_equal(layer(x), bn(x))
    np.testing.assert_array_equal(layer.backward(dy), bn.backward(dy))
    np.testing.assert_array_equal(layer.weight.grad, bn.weight.grad)
    before = layer.state_dict()
    layer(x)
    assert all(np.array_equal(v, before[k]) for k, v in layer.state_dict().items())
    assert isinstance(layer, nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)


# ----- misuse ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [(dict(r_max=0.5), "r_max=0.5"), (dict(d_max=-1.0), "d_max"),
                                      (dict(warmup_steps=-1), "warmup_steps=-1"),
                                      (dict(ramp_steps=2.5), "ramp_steps=2.5"),
                                      (dict(momentum=2.0), "momentum=2.0"),
                                      (dict(r_max=float("inf")), "r_max=inf")])
def test_bad_arguments(kw, match):
    with pytest.raises(ConfigError, match=match):
        BatchRenorm1d(3, **kw)


def test_shapes_repr_and_caches():
    layer = BatchRenorm1d(3)
    assert repr(layer) == "BatchRenorm1d(3)"
    assert repr(BatchRenorm2d(2, r_max=2.0, warmup_steps=0, affine=False)) == \
        "BatchRenorm2d(2, r_max=2.0, warmup_steps=0, affine=False)"
    with pytest.raises(ShapeError, match=r"BatchRenorm1d\(3\).*more than 1 value per channel"):
        layer(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ShapeError, match="expected 4-D"):
        BatchRenorm2d(3)(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        layer.backward(np.ones((4, 3), dtype=np.float32))
    x = np.random.default_rng(12).standard_normal((4, 3)).astype(np.float16)
    y = layer(x)
    assert y.dtype == np.float16 and layer.backward(np.ones_like(y)).dtype == np.float16
    with pytest.raises(ShapeError, match=r"dy of shape \(4, 2\)"):
        layer(x)
        layer.backward(np.ones((4, 2), dtype=np.float32))
    with nn.no_grad():
        layer(x)
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        layer.backward(np.ones((4, 3), dtype=np.float32))
