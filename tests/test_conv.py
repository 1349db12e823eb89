"""Conv1d/Conv2d: gradient checks, PyTorch parity, initialization and every bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gammabeta.errors import ConfigError, DTypeError, ShapeError
from gammabeta.nn.conv import Conv1d, Conv2d
from gammabeta.nn.module import no_grad

from ._torch import require_torch
from .gradcheck import check_module_grads

# (constructor arguments, input shape): stride 2, padding, dilation 2, non-square kernels,
# groups 2, depthwise, bias off, "same" with even kernels, padding wider than the kernel,
# odd lengths and unbatched inputs; stride 1 and stride > 1 take different dx code paths
CONV2D_CASES = [
    (dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=1, dilation=2,
          groups=2), (2, 4, 9, 8)),
    (dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4), (2, 4, 7, 5)),
    (dict(in_channels=3, out_channels=5, kernel_size=(2, 3), stride=(2, 1), bias=False),
     (2, 3, 7, 6)),
    (dict(in_channels=2, out_channels=3, kernel_size=(4, 2), padding="same", dilation=(1, 2)),
     (1, 2, 6, 5)),
    (dict(in_channels=2, out_channels=4, kernel_size=3, stride=3, padding=(1, 0), groups=2),
     (2, 2, 8, 7)),
    (dict(in_channels=2, out_channels=2, kernel_size=2, padding=(3, 1), dilation=(1, 2)),
     (1, 2, 3, 5)),
    (dict(in_channels=4, out_channels=6, kernel_size=(2, 3), padding=(0, 1), groups=2),
     (2, 4, 5, 6)),
    (dict(in_channels=3, out_channels=2, kernel_size=(1, 3), padding="valid"), (3, 4, 5)),
]

CONV1D_CASES = [
    (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=2, dilation=2,
          groups=2), (3, 4, 11)),
    (dict(in_channels=3, out_channels=3, kernel_size=5, padding="same", groups=3), (2, 3, 9)),
    (dict(in_channels=2, out_channels=3, kernel_size=4, padding="same", bias=False), (2, 2, 7)),
    (dict(in_channels=2, out_channels=3, kernel_size=2, padding=3), (2, 2, 3)),
    (dict(in_channels=3, out_channels=4, kernel_size=3, stride=3, dilation=2), (3, 13)),
]


@pytest.mark.parametrize("kw,shape", CONV2D_CASES)
def test_conv2d_gradcheck(kw, shape):
    rng = np.random.default_rng(0)
    check_module_grads(Conv2d(**kw, rng=rng), rng.standard_normal(shape))


@pytest.mark.parametrize("kw,shape", CONV1D_CASES)
def test_conv1d_gradcheck(kw, shape):
    rng = np.random.default_rng(1)
    check_module_grads(Conv1d(**kw, rng=rng), rng.standard_normal(shape))


def _rel(a, ref):
    ref = np.asarray(ref)
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def _copy_to_torch(ours, ref, torch):
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.weight.data))
        if ours.bias is not None:
            ref.bias.copy_(torch.from_numpy(ours.bias.data))


PARITY_2D = CONV2D_CASES + [
    (dict(in_channels=8, out_channels=16, kernel_size=3, padding=1), (4, 8, 15, 13)),
    (dict(in_channels=6, out_channels=6, kernel_size=(5, 3), stride=(1, 2), padding=(2, 1),
          groups=6, bias=False), (3, 6, 12, 11)),
    (dict(in_channels=8, out_channels=4, kernel_size=1, stride=2), (2, 8, 9, 9)),
]
PARITY_1D = CONV1D_CASES + [
    (dict(in_channels=8, out_channels=12, kernel_size=7, stride=2, padding=3, groups=4),
     (4, 8, 31)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("cls,kw,shape", [(Conv2d, kw, s) for kw, s in PARITY_2D]
                         + [(Conv1d, kw, s) for kw, s in PARITY_1D])
def test_parity_with_pytorch(cls, kw, shape):
    torch = require_torch()
    rng = np.random.default_rng(2)
    ours = cls(**kw, rng=rng)
    ref = getattr(torch.nn, cls.__name__)(**kw)
    _copy_to_torch(ours, ref, torch)
    assert tuple(ref.weight.shape) == ours.weight.shape
    for _step in range(2):  # two steps: gradients accumulate in both libraries
        x = rng.standard_normal(shape).astype(np.float32)
        y = ours(x)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = ref(tx)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = ours.backward(dy)
        ty.backward(torch.from_numpy(dy))
        assert y.dtype == dx.dtype == np.float32
        assert y.shape == tuple(ty.shape) and dx.shape == x.shape
        assert _rel(y, ty.detach().numpy()) <= 1e-5
        assert _rel(dx, tx.grad.numpy()) <= 1e-5
    assert _rel(ours.weight.grad, ref.weight.grad.numpy()) <= 1e-5
    if ours.bias is not None:
        assert _rel(ours.bias.grad, ref.bias.grad.numpy()) <= 1e-5


def test_state_dict_matches_pytorch():
    torch = require_torch()
    ours = Conv2d(6, 4, (3, 2), groups=2)
    ref = torch.nn.Conv2d(6, 4, (3, 2), groups=2)
    sd, tsd = ours.state_dict(), ref.state_dict()
    assert list(sd) == list(tsd) == ["weight", "bias"]
    assert all(sd[k].shape == tuple(tsd[k].shape) for k in sd)
    ours.load_state_dict({k: v.numpy() for k, v in tsd.items()})
    x = np.random.default_rng(3).standard_normal((2, 6, 5, 4)).astype(np.float32)
    assert _rel(ours(x), ref(torch.from_numpy(x)).detach().numpy()) <= 1e-5


@pytest.mark.parametrize("cls,k,groups", [(Conv2d, (3, 2), 1), (Conv2d, 3, 4), (Conv1d, 5, 2)])
def test_torch_default_init_bounds(cls, k, groups):
    rng = np.random.default_rng(4)
    m = cls(8, 16, k, groups=groups, rng=rng)
    ks = (k,) * cls._nd if isinstance(k, int) else k
    assert m.weight.shape == (16, 8 // groups, *ks) and m.bias.shape == (16,)
    bound = 1 / math.sqrt(8 // groups * math.prod(ks))
    for p in (m.weight.data, m.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound
    assert np.abs(m.weight.data).max() > 0.9 * bound  # the bound is reached: same fan_in
    assert np.abs(m.bias.data).max() > 0.5 * bound


def test_named_initializers_and_dtype():
    m = Conv2d(2, 3, 3, weight_init="kaiming_normal", bias_init="zeros", dtype=np.float64,
               rng=np.random.default_rng(5))
    assert m.weight.dtype == np.float64 and not m.bias.data.any()
    y = m(np.ones((1, 2, 4, 4), dtype=np.float32))  # float32 input is cast to W's dtype
    assert y.dtype == np.float64 and y.shape == (1, 3, 2, 2)


def test_same_and_valid_padding_shapes():
    x = np.zeros((2, 3, 10, 7), dtype=np.float32)
    assert Conv2d(3, 4, (4, 3), padding="same", dilation=2)(x).shape == (2, 4, 10, 7)
    assert Conv2d(3, 4, (4, 3), padding="valid")(x).shape == (2, 4, 7, 5)
    assert Conv1d(3, 4, 6, padding="same")(x[:, :, 0]).shape == (2, 4, 7)


def test_frozen_weight_and_no_grad():
    rng = np.random.default_rng(6)
    m = Conv2d(2, 3, 3, padding=1, rng=rng)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    m(x)
    dx_ref = m.backward(np.ones((2, 3, 5, 5), np.float32))
    m.zero_grad()
    m.weight.requires_grad = False
    m(x)
    dx = m.backward(np.ones((2, 3, 5, 5), np.float32))
    assert m.weight.grad is None and m.bias.grad is not None
    np.testing.assert_array_equal(dx, dx_ref)
    with no_grad():
        m(x)
    with pytest.raises(RuntimeError, match=r"Conv2d\(2, 3.*no cached forward"):
        m.backward(np.ones((2, 3, 5, 5), np.float32))


# ----- errors --------------------------------------------------------------------------------
def test_wrong_rank():
    with pytest.raises(ShapeError, match=r"Conv2d\(4, 6.*got a 2-D input.*expected 4-D "
                                         r"\(N, C, H, W\)"):
        Conv2d(4, 6, 3)(np.zeros((4, 6), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"Conv1d\(4, 6.*got a 4-D input.*expected 3-D "
                                         r"\(N, C, L\)"):
        Conv1d(4, 6, 3)(np.zeros((1, 4, 6, 6), dtype=np.float32))


def test_wrong_in_channels():
    with pytest.raises(ShapeError, match=r"Conv2d\(4, 6.*got 3 input channels.*expected 4 "
                                         r"channels"):
        Conv2d(4, 6, 3)(np.zeros((2, 3, 8, 8), dtype=np.float32))


def test_input_smaller_than_kernel():
    with pytest.raises(ShapeError, match=r"Conv2d\(1, 1.*\(3, 4\).*smaller than the dilated "
                                         r"kernel; expected at least \(5, 5\)"):
        Conv2d(1, 1, 5)(np.zeros((1, 1, 3, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"Conv1d.*expected at least \(5,\)"):
        Conv1d(1, 1, 3, dilation=2)(np.zeros((1, 1, 4), dtype=np.float32))
    Conv1d(1, 1, 3, dilation=2, padding=1)(np.zeros((1, 1, 3), dtype=np.float32))  # padded: ok


@pytest.mark.parametrize("args,kw,match", [
    ((4, 6, 3), dict(groups=4), r"Conv2d: in_channels=4 and out_channels=6 must both be "
                                r"divisible by groups=4"),
    ((3, 6, 3), dict(groups=2), r"divisible by groups=2"),
    ((4, 6, 3), dict(padding="same", stride=2), r"padding='same' needs stride 1"),
    ((4, 6, 3), dict(padding="full"), r"padding='full'; expected 'same', 'valid'"),
    ((4, 6, 0), dict(), r"kernel_size=0; expected values >= 1"),
    ((4, 6, (3, 3, 3)), dict(), r"kernel_size=\(3, 3, 3\); expected an int or 2 ints"),
    ((4, 6, 3), dict(padding=-1), r"padding=-1; expected values >= 0"),
    ((0, 6, 3), dict(), r"expected channels and groups >= 1"),
])
def test_bad_constructor_arguments(args, kw, match):
    with pytest.raises(ConfigError, match=match):
        Conv2d(*args, **kw)


def test_bad_inputs_and_dy():
    m = Conv2d(2, 3, 3)
    with pytest.raises(DTypeError, match=r"Conv2d\(2, 3.*dtype int64, expected a floating"):
        m(np.zeros((1, 2, 5, 5), dtype=np.int64))
    m(np.zeros((1, 2, 5, 5), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"Conv2d\(2, 3.*backward: got dy of shape "
                                         r"\(1, 3, 5, 5\), expected \(1, 3, 3, 3\)"):
        m.backward(np.zeros((1, 3, 5, 5), dtype=np.float32))


@pytest.mark.parametrize("kw,shape", CONV2D_CASES[:5])
def test_large_column_gradients_are_summed_tap_by_tap(kw, shape, monkeypatch):
    """Above DCOLS_BYTES backward computes the columns' gradient one kernel tap at a time:
    the same dx, dW and db as the one-GEMM path; forward keeps only its input."""
    import gammabeta.nn.conv as conv_mod

    rng = np.random.default_rng(5)
    conv = Conv2d(**kw, rng=rng, dtype=np.float64)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(conv(x).shape)
    assert conv._cache[0] is None or conv._cache[0].base is x or conv._cache[0] is x
    small = [conv.backward(dy)] + [p.grad.copy() for p in conv.parameters()]
    conv.zero_grad()
    monkeypatch.setattr(conv_mod, "DCOLS_BYTES", 0)
    conv(x)
    large = [conv.backward(dy)] + [p.grad.copy() for p in conv.parameters()]
    for a, b in zip(small, large, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
