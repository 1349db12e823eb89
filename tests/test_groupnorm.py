"""GroupNorm: gradient checks, PyTorch parity (float64 and float32, both code paths), numerics
and every bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gammabeta import backend
from gammabeta.errors import ConfigError, DTypeError, ShapeError
from gammabeta.nn import Sequential
from gammabeta.nn.groupnorm import GroupNorm

from ._torch import require_torch
from .gradcheck import check_module_grads
from .test_layernorm import PATHS, rel


def make_gn(g, c, rng, **kw):
    """A GroupNorm with γ and β drawn at random (ones/zeros would hide backward bugs)."""
    return GroupNorm(g, c, weight_init="normal(mean=1, std=0.5)", bias_init="normal", rng=rng,
                     **kw)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 5), 1), ((2, 6, 3, 5), 2),
                                          ((2, 6, 3, 5), 3), ((2, 6, 3, 5), 6),
                                          ((3, 6, 7), 2), ((4, 6), 3), ((3, 4, 1), 2)])
def test_gradcheck_random_gamma_beta(path, shape, groups):
    rng = np.random.default_rng(1)
    gn = make_gn(groups, shape[1], rng)
    x = rng.standard_normal(shape) * 2 + 1
    with backend.jit(path):
        check_module_grads(gn, x)
        gn.eval()  # the same computation in evaluation
        check_module_grads(gn, x)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kw", [dict(affine=False), dict(bias=False), dict(eps=0.1)])
def test_gradcheck_variants(path, kw):
    rng = np.random.default_rng(2)
    gn = make_gn(3, 6, rng, **kw) if kw.get("affine", True) else GroupNorm(3, 6, **kw)
    with backend.jit(path):
        check_module_grads(gn, rng.standard_normal((3, 6, 5)) + 4)


def _torch_twin(torch, ours, dtype, **kw):
    ref = torch.nn.GroupNorm(ours.num_groups, ours.num_channels, dtype=dtype, **kw)
    with torch.no_grad():
        if ours.weight is not None:
            ref.weight.copy_(torch.from_numpy(ours.weight.data))
        if ours.bias is not None:
            ref.bias.copy_(torch.from_numpy(ours.bias.data))
    return ref


PARITY_CASES = [((2, 6, 3, 5), 1, {}), ((2, 6, 3, 5), 2, {}), ((2, 6, 3, 5), 3, {}),
                ((2, 6, 3, 5), 6, {}), ((3, 6, 7), 2, dict(eps=1e-3)), ((5, 6), 2, {}),
                ((3, 9, 5, 7), 3, dict(bias=False)), ((2, 10, 11), 5, dict(affine=False)),
                ((3, 4, 2, 3, 3), 2, {})]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("shape,groups,kw", PARITY_CASES)
def test_parity_with_pytorch(path, dtype, tol, shape, groups, kw):
    torch = require_torch()
    rng = np.random.default_rng(3)
    c = shape[1]
    ours = make_gn(groups, c, rng, dtype=dtype, **kw) if kw.get("affine", True) \
        else GroupNorm(groups, c, dtype=dtype, **kw)
    ref = _torch_twin(torch, ours, getattr(torch, np.dtype(dtype).name), **kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for train in (True, False):
        ours.train(train)
        ref.train(train)
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + 3).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        ours.zero_grad()
        ref.zero_grad()
        with backend.jit(path):
            y = ours(x)
            dx = ours.backward(dy)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = ref(tx)
        ty.backward(torch.from_numpy(dy))
        assert y.dtype == dx.dtype == dtype
        assert rel(y, ty.detach().numpy()) <= tol
        assert rel(dx, tx.grad.numpy()) <= tol
        if ours.weight is not None:
            assert rel(ours.weight.grad, ref.weight.grad.numpy()) <= tol
        if ours.bias is not None:
            assert rel(ours.bias.grad, ref.bias.grad.numpy()) <= tol


@pytest.mark.parametrize("shape,groups", [((33, 64, 13, 11), 16), ((5, 6000, 17), 3)])
def test_parity_large_input_threads_and_paths_agree(shape, groups):
    """Large enough for the kernels (auto) and their split over threads; NumPy path too."""
    torch = require_torch()
    rng = np.random.default_rng(4)
    ours = make_gn(groups, shape[1], rng)
    ref = _torch_twin(torch, ours, torch.float32)
    x = (rng.standard_normal(shape) * 3 - 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = ref(tx)
    ty.backward(torch.from_numpy(dy))
    for path in ("auto", "off"):
        ours.zero_grad()
        with backend.jit(path):
            y = ours(x)
            dx = ours.backward(dy)
        assert rel(y, ty.detach().numpy()) <= 1e-5
        assert rel(dx, tx.grad.numpy()) <= 1e-5
        assert rel(ours.weight.grad, ref.weight.grad.numpy()) <= 1e-5
        assert rel(ours.bias.grad, ref.bias.grad.numpy()) <= 1e-5


def test_state_dict_keys_match_pytorch():
    torch = require_torch()
    ours = Sequential(GroupNorm(2, 4), GroupNorm(1, 4, affine=False), GroupNorm(4, 4, bias=False))
    ref = torch.nn.Sequential(torch.nn.GroupNorm(2, 4), torch.nn.GroupNorm(1, 4, affine=False),
                              torch.nn.GroupNorm(4, 4, bias=False))
    sd = ours.state_dict()
    assert list(sd) == list(ref.state_dict()) == ["0.weight", "0.bias", "2.weight"]
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_large_common_offset_is_stable(path, offset):
    rng = np.random.default_rng(5)
    shape = (4, 8, 9, 9)
    x32 = (offset + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape)
    gn = make_gn(4, 8, np.random.default_rng(6))
    ref = make_gn(4, 8, np.random.default_rng(6)).double()
    with backend.jit(path):
        y = gn(x32)
        dx = gn.backward(dy.astype(np.float32))
    y64 = ref(x32.astype(np.float64))  # the same float32 numbers, exact statistics
    dx64 = ref.backward(dy)
    assert rel(y, y64) <= 1e-5
    assert rel(dx, dx64) <= 1e-5
    assert rel(gn.weight.grad, ref.weight.grad) <= 1e-5


def test_groups_one_and_c_are_layer_and_instance_statistics():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 5, 5))
    y1 = GroupNorm(1, 4, dtype=np.float64)(x)
    m, v = x.mean(axis=(1, 2, 3), keepdims=True), x.var(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(y1, (x - m) / np.sqrt(v + 1e-5), atol=1e-12)
    yc = GroupNorm(4, 4, dtype=np.float64)(x)
    m, v = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(yc, (x - m) / np.sqrt(v + 1e-5), atol=1e-12)


def test_each_sample_alone_and_eval_is_train():
    rng = np.random.default_rng(8)
    gn = make_gn(2, 4, rng)
    x = rng.standard_normal((5, 4, 3)).astype(np.float32)
    y = gn(x)
    np.testing.assert_allclose(gn(x[2:3]), y[2:3], atol=1e-6)  # batch size changes nothing
    np.testing.assert_array_equal(gn.eval()(x), y)


def test_float16_and_repr():
    rng = np.random.default_rng(9)
    gn = make_gn(2, 4, rng)
    h = (rng.standard_normal((3, 4, 6)) * 4 + 10).astype(np.float16)
    y = gn(h)
    assert y.dtype == np.float16 and np.isfinite(y).all()
    assert rel(y, make_gn(2, 4, np.random.default_rng(9)).double()(h.astype(np.float64))) \
        <= 2e-3
    assert gn.backward(np.ones_like(h)).dtype == np.float16
    assert repr(GroupNorm(2, 4)) == "GroupNorm(2, 4)"
    assert repr(GroupNorm(2, 4, eps=0.1, affine=False)) == "GroupNorm(2, 4, eps=0.1, affine=False)"
    assert repr(GroupNorm(2, 4, bias=False)) == "GroupNorm(2, 4, bias=False)"


# ----- bad input -----------------------------------------------------------------------------
def test_channels_not_divisible_by_groups():
    with pytest.raises(ConfigError) as e:
        GroupNorm(32, 100)
    msg = str(e.value)
    assert "\n" not in msg and "num_channels=100" in msg and "num_groups=32" in msg
    assert msg.startswith("GroupNorm: num_channels=100 is not divisible by num_groups=32")
    assert "e.g. num_groups=25" in msg


@pytest.mark.parametrize("args,kw,match", [
    ((0, 4), {}, "GroupNorm: num_groups=0; expected an int >= 1"),
    ((2, 0), {}, "num_channels=0; expected an int >= 1"),
    ((2.0, 4), {}, "num_groups=2.0"),
    ((2, 4), dict(eps=-1.0), "eps=-1.0; expected a finite number > 0"),
    ((2, 4), dict(affine="yes"), "affine='yes'; expected True or False"),
    ((2, 4), dict(bias=None), "bias=None; expected True or False"),
    ((2, 4), dict(bias_init="zeroes"), "unknown initializer 'zeroes'"),
])
def test_bad_constructor_arguments(args, kw, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        GroupNorm(*args, **kw)


def test_wrong_input_shapes():
    gn = GroupNorm(2, 4)
    with pytest.raises(ShapeError, match=re.escape("GroupNorm(2, 4): got 3 channels (input "
                                                   "shape (2, 3, 5)), expected 4 channels on "
                                                   "axis 1")):
        gn(np.zeros((2, 3, 5), dtype=np.float32))
    with pytest.raises(ShapeError, match=re.escape("GroupNorm(2, 4): got a 1-D input of shape "
                                                   "(4,), expected (N, C, *) with C = 4")):
        gn(np.zeros(4, dtype=np.float32))
    with pytest.raises(DTypeError, match="dtype int32"):
        gn(np.zeros((2, 4), dtype=np.int32))
    gn(np.ones((2, 4, 3), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"dy of shape \(2, 4\), expected \(2, 4, 3\)"):
        gn.backward(np.ones((2, 4), dtype=np.float32))
