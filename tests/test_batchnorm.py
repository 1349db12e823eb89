"""BatchNorm1d: gradient checks, invariants, PyTorch parity, numerics and every bad input."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import DTypeError, NonFiniteError, ShapeError

from ._torch import require_torch
from .gradcheck import check_module_grads


def make_bn(c, rng, **kw):
    """A BatchNorm1d with γ and β drawn at random (ones/zeros would hide backward bugs)."""
    return nn.BatchNorm1d(c, gamma_init="normal(mean=1, std=0.5)", beta_init="normal",
                          rng=rng, **kw)


@pytest.mark.parametrize("shape", [(2, 3), (5, 4), (3, 2, 5), (4, 3, 1)])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_random_gamma_beta(shape, training):
    rng = np.random.default_rng(1)
    bn = make_bn(shape[1], rng)
    if not training:  # give eval mode non-trivial running statistics
        bn.running_mean[...] = rng.standard_normal(shape[1])
        bn.running_var[...] = rng.uniform(0.5, 2.0, shape[1])
        bn.eval()
    x = rng.standard_normal(shape) * 2 + 1
    check_module_grads(bn, x)


@pytest.mark.parametrize("kw", [dict(affine=False), dict(track_running_stats=False),
                                dict(momentum=None)])
def test_gradcheck_variants(kw):
    rng = np.random.default_rng(2)
    bn = make_bn(3, rng, **kw) if kw.get("affine", True) else nn.BatchNorm1d(3, **kw)
    check_module_grads(bn, rng.standard_normal((6, 3, 2)))
    bn.eval()  # track_running_stats=False keeps batch statistics in eval too
    check_module_grads(bn, rng.standard_normal((6, 3, 2)))


@pytest.mark.parametrize("shape", [(8, 4), (5, 3, 7)])
def test_invariants_sum_dx_and_dx_xhat_vanish(shape):
    # Σ dx·x̂ = 0 holds exactly as ε → 0 (the residual is ∝ ε/(σ²+ε)); use a tiny ε
    rng = np.random.default_rng(3)
    bn = make_bn(shape[1], rng, eps=1e-12).double()
    x = rng.standard_normal(shape) * 3 - 2
    bn(x)
    dx = bn.backward(rng.standard_normal(shape))
    axes = (0,) + tuple(range(2, len(shape)))
    mean = x.mean(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + bn.eps)
    scale = np.abs(dx).max()
    assert np.abs(dx.sum(axis=axes)).max() <= 1e-12 * scale * x.size
    assert np.abs((dx * xhat).sum(axis=axes)).max() <= 1e-12 * scale * x.size


def _rel(a, ref, floor=0.0):
    ref = np.asarray(ref)
    return float(np.abs(np.asarray(a, dtype=np.float64) - ref).max()
                 / max(np.abs(ref).max(), floor, 1e-30))


PARITY_CASES = [
    ((2, 5), dict()),
    ((2, 3, 4), dict()),
    ((17, 6), dict()),
    ((9, 4, 11), dict(momentum=None)),
    ((13, 5), dict(momentum=0.3, eps=1e-3)),
    ((6, 7), dict(affine=False)),
    ((6, 3, 5), dict(track_running_stats=False)),
    ((10, 4), dict(affine=False, track_running_stats=False)),
]


@pytest.mark.parametrize("shape,kw", PARITY_CASES)
def test_parity_with_pytorch(shape, kw):
    torch = require_torch()
    rng = np.random.default_rng(4)
    c = shape[1]
    ours = make_bn(c, rng, **kw) if kw.get("affine", True) else nn.BatchNorm1d(c, **kw)
    ref = torch.nn.BatchNorm1d(c, **kw)
    if ours.affine:
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(ours.weight.data))
            ref.bias.copy_(torch.from_numpy(ours.bias.data))
    for _step in range(4):
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, c)[:, None][:c].reshape(
            (1, c) + (1,) * (len(shape) - 2)) + 3).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        ours.zero_grad()
        ref.zero_grad()
        y = ours(x)
        dx = ours.backward(dy)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = ref(tx)
        ty.backward(torch.from_numpy(dy))
        assert _rel(y, ty.detach().numpy()) <= 1e-5
        # dx cancels heavily for tiny batches (N=2: x̂ = ±1, so dx ≈ 0 up to rounding);
        # measure its error against the size of the terms that cancel, |dy|·|γ|/σ
        g = np.abs(ours.weight.data).max() if ours.affine else 1.0
        var = x.var(axis=(0,) + tuple(range(2, x.ndim)))
        floor = np.abs(dy).max() * g / np.sqrt(var.min() + ours.eps)
        assert _rel(dx, tx.grad.numpy(), floor) <= 1e-5
        if ours.affine:
            assert _rel(ours.weight.grad, ref.weight.grad.numpy()) <= 1e-5
            assert _rel(ours.bias.grad, ref.bias.grad.numpy()) <= 1e-5
    if ours.track_running_stats:
        assert _rel(ours.running_mean, ref.running_mean.numpy()) <= 1e-5
        assert _rel(ours.running_var, ref.running_var.numpy()) <= 1e-5
        assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 4
    else:
        assert ours.running_mean is None and ref.running_mean is None
    ours.eval()
    ref.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = ref(tx)
    ty.backward(torch.from_numpy(dy))
    assert _rel(ours(x), ty.detach().numpy()) <= 1e-5
    assert _rel(ours.backward(dy), tx.grad.numpy()) <= 1e-5


def test_parity_float64_tiny_batch_is_exact():
    torch = require_torch()
    rng = np.random.default_rng(5)
    ours = make_bn(4, rng).double()
    ref = torch.nn.BatchNorm1d(4).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.weight.data))
        ref.bias.copy_(torch.from_numpy(ours.bias.data))
    x, dy = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    ours(x)
    dx = ours.backward(dy)
    tx = torch.from_numpy(x).requires_grad_(True)
    ref(tx).backward(torch.from_numpy(dy))
    assert _rel(dx, tx.grad.numpy()) <= 1e-5


def test_state_dict_keys_match_pytorch():
    torch = require_torch()
    ours = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ref = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    sd = ours.state_dict()
    assert list(sd) == list(ref.state_dict())
    assert all(sd[k].shape == tuple(v.shape) for k, v in ref.state_dict().items())
    assert sd["1.num_batches_tracked"].dtype == np.int64
    ref.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})


def test_buffers_are_not_parameters():
    bn = nn.BatchNorm1d(3)
    names = dict(bn.named_parameters())
    assert set(names) == {"weight", "bias"}
    assert {n for n, _ in bn.named_buffers()} == {"running_mean", "running_var",
                                                  "num_batches_tracked"}
    np.testing.assert_array_equal(bn.running_mean, 0)
    np.testing.assert_array_equal(bn.running_var, 1)


def test_float16_input_works_and_keeps_dtype():
    rng = np.random.default_rng(6)
    bn = make_bn(5, rng)
    x = (rng.standard_normal((64, 5)) * 4 + 10).astype(np.float16)
    y = bn(x)
    assert y.dtype == np.float16 and np.isfinite(y).all()
    ref = make_bn(5, np.random.default_rng(6)).double()
    y64 = ref(x.astype(np.float64))
    assert np.abs(y.astype(np.float64) - y64).max() <= 4e-3 * np.abs(y64).max()
    dx = bn.backward(rng.standard_normal((64, 5)).astype(np.float16))
    assert dx.dtype == np.float16 and np.isfinite(dx).all()


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_large_common_offset_is_stable(offset):
    rng = np.random.default_rng(7)
    z = rng.standard_normal((4096, 8))
    x32 = (offset + z).astype(np.float32)
    bn = make_bn(8, np.random.default_rng(8))
    ref = make_bn(8, np.random.default_rng(8)).double()
    y = bn(x32)
    y64 = ref(x32.astype(np.float64))  # the same float32 numbers, exact statistics
    assert np.abs(y - y64).max() <= 1e-4 * np.abs(y64).max()
    assert np.abs(bn.running_var - ref.running_var).max() <= 1e-4 * ref.running_var.max()


# ----- bad input: type and message ------------------------------------------------------------
def test_one_value_per_channel_in_training_is_refused():
    bn = nn.BatchNorm1d(4)
    with pytest.raises(ShapeError, match=r"BatchNorm1d\(4\).*more than 1 value per channel"):
        bn(np.ones((1, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        bn(np.ones((1, 4, 1), dtype=np.float32))
    bn.eval()  # eval uses running statistics: a batch of one is fine
    assert bn(np.ones((1, 4), dtype=np.float32)).shape == (1, 4)


def test_wrong_number_of_channels():
    with pytest.raises(ShapeError, match=r"got 5 channels.*expected 4 channels on axis 1"):
        nn.BatchNorm1d(4)(np.zeros((3, 5), dtype=np.float32))


@pytest.mark.parametrize("shape", [(4,), (2, 4, 3, 3)])
def test_wrong_rank(shape):
    with pytest.raises(ShapeError, match=r"got a \d-D input.*expected 2-D \(N, C\) or 3-D"):
        nn.BatchNorm1d(4)(np.zeros(shape, dtype=np.float32))


def test_bn2d_wrong_rank():
    with pytest.raises(ShapeError, match=r"BatchNorm2d\(3\).*expected 4-D \(N, C, H, W\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 3), dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
def test_integer_arrays_are_refused_explicitly(dtype):
    with pytest.raises(DTypeError, match=r"dtype .*expected a floating-point array.*astype"):
        nn.BatchNorm1d(2)(np.ones((3, 2), dtype=dtype))


def test_non_array_input_is_refused():
    with pytest.raises(DTypeError, match="got list, expected a floating-point array"):
        nn.BatchNorm1d(2)([[1.0, 2.0], [3.0, 4.0]])


def test_non_finite_input_when_checking_is_on():
    x = np.ones((4, 3), dtype=np.float32)
    x[2, 1] = np.nan
    bn = nn.BatchNorm1d(3)
    bn(x)  # off by default (like PyTorch): NaN propagates, no cost
    with nn.detect_anomaly(), pytest.raises(NonFiniteError,
                                            match=r"BatchNorm1d\(3\): non-finite input at "
                                                  r"index \(2, 1\)"):
        bn(x)


def test_bad_constructor_arguments():
    from gammabeta.errors import ConfigError

    with pytest.raises(ConfigError, match="momentum=1.5"):
        nn.BatchNorm1d(3, momentum=1.5)
    with pytest.raises(ConfigError, match="eps=0"):
        nn.BatchNorm1d(3, eps=0)
    with pytest.raises(ConfigError, match="unknown initializer 'onez'.*ones"):
        nn.BatchNorm1d(3, gamma_init="onez")


def test_backward_without_forward_and_wrong_dy():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        bn.backward(np.ones((4, 3), dtype=np.float32))
    bn(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
    with pytest.raises(ShapeError, match=r"dy of shape \(4, 2\), expected \(4, 3\)"):
        bn.backward(np.ones((4, 2), dtype=np.float32))


def test_gamma_beta_presets_reach_parameters():
    bn = nn.BatchNorm1d(1000, gamma_init="uniform", beta_init=0.25,
                        rng=np.random.default_rng(0))
    assert 0 <= bn.weight.data.min() and bn.weight.data.max() < 1
    assert abs(bn.weight.data.mean() - 0.5) < 0.05
    np.testing.assert_array_equal(bn.bias.data, 0.25)
    assert np.all(nn.BatchNorm1d(4, gamma_init="slimming").weight.data == 0.5)
