"""Max/average/adaptive pooling: gradient checks, PyTorch parity, tie rule and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from gammabeta.errors import ConfigError, DTypeError, ShapeError
from gammabeta.nn.pool import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)

from ._torch import require_torch
from .gradcheck import check_module_grads

# (layer class name, constructor arguments, input shape); odd sizes, overlapping windows
# (stride < kernel), padding, non-square kernels and unbatched inputs
CASES = [
    ("MaxPool2d", dict(kernel_size=2), (2, 3, 6, 4)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1), (2, 2, 7, 6)),
    ("MaxPool2d", dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0)), (1, 2, 5, 7)),
    ("MaxPool2d", dict(kernel_size=2, stride=1), (3, 5, 5)),
    ("MaxPool1d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 9)),
    ("MaxPool1d", dict(kernel_size=2), (3, 7)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1), (2, 2, 7, 6)),
    ("AvgPool2d", dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1),
                       count_include_pad=False), (2, 3, 7, 5)),
    ("AvgPool2d", dict(kernel_size=2), (3, 5, 4)),
    ("AvgPool1d", dict(kernel_size=4, stride=3, padding=2, count_include_pad=False),
     (2, 3, 11)),
    ("AvgPool1d", dict(kernel_size=3, stride=1, padding=1), (2, 9)),
    ("AdaptiveAvgPool2d", dict(output_size=1), (2, 3, 5, 7)),
    ("AdaptiveAvgPool2d", dict(output_size=(3, 2)), (2, 2, 7, 5)),
    ("AdaptiveAvgPool2d", dict(output_size=(None, 4)), (2, 5, 3)),
    ("AdaptiveAvgPool2d", dict(output_size=(6, 3)), (1, 2, 4, 5)),  # more outputs than inputs
    ("AdaptiveAvgPool1d", dict(output_size=1), (2, 3, 9)),
    ("AdaptiveAvgPool1d", dict(output_size=4), (2, 3, 11)),
    ("AdaptiveAvgPool1d", dict(output_size=5), (3, 3)),
]
_CLASSES = {c.__name__: c for c in (MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d,
                                    AdaptiveAvgPool1d, AdaptiveAvgPool2d)}


@pytest.mark.parametrize("name,kw,shape", CASES)
def test_gradcheck(name, kw, shape):
    rng = np.random.default_rng(0)
    check_module_grads(_CLASSES[name](**kw), rng.standard_normal(shape))


def _rel(a, ref):
    ref = np.asarray(ref)
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


PARITY = CASES + [
    ("MaxPool2d", dict(kernel_size=3, stride=2), (4, 8, 15, 13)),
    ("AvgPool2d", dict(kernel_size=5, stride=3, padding=2), (4, 8, 16, 13)),
    ("AdaptiveAvgPool2d", dict(output_size=(5, 7)), (4, 8, 16, 13)),
]


@pytest.mark.parametrize("integers", [False, True])
@pytest.mark.parametrize("name,kw,shape", PARITY)
def test_parity_with_pytorch(name, kw, shape, integers):
    # integer-valued inputs create many ties: max pooling must pick the same (first) element
    torch = require_torch()
    rng = np.random.default_rng(1)
    ours = _CLASSES[name](**kw)
    ref = getattr(torch.nn, name)(**kw)
    x = rng.standard_normal(shape).astype(np.float32)
    if integers:
        x = np.round(x)
    y = ours(x)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = ref(tx)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ours.backward(dy)
    ty.backward(torch.from_numpy(dy))
    assert y.shape == tuple(ty.shape) and y.dtype == np.float32 and dx.shape == x.shape
    assert _rel(y, ty.detach().numpy()) <= 1e-5
    assert _rel(dx, tx.grad.numpy()) <= 1e-5


def test_max_ties_route_to_first_maximum():
    x = np.array([[[[1.0, 1.0, 1.0], [1.0, 1.0, 2.0]]]])
    m = MaxPool2d(2, stride=1)
    np.testing.assert_array_equal(m(x), [[[[1.0, 2.0]]]])
    np.testing.assert_array_equal(m.backward(np.array([[[[3.0, 5.0]]]])),
                                  [[[[3.0, 0.0, 0.0], [0.0, 0.0, 5.0]]]])
    x = np.full((1, 2, 2), 7.0)  # an all-tie window: the gradient goes to its first element
    m = MaxPool1d(2)
    np.testing.assert_array_equal(m(x), [[[7.0], [7.0]]])
    np.testing.assert_array_equal(m.backward(np.ones((1, 2, 1))), [[[1.0, 0.0], [1.0, 0.0]]])


def test_max_padding_is_minus_infinity_and_avg_divisors():
    x = -np.ones((1, 1, 3))
    np.testing.assert_array_equal(MaxPool1d(3, 2, 1)(x), [[[-1.0, -1.0]]])
    np.testing.assert_array_equal(AvgPool1d(3, 2, 1)(x), [[[-2 / 3, -2 / 3]]])
    np.testing.assert_array_equal(AvgPool1d(3, 2, 1, count_include_pad=False)(x),
                                  [[[-1.0, -1.0]]])


def test_stride_defaults_to_kernel_and_repr():
    m = MaxPool2d((3, 2))
    assert m.stride == (3, 2) and m.padding == (0, 0)
    assert m(np.zeros((1, 1, 7, 5), np.float32)).shape == (1, 1, 2, 2)
    assert "count_include_pad=False" in repr(AvgPool2d(2, count_include_pad=False))
    assert repr(AdaptiveAvgPool1d(3)) == "AdaptiveAvgPool1d(output_size=3)"


def test_float64_and_float16_keep_dtype():
    for dt in (np.float64, np.float16):
        x = np.arange(16, dtype=dt).reshape(1, 1, 4, 4)
        for m in (MaxPool2d(2), AvgPool2d(2), AdaptiveAvgPool2d(1)):
            y = m(x)
            assert y.dtype == dt
            assert m.backward(np.ones_like(y)).dtype == dt


# ----- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d, AdaptiveAvgPool2d])
def test_wrong_rank_2d(cls):
    m = cls(2)
    with pytest.raises(ShapeError, match=rf"{cls.__name__}\(.*got a 2-D input of shape "
                                         r"\(4, 4\), expected 4-D \(N, C, H, W\) or 3-D"):
        m(np.zeros((4, 4), dtype=np.float32))


@pytest.mark.parametrize("cls", [MaxPool1d, AvgPool1d, AdaptiveAvgPool1d])
def test_wrong_rank_1d(cls):
    with pytest.raises(ShapeError, match=rf"{cls.__name__}\(.*got a 4-D input.*expected 3-D "
                                         r"\(N, C, L\) or 2-D \(C, L\)"):
        cls(2)(np.zeros((1, 1, 4, 4), dtype=np.float32))


def test_input_smaller_than_kernel():
    with pytest.raises(ShapeError, match=r"MaxPool2d\(kernel_size=\(3, 3\).*input spatial size "
                                         r"\(2, 5\) is smaller than the kernel"):
        MaxPool2d(3)(np.zeros((1, 1, 2, 5), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"AvgPool1d.*\(2,\) is smaller than the kernel"):
        AvgPool1d(3)(np.zeros((1, 2), dtype=np.float32))


@pytest.mark.parametrize("make,match", [
    (lambda: MaxPool2d(3, padding=2), r"MaxPool2d: padding=\(2, 2\).*expected padding at most "
                                      r"half the kernel"),
    (lambda: AvgPool1d(0), r"AvgPool1d: kernel_size=0; expected values >= 1"),
    (lambda: MaxPool1d(2, stride=0), r"MaxPool1d: stride=0; expected values >= 1"),
    (lambda: AdaptiveAvgPool2d(0), r"AdaptiveAvgPool2d: output_size=0; expected an int >= 1"),
    (lambda: AdaptiveAvgPool1d((2, 2)), r"AdaptiveAvgPool1d: output_size=\(2, 2\); expected"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_bad_input_dtype_and_dy():
    with pytest.raises(DTypeError, match=r"MaxPool2d.*dtype int32, expected a floating"):
        MaxPool2d(2)(np.zeros((1, 1, 4, 4), dtype=np.int32))
    for m in (MaxPool2d(2), AvgPool2d(2), AdaptiveAvgPool2d(3)):
        m(np.zeros((1, 1, 6, 6), dtype=np.float32))
        with pytest.raises(ShapeError, match=rf"{type(m).__name__}.*backward: got dy of shape "
                                             r"\(1, 1, 6, 6\), expected \(1, 1, 3, 3\)"):
            m.backward(np.zeros((1, 1, 6, 6), dtype=np.float32))
