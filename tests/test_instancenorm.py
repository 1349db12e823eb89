"""InstanceNorm1d/2d: gradient checks, PyTorch parity (float64 and float32, both code paths,
running statistics), training vs evaluation, numerics and every bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gammabeta import backend
from gammabeta.errors import ConfigError, ShapeError, StateDictError
from gammabeta.nn.instancenorm import InstanceNorm1d, InstanceNorm2d

from ._torch import require_torch
from .gradcheck import check_module_grads
from .test_layernorm import PATHS, rel

RANDOM = dict(weight_init="normal(mean=1, std=0.5)", bias_init="normal")


def make_in(cls, c, rng, **kw):
    """An InstanceNorm with random γ and β when affine (ones/zeros would hide backward bugs)."""
    return cls(c, rng=rng, **RANDOM, **kw)


def _randomize_running(layer, rng):
    layer.running_mean[...] = rng.standard_normal(layer.num_features)
    layer.running_var[...] = rng.uniform(0.5, 2.0, layer.num_features)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls,shape", [(InstanceNorm1d, (3, 5, 7)), (InstanceNorm1d, (5, 7)),
                                       (InstanceNorm2d, (2, 3, 4, 5)),
                                       (InstanceNorm2d, (3, 4, 5))])
@pytest.mark.parametrize("kw", [dict(affine=True), dict(affine=True, bias=False), {}])
def test_gradcheck_instance_statistics(path, cls, shape, kw):
    rng = np.random.default_rng(1)
    layer = make_in(cls, shape[-2] if cls is InstanceNorm1d else shape[-3], rng, **kw)
    x = rng.standard_normal(shape) * 2 + 1
    with backend.jit(path):
        check_module_grads(layer, x)
        layer.eval()  # track_running_stats=False: the instance's statistics in eval too
        check_module_grads(layer, x)


@pytest.mark.parametrize("cls,shape", [(InstanceNorm1d, (3, 5, 7)), (InstanceNorm2d, (3, 4, 5)),
                                       (InstanceNorm2d, (2, 3, 1, 1))])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_running_statistics_in_eval(cls, shape, affine):
    rng = np.random.default_rng(2)
    c = shape[-2] if cls is InstanceNorm1d else shape[-3]
    layer = make_in(cls, c, rng, affine=affine, track_running_stats=True)
    _randomize_running(layer, rng)
    layer.eval()
    check_module_grads(layer, rng.standard_normal(shape) * 2 + 1)


def _torch_twin(torch, ours, tcls, dtype, **kw):
    ref = tcls(ours.num_features, dtype=dtype, **kw)
    with torch.no_grad():
        if ours.weight is not None:
            ref.weight.copy_(torch.from_numpy(ours.weight.data))
        if ours.bias is not None:
            ref.bias.copy_(torch.from_numpy(ours.bias.data))
    return ref


PARITY_CASES = [
    ("1d", (3, 5, 7), {}),
    ("1d", (4, 3, 9), dict(affine=True)),
    ("1d", (5, 11), dict(affine=True, track_running_stats=True)),  # unbatched (C, L)
    ("1d", (3, 5, 7), dict(affine=True, track_running_stats=True, momentum=0.3, eps=1e-3)),
    ("1d", (2, 3, 6), dict(track_running_stats=True, momentum=None)),
    ("2d", (2, 3, 5, 7), dict(affine=True, bias=False)),
    ("2d", (3, 5, 7), dict(affine=True)),  # unbatched (C, H, W)
    ("2d", (3, 4, 3, 5), dict(affine=True, track_running_stats=True)),
    ("2d", (2, 5, 3, 3), dict(track_running_stats=True, momentum=1.0)),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("kind,shape,kw", PARITY_CASES)
def test_parity_with_pytorch(path, dtype, tol, kind, shape, kw):
    torch = require_torch()
    rng = np.random.default_rng(3)
    cls, tcls = ((InstanceNorm1d, torch.nn.InstanceNorm1d) if kind == "1d"
                 else (InstanceNorm2d, torch.nn.InstanceNorm2d))
    c = shape[-2] if kind == "1d" else shape[-3]
    ours = make_in(cls, c, rng, dtype=dtype, **kw)
    ref = _torch_twin(torch, ours, tcls, getattr(torch, np.dtype(dtype).name), **kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for train in (True, True, True, False):
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
        assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == shape
        assert rel(y, ty.detach().numpy()) <= tol
        assert rel(dx, tx.grad.numpy()) <= tol
        if ours.weight is not None:
            assert rel(ours.weight.grad, ref.weight.grad.numpy()) <= tol
        if ours.bias is not None:
            assert rel(ours.bias.grad, ref.bias.grad.numpy()) <= tol
        if ours.track_running_stats:
            assert rel(ours.running_mean, ref.running_mean.numpy()) <= tol
            assert rel(ours.running_var, ref.running_var.numpy()) <= tol
            assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 0


def test_parity_large_input_threads_and_paths_agree():
    """Large enough for the kernels (auto) and their split over threads; NumPy path too."""
    torch = require_torch()
    rng = np.random.default_rng(4)
    shape = (9, 37, 29, 31)
    ours = make_in(InstanceNorm2d, 37, rng, affine=True, track_running_stats=True)
    ref = _torch_twin(torch, ours, torch.nn.InstanceNorm2d, torch.float32, affine=True,
                      track_running_stats=True)
    x = (rng.standard_normal(shape) * 3 - 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = ref(tx)
    ty.backward(torch.from_numpy(dy))
    for path in ("auto", "off"):
        ours.zero_grad()
        ours.reset_running_stats()
        with backend.jit(path):
            y = ours(x)
            dx = ours.backward(dy)
        assert rel(y, ty.detach().numpy()) <= 1e-5
        assert rel(dx, tx.grad.numpy()) <= 1e-5
        assert rel(ours.weight.grad, ref.weight.grad.numpy()) <= 1e-5
        assert rel(ours.bias.grad, ref.bias.grad.numpy()) <= 1e-5
        assert rel(ours.running_mean, ref.running_mean.numpy()) <= 1e-5
        assert rel(ours.running_var, ref.running_var.numpy()) <= 1e-5


@pytest.mark.parametrize("kw", [{}, dict(affine=True), dict(track_running_stats=True),
                                dict(affine=True, track_running_stats=True, bias=False)])
def test_state_dict_keys_match_pytorch(kw):
    torch = require_torch()
    for cls, tcls in ((InstanceNorm1d, torch.nn.InstanceNorm1d),
                      (InstanceNorm2d, torch.nn.InstanceNorm2d)):
        ours, ref = cls(3, **kw), tcls(3, **kw)
        sd = ours.state_dict()
        assert list(sd) == list(ref.state_dict())
        assert all(sd[k].shape == tuple(v.shape) for k, v in ref.state_dict().items())
        ref.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})


def test_train_vs_eval():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((4, 3, 10)) * 2 + 5).astype(np.float32)
    own = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    plain = InstanceNorm1d(3)  # no running statistics: the instance's own in both modes
    np.testing.assert_allclose(plain(x), own, atol=1e-5)
    np.testing.assert_allclose(plain.eval()(x), own, atol=1e-5)
    tracked = InstanceNorm1d(3, track_running_stats=True, momentum=0.5)
    np.testing.assert_allclose(tracked(x), own, atol=1e-5)  # training: the instance's own
    rm, rv = tracked.running_mean.copy(), tracked.running_var.copy()
    np.testing.assert_allclose(rm, 0.5 * x.mean(-1).mean(0), rtol=1e-6)
    np.testing.assert_allclose(rv, 0.5 + 0.5 * x.var(-1, ddof=1).mean(0), rtol=1e-6)
    tracked.eval()
    fixed = (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5)
    np.testing.assert_allclose(tracked(x), fixed, atol=1e-5)  # eval: the running statistics
    np.testing.assert_array_equal(tracked.running_mean, rm)  # ... left alone
    np.testing.assert_allclose(tracked(x[:1, :, :1]), fixed[:1, :, :1], atol=1e-5)  # L = 1 ok
    np.testing.assert_allclose(tracked.backward(np.ones((1, 3, 1), dtype=np.float32)),
                               np.ones((1, 3, 1)) / np.sqrt(rv[None, :, None] + 1e-5),
                               rtol=1e-6)


def test_momentum_none_is_zero_as_in_pytorch():
    layer = InstanceNorm2d(2, track_running_stats=True, momentum=None)
    layer(np.random.default_rng(6).standard_normal((3, 2, 4, 4)).astype(np.float32) + 7)
    np.testing.assert_array_equal(layer.running_mean, 0)
    np.testing.assert_array_equal(layer.running_var, 1)
    assert int(layer.num_batches_tracked) == 0


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_large_common_offset_is_stable(path, offset):
    rng = np.random.default_rng(7)
    shape = (4, 3, 17, 19)
    x32 = (offset + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape)
    layer = make_in(InstanceNorm2d, 3, np.random.default_rng(8), affine=True,
                    track_running_stats=True)
    ref = make_in(InstanceNorm2d, 3, np.random.default_rng(8), affine=True,
                  track_running_stats=True).double()
    with backend.jit(path):
        y = layer(x32)
        dx = layer.backward(dy.astype(np.float32))
    y64 = ref(x32.astype(np.float64))  # the same float32 numbers, exact statistics
    dx64 = ref.backward(dy)
    assert rel(y, y64) <= 1e-5
    assert rel(dx, dx64) <= 1e-5
    assert rel(layer.weight.grad, ref.weight.grad) <= 1e-5
    assert rel(layer.running_var, ref.running_var) <= 1e-5
    assert rel(layer.running_mean, ref.running_mean) <= 1e-6


def test_repr_defaults_and_reset():
    assert repr(InstanceNorm1d(3)) == "InstanceNorm1d(3)"
    assert repr(InstanceNorm2d(3, eps=1e-3, momentum=None, affine=True, bias=False,
                               track_running_stats=True)) == \
        "InstanceNorm2d(3, eps=0.001, momentum=None, affine=True, bias=False, " \
        "track_running_stats=True)"
    layer = InstanceNorm1d(3)
    assert layer.weight is None and layer.running_mean is None and layer.state_dict() == {}
    tracked = InstanceNorm1d(3, track_running_stats=True)
    tracked(np.random.default_rng(9).standard_normal((2, 3, 4)).astype(np.float32) + 3)
    tracked.reset_running_stats()
    np.testing.assert_array_equal(tracked.running_mean, 0)
    np.testing.assert_array_equal(tracked.running_var, 1)


def test_negative_running_var_is_refused():
    layer = InstanceNorm1d(2, track_running_stats=True)
    sd = layer.state_dict()
    sd["running_var"] = np.array([1.0, -0.5], dtype=np.float32)
    with pytest.raises(StateDictError, match="'running_var' holds a negative value"):
        layer.load_state_dict(sd)


# ----- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    (dict(num_features=0), "InstanceNorm1d: num_features=0; expected an int >= 1"),
    (dict(num_features=3, eps=0.0), "eps=0.0; expected a finite number > 0"),
    (dict(num_features=3, momentum=1.5), "momentum=1.5; expected None or a finite number in "
                                         "[0, 1]"),
    (dict(num_features=3, affine=None), "affine=None; expected True or False"),
    (dict(num_features=3, track_running_stats=1), "track_running_stats=1; expected True"),
    (dict(num_features=3, bias=0), "bias=0; expected True or False"),
    (dict(num_features=3, dtype="int8"), "expected a floating-point dtype"),
])
def test_bad_constructor_arguments(kw, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        InstanceNorm1d(**kw)


def test_wrong_input_shapes():
    one, two = InstanceNorm1d(3), InstanceNorm2d(3)
    with pytest.raises(ShapeError, match=re.escape("InstanceNorm1d(3): got a 4-D input of shape "
                                                   "(2, 3, 4, 5), expected 3-D (N, C, L) or 2-D "
                                                   "unbatched (C, L)")):
        one(np.zeros((2, 3, 4, 5), dtype=np.float32))
    with pytest.raises(ShapeError, match=re.escape("InstanceNorm2d(3): got a 2-D input of shape "
                                                   "(3, 4), expected 4-D (N, C, H, W) or 3-D "
                                                   "unbatched (C, H, W)")):
        two(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match=re.escape("InstanceNorm1d(3): got 4 channels (input "
                                                   "shape (2, 4, 5)), expected 3 channels on "
                                                   "axis 1")):
        one(np.zeros((2, 4, 5), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"got 2 channels \(input shape \(2, 3, 4\)\), expected "
                                         r"3 channels on axis 0"):  # 3-D is unbatched in 2d
        two(np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"InstanceNorm1d\(3\): expected more than 1 spatial "
                                         r"element .* got input of shape \(4, 3, 1\)$"):
        one(np.zeros((4, 3, 1), dtype=np.float32))
    one(np.ones((2, 3, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"dy of shape \(2, 3\), expected \(2, 3, 4\)"):
        one.backward(np.ones((2, 3), dtype=np.float32))


def test_read_only_running_statistics_are_copied_when_training():
    """Running statistics that arrive read-only (a memory-mapped state) are updated in the
    layer's own copies, as a writable twin's are."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 11))
    twins = [InstanceNorm1d(3, track_running_stats=True) for _ in range(2)]
    for k in ("running_mean", "running_var"):
        twins[1]._buffers[k].flags.writeable = False
    for m in twins:
        m.train()
        m(x)
    np.testing.assert_array_equal(twins[1].running_mean, twins[0].running_mean)
    np.testing.assert_array_equal(twins[1].running_var, twins[0].running_var)
    assert twins[1].running_mean.flags.writeable
