"""LayerNorm: gradient checks, PyTorch parity (float64 and float32, both code paths), numerics
and every bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gammabeta import backend
from gammabeta.errors import ConfigError, DTypeError, ShapeError
from gammabeta.nn import Sequential, no_grad
from gammabeta.nn.layernorm import LayerNorm

from ._torch import require_torch
from .gradcheck import check_module_grads

# "off": the NumPy path; "force": the Numba kernels at every size
PATHS = ["off", "force"]


def make_ln(shape, rng, **kw):
    """A LayerNorm with γ and β drawn at random (ones/zeros would hide backward bugs)."""
    return LayerNorm(shape, weight_init="normal(mean=1, std=0.5)", bias_init="normal", rng=rng,
                     **kw)


def rel(a, ref):
    """max |a − ref| / max |ref|."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(a, dtype=np.float64) - ref).max()
                 / max(np.abs(ref).max(), 1e-300))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape,ns,kw", [((3, 5, 7), (7,), {}), ((3, 5, 7), (5, 7), {}),
                                         ((2, 3, 4, 5), (4, 5), dict(bias=False)),
                                         ((5, 3), 3, {}), ((4, 6), (6,), dict(eps=1e-2))])
def test_gradcheck_random_gamma_beta(path, shape, ns, kw):
    rng = np.random.default_rng(1)
    ln = make_ln(ns, rng, **kw)
    x = rng.standard_normal(shape) * 2 + 1
    with backend.jit(path):
        check_module_grads(ln, x)


@pytest.mark.parametrize("path", PATHS)
def test_gradcheck_without_affine(path):
    rng = np.random.default_rng(2)
    with backend.jit(path):
        check_module_grads(LayerNorm((3, 4), elementwise_affine=False),
                           rng.standard_normal((5, 3, 4)) - 3)


def _torch_twin(torch, ours, ns, dtype, **kw):
    ref = torch.nn.LayerNorm(ns, dtype=dtype, **kw)
    with torch.no_grad():
        if ours.weight is not None:
            ref.weight.copy_(torch.from_numpy(ours.weight.data))
        if ours.bias is not None:
            ref.bias.copy_(torch.from_numpy(ours.bias.data))
    return ref


PARITY_CASES = [((3, 5, 7), (7,), {}), ((2, 3, 5, 7), (5, 7), {}), ((7, 9), (9,), {}),
                ((5, 11), (11,), dict(eps=1e-3)), ((3, 13), (13,), dict(bias=False)),
                ((4, 3, 5), (3, 5), dict(elementwise_affine=False)), ((5, 7), (5, 7), {})]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("shape,ns,kw", PARITY_CASES)
def test_parity_with_pytorch(path, dtype, tol, shape, ns, kw):
    torch = require_torch()
    rng = np.random.default_rng(3)
    ours = make_ln(ns, rng, dtype=dtype, **kw)
    ref = _torch_twin(torch, ours, ns, getattr(torch, np.dtype(dtype).name), **kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for _step in range(2):
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
            assert ours.weight.grad.dtype == dtype
            assert rel(ours.weight.grad, ref.weight.grad.numpy()) <= tol
        if ours.bias is not None:
            assert rel(ours.bias.grad, ref.bias.grad.numpy()) <= tol


def test_parity_large_input_threads_and_paths_agree():
    """Large enough for the kernels (auto) and their split over threads; NumPy path too."""
    torch = require_torch()
    rng = np.random.default_rng(4)
    shape = (601, 513)  # > PARALLEL_MIN values, odd row count and width
    ours = make_ln(513, rng)
    ref = _torch_twin(torch, ours, (513,), torch.float32)
    x = (rng.standard_normal(shape) * 3 - 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ref(tx).backward(torch.from_numpy(dy))
    for path in ("auto", "off"):
        ours.zero_grad()
        with backend.jit(path):
            y = ours(x)
            dx = ours.backward(dy)
        assert rel(y, ref(torch.from_numpy(x)).detach().numpy()) <= 1e-5
        assert rel(dx, tx.grad.numpy()) <= 1e-5
        assert rel(ours.weight.grad, ref.weight.grad.numpy()) <= 1e-5
        assert rel(ours.bias.grad, ref.bias.grad.numpy()) <= 1e-5


def test_state_dict_keys_match_pytorch():
    torch = require_torch()
    for kw in ({}, dict(bias=False), dict(elementwise_affine=False)):
        ours, ref = LayerNorm((3, 4), **kw), torch.nn.LayerNorm((3, 4), **kw)
        sd = ours.state_dict()
        assert list(sd) == list(ref.state_dict())
        assert all(sd[k].shape == tuple(v.shape) for k, v in ref.state_dict().items())
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_large_common_offset_is_stable(path, offset):
    rng = np.random.default_rng(5)
    x32 = (offset + rng.standard_normal((64, 300))).astype(np.float32)
    dy = rng.standard_normal((64, 300))
    ln = make_ln(300, np.random.default_rng(6))
    ref = make_ln(300, np.random.default_rng(6)).double()
    with backend.jit(path):
        y = ln(x32)
        dx = ln.backward(dy.astype(np.float32))
    y64 = ref(x32.astype(np.float64))  # the same float32 numbers, exact statistics
    dx64 = ref.backward(dy)
    assert rel(y, y64) <= 1e-5
    assert rel(dx, dx64) <= 1e-5
    assert rel(ln.weight.grad, ref.weight.grad) <= 1e-5


def test_eval_is_train_and_no_grad_keeps_no_cache():
    rng = np.random.default_rng(7)
    ln = make_ln(6, rng)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y = ln(x)
    np.testing.assert_array_equal(ln.eval()(x), y)
    with no_grad():
        ln(x)
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        ln.backward(y)


def test_unbatched_input_and_float16():
    rng = np.random.default_rng(8)
    ln = make_ln((3, 4), rng)
    x = rng.standard_normal((3, 4)).astype(np.float32)  # exactly normalized_shape
    assert ln(x).shape == (3, 4)
    h = (rng.standard_normal((5, 3, 4)) * 4 + 10).astype(np.float16)
    y = ln(h)
    assert y.dtype == np.float16 and np.isfinite(y).all()
    ref = make_ln((3, 4), np.random.default_rng(8)).double()(h.astype(np.float64))
    assert rel(y, ref) <= 2e-3
    dx = ln.backward(np.ones_like(h))
    assert dx.dtype == np.float16 and np.isfinite(dx).all()


@pytest.mark.parametrize("path", PATHS)
def test_constant_rows_and_empty_batch(path):
    ln = make_ln(5, np.random.default_rng(9))
    with backend.jit(path):
        y = ln(np.full((3, 5), 7.0, dtype=np.float32))  # σ = 0: x̂ = 0, y = β
        np.testing.assert_allclose(y, np.broadcast_to(ln.bias.data, (3, 5)), atol=1e-6)
        assert np.isfinite(ln.backward(np.ones((3, 5), dtype=np.float32))).all()
        e = ln(np.zeros((0, 5), dtype=np.float32))
        assert e.shape == (0, 5)
        ln.zero_grad()
        assert ln.backward(e).shape == (0, 5)
        np.testing.assert_array_equal(ln.weight.grad, 0)


def test_repr_and_parameters():
    assert repr(LayerNorm(4)) == "LayerNorm((4,))"
    assert repr(LayerNorm([2, 3], eps=1e-3, bias=False)) == "LayerNorm((2, 3), eps=0.001, " \
                                                           "bias=False)"
    ln = LayerNorm((2, 3), elementwise_affine=False)
    assert ln.weight is None and ln.bias is None and list(ln.state_dict()) == []
    ln = LayerNorm(np.int64(3), bias=False, dtype=np.float64)
    assert ln.normalized_shape == (3,) and ln.bias is None and ln.weight.data.dtype == np.float64
    np.testing.assert_array_equal(ln.weight.data, 1)
    m = Sequential(LayerNorm(3, bias_init=0.25))
    np.testing.assert_array_equal(m.state_dict()["0.bias"], 0.25)


# ----- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    (dict(normalized_shape=0), "LayerNorm: normalized_shape=(0,); expected a non-empty"),
    (dict(normalized_shape=()), "normalized_shape=()"),
    (dict(normalized_shape=4.0), "normalized_shape=4.0"),
    (dict(normalized_shape="4"), "normalized_shape='4'"),
    (dict(normalized_shape=(3, True)), "normalized_shape=(3, True)"),
    (dict(normalized_shape=4, eps=0), "eps=0; expected a finite number > 0"),
    (dict(normalized_shape=4, eps=float("nan")), "eps=nan"),
    (dict(normalized_shape=4, elementwise_affine=1), "elementwise_affine=1; expected True"),
    (dict(normalized_shape=4, bias="no"), "bias='no'; expected True or False"),
    (dict(normalized_shape=4, weight_init="onez"), "unknown initializer 'onez'"),
    (dict(normalized_shape=4, dtype=np.int32), "expected a floating-point dtype"),
    (dict(normalized_shape=4, rng=0), "rng is a int; expected a numpy.random.Generator"),
])
def test_bad_constructor_arguments(kw, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        LayerNorm(**kw)


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 4, 3)])
def test_wrong_trailing_shape(shape):
    with pytest.raises(ShapeError, match=r"LayerNorm\(\(3, 4\)\): got an input of shape .*, "
                                         r"expected \(\*, 3, 4\): its last 2 axes must be "
                                         r"\(3, 4\)$"):
        LayerNorm((3, 4))(np.zeros(shape, dtype=np.float32))
    with pytest.raises(ShapeError, match=r"its last 1 axis must be \(5,\)"):
        LayerNorm(5)(np.zeros((2, 4), dtype=np.float32))


def test_non_float_input_and_bad_dy():
    ln = LayerNorm(3)
    with pytest.raises(DTypeError, match=r"LayerNorm\(\(3,\)\): got an array of dtype int64"):
        ln(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(DTypeError, match="got list"):
        ln([[1.0, 2.0, 3.0]])
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        ln.backward(np.ones((2, 3), dtype=np.float32))
    ln(np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32))
    with pytest.raises(ShapeError, match=r"backward: got dy of shape \(2, 4\), expected \(2, 3\)"):
        ln.backward(np.ones((2, 4), dtype=np.float32))


@pytest.mark.parametrize("layer,shape", [("ln", (50, 37)), ("gn", (13, 6, 5, 7)),
                                         ("in", (9, 4, 21))])
def test_kernel_row_ranges_on_threads_agree_with_one_thread(monkeypatch, layer, shape):
    """The kernels split rows into ranges run by whichever thread is free: the same y and dx
    as one range on one thread (dγ, dβ summed in another order)."""
    kern = backend.norm_kernels(np, 10**9)
    if kern is None:
        pytest.skip("numba is not installed")
    from gammabeta.nn.groupnorm import GroupNorm
    from gammabeta.nn.instancenorm import InstanceNorm1d

    rng = np.random.default_rng(10)
    make = {"ln": lambda: make_ln(shape[-1], np.random.default_rng(0)),
            "gn": lambda: GroupNorm(3, 6, weight_init="normal", bias_init="normal",
                                    rng=np.random.default_rng(0)),
            "in": lambda: InstanceNorm1d(4, affine=True, weight_init="normal",
                                         bias_init="normal", rng=np.random.default_rng(0))}
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    out = []
    from gammabeta.nn import _row_pool

    for nthreads, parallel_min in ((1, _row_pool.PARALLEL_MIN), (3, 1)):
        monkeypatch.setattr(_row_pool, "threads", lambda n=nthreads: n)
        monkeypatch.setattr(_row_pool, "PARALLEL_MIN", parallel_min)
        assert len(_row_pool.row_ranges(shape[0] * 3, x.size)) == (
            1 if nthreads == 1 else min(12, shape[0] * 3 // 8))
        m = make[layer]()
        with backend.jit("force"):
            y = m(x)
            dx = m.backward(dy)
        out.append((y, dx, m.weight.grad, m.bias.grad))
    (y1, dx1, g1, b1), (y3, dx3, g3, b3) = out
    np.testing.assert_array_equal(y1, y3)
    np.testing.assert_array_equal(dx1, dx3)
    # float32 partial sums of up to 32 rows per range, in another order: ~1e-6 of Σ|terms|
    scale = float(np.abs(dy).sum(axis=tuple(range(dy.ndim - (layer == "ln")))).max())
    np.testing.assert_allclose(g3, g1, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(b3, b1, rtol=0, atol=1e-6 * scale)
