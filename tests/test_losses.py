"""Losses: PyTorch parity, finite differences, numerical stability, dtypes and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from gammabeta.errors import ConfigError, DataError, DTypeError, NonFiniteError, ShapeError
from gammabeta.nn.losses import CrossEntropyLoss, MSELoss, log_softmax, softmax

from ._torch import require_torch
from .gradcheck import max_rel_err, numeric_grad

torch = require_torch()
F = torch.nn.functional
REDUCTIONS = ["mean", "sum", "none"]


def _torch_loss_and_grad(fn, x, upstream):
    tx = torch.tensor(x, requires_grad=True)
    out = fn(tx)
    out.backward(torch.as_tensor(upstream, dtype=out.dtype).expand_as(out))
    return out.detach().numpy(), tx.grad.numpy()


def _check(loss, x, target, tfn, reduction, rng, tol=1e-6):
    ours = loss(x, target)
    up = rng.standard_normal(np.shape(ours)) if reduction == "none" else 0.7
    dx = loss.backward(up)
    want, want_dx = _torch_loss_and_grad(tfn, x, up)
    np.testing.assert_allclose(ours, want, rtol=tol, atol=tol)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=tol)
    if reduction == "none":
        assert isinstance(ours, np.ndarray) and ours.dtype == x.dtype
    else:
        assert isinstance(ours, float)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("extra", [(), (3, 2)])
def test_cross_entropy_index_targets_match_torch(reduction, smoothing, extra):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, *extra)) * 3
    y = rng.integers(0, 5, size=(6, *extra))
    loss = CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    _check(loss, x, y, lambda t: F.cross_entropy(t, torch.from_numpy(y), reduction=reduction,
                                                  label_smoothing=smoothing), reduction, rng)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_probability_targets_match_torch(reduction, smoothing):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 4))
    t = softmax(rng.standard_normal((7, 4)))
    loss = CrossEntropyLoss(reduction, smoothing)
    _check(loss, x, t, lambda z: F.cross_entropy(z, torch.from_numpy(t), reduction=reduction,
                                                  label_smoothing=smoothing), reduction, rng)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("probs", [False, True])
def test_cross_entropy_weight_and_ignore_index_match_torch(reduction, probs):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 4))
    w = rng.uniform(0.5, 2.0, 4)
    y = rng.integers(0, 4, size=8)
    y[[1, 5]] = -100
    t = softmax(rng.standard_normal((8, 4))) if probs else y
    loss = CrossEntropyLoss(reduction, 0.1, weight=w)
    _check(loss, x, t, lambda z: F.cross_entropy(z, torch.from_numpy(t), weight=torch.from_numpy(w),
                                                  reduction=reduction, label_smoothing=0.1),
           reduction, rng)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_ignore_index_inside_the_classes_matches_torch(reduction):
    """An ``ignore_index`` that is also a class index: the quick range check cannot tell
    ignored targets from counted ones, so the masks decide (the mean over 5 counted)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((8, 4))
    y = np.array([0, 2, 1, 2, 3, 2, 0, 1])
    loss = CrossEntropyLoss(reduction, ignore_index=2)
    _check(loss, x, y, lambda z: F.cross_entropy(z, torch.from_numpy(y), ignore_index=2,
                                                  reduction=reduction), reduction, rng)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_torch(reduction):
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    _check(MSELoss(reduction), x, t,
           lambda z: F.mse_loss(z, torch.from_numpy(t), reduction=reduction), reduction, rng)


@pytest.mark.torch
def test_softmax_and_log_softmax_match_torch():
    x = np.random.default_rng(4).standard_normal((3, 6)) * 50
    np.testing.assert_allclose(softmax(x), torch.softmax(torch.from_numpy(x), -1).numpy(),
                               rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(log_softmax(x, axis=0),
                               torch.log_softmax(torch.from_numpy(x), 0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(softmax(x).sum(-1), 1.0)


@pytest.mark.torch
def test_cross_entropy_float32_matches_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 10)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    loss = CrossEntropyLoss(label_smoothing=0.05)
    _check(loss, x, y, lambda z: F.cross_entropy(z, torch.from_numpy(y), label_smoothing=0.05),
           "mean", rng, tol=1e-5)


# ----- finite differences ------------------------------------------------------------------
def _fd(loss, x, target, upstream=None):
    def f():
        out = loss(x, target)
        return float(np.sum(out * upstream)) if upstream is not None else out

    f()
    dx = loss.backward(1.0 if upstream is None else upstream)
    num = numeric_grad(f, x, eps=1e-6)
    assert max_rel_err(dx, num) < 1e-6


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_finite_differences(smoothing):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 5))
    _fd(CrossEntropyLoss(label_smoothing=smoothing), x, rng.integers(0, 5, 4))
    _fd(CrossEntropyLoss("sum", smoothing), x, softmax(rng.standard_normal((4, 5))))
    _fd(CrossEntropyLoss("none", smoothing, weight=[1.0, 2.0, 0.5, 1.0, 3.0]),
        rng.standard_normal((3, 5, 2)), rng.integers(0, 5, (3, 2)),
        upstream=rng.standard_normal((3, 2)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_finite_differences(reduction):
    rng = np.random.default_rng(7)
    x, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    _fd(MSELoss(reduction), x, t, upstream=rng.standard_normal((3, 4)) if reduction == "none"
        else None)


def test_cross_entropy_gradient_formula():
    """Mean reduction: (softmax - onehot_smoothed) / N."""
    rng = np.random.default_rng(8)
    x, y, eps = rng.standard_normal((5, 3)), rng.integers(0, 3, 5), 0.1
    loss = CrossEntropyLoss(label_smoothing=eps)
    loss(x, y)
    onehot = np.eye(3)[y] * (1 - eps) + eps / 3
    np.testing.assert_allclose(loss.backward(), (softmax(x) - onehot) / 5, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    x = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype=dtype)
    y = np.array([1, 2])
    loss = CrossEntropyLoss(label_smoothing=0.1)
    value = loss(x, y)
    dx = loss.backward()
    assert np.isfinite(value) and np.isfinite(dx).all() and dx.dtype == dtype
    shifted = CrossEntropyLoss(label_smoothing=0.1)(x - np.max(x, 1, keepdims=True), y)
    assert value == pytest.approx(shifted, rel=1e-6)
    assert np.isfinite(log_softmax(x)).all() and np.isfinite(softmax(x)).all()


def test_all_ignored_mean_is_nan_like_torch():
    loss = CrossEntropyLoss(ignore_index=1)
    assert np.isnan(loss(np.zeros((2, 3)), np.array([1, 1])))


# ----- errors ------------------------------------------------------------------------------
X = np.zeros((4, 3))


@pytest.mark.parametrize("call,exc,words", [
    (lambda: CrossEntropyLoss()(X, np.array([0, 1, 5, 2])), DataError,
     ["target value 5", "3 classes"]),
    (lambda: CrossEntropyLoss()(X, np.array([0, -1, 2, 2])), DataError,
     ["target value -1", "0 <= target < 3"]),
    (lambda: CrossEntropyLoss()(X, np.zeros((4, 4))), ShapeError,
     ["(4, 4)", "probabilities of shape (4, 3)"]),
    (lambda: CrossEntropyLoss()(X, np.zeros(4)), ShapeError, ["integer dtype"]),
    (lambda: CrossEntropyLoss()(X, np.array([0, 1, 2])), ShapeError,
     ["N=4 samples", "target has 3"]),
    (lambda: CrossEntropyLoss()(np.zeros((4, 3), dtype=np.int64), np.zeros(4, int)), DTypeError,
     ["int64", "floating-point"]),
    (lambda: CrossEntropyLoss()(np.array([[0.0, np.nan, 1.0]]), np.array([0])), NonFiniteError,
     ["CrossEntropyLoss", "nan", "(0, 1)"]),
    (lambda: CrossEntropyLoss()(np.zeros(3), np.array(0)), ShapeError, ["1-D", "(N, C)"]),
    (lambda: CrossEntropyLoss()(X, np.zeros(4, dtype=bool)), DTypeError, ["bool"]),
    (lambda: CrossEntropyLoss(weight=[1.0, 2.0])(X, np.zeros(4, int)), ShapeError,
     ["weight has shape (2,)", "(3,)"]),
    (lambda: CrossEntropyLoss(reduction="avg"), ConfigError, ["reduction='avg'"]),
    (lambda: CrossEntropyLoss(label_smoothing=1.5), ConfigError, ["label_smoothing=1.5"]),
    (lambda: CrossEntropyLoss().backward(), RuntimeError, ["no cached forward"]),
    (lambda: MSELoss()(X, np.zeros((4, 2))), ShapeError, ["(4, 2)", "(4, 3)"]),
    (lambda: MSELoss()(np.ones((2,), dtype=np.int32), np.ones(2)), DTypeError, ["int32"]),
    (lambda: MSELoss()(np.ones(2), np.array([1.0, np.inf])), NonFiniteError,
     ["MSELoss", "inf"]),
    (lambda: MSELoss(reduction="max"), ConfigError, ["MSELoss", "'max'"]),
    (lambda: softmax(np.arange(3)), DTypeError, ["softmax", "int64"]),
])
def test_loss_errors(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value)


def test_backward_grad_shape_errors():
    loss = CrossEntropyLoss("none")
    loss(X, np.zeros(4, int))
    with pytest.raises(ShapeError, match=r"\(5,\).*\(4,\)"):
        loss.backward(np.ones(5))
    mse = MSELoss()
    mse(X, X)
    with pytest.raises(ShapeError, match="expected a scalar"):
        mse.backward(np.ones(3))


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("shape", [(16, 10), (5, 4, 3)])
def test_cross_entropy_one_hot_fast_path_equals_the_weighted_path(reduction, shape):
    """Index targets without weights or smoothing pick log p of the target (no dense
    one-hot): the same bits as the general path, taken here through unit class weights."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    y = rng.integers(0, shape[1], (shape[0], *shape[2:]))
    fast = CrossEntropyLoss(reduction=reduction)
    general = CrossEntropyLoss(reduction=reduction, weight=np.ones(shape[1], np.float32))
    g = 1.0 if reduction == "sum" else rng.standard_normal(y.shape).astype(np.float32)
    lf, lg = fast(x, y), general(x, y)
    assert np.array_equal(np.asarray(lf), np.asarray(lg))
    assert np.array_equal(fast.backward(g), general.backward(g))
    assert fast._cache[1].ndim == 1  # the fast path ran (flat indices of the targets)
