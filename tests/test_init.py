"""Initializers: registry, fans, the variance each preset promises, γ/β presets, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gammabeta import init
from gammabeta.errors import ConfigError

from ._torch import require_torch

SHAPE = (400, 300)  # fan_in 300, fan_out 400: large enough for 2% checks on the std


def draw(spec, shape=SHAPE, seed=0, **kw):
    return init.initialize(spec, shape, np.random.default_rng(seed), dtype=np.float64, **kw)


def test_fans_follow_pytorch_convention():
    assert init.compute_fans((10, 20)) == (20, 10)
    assert init.compute_fans((8, 4, 3, 5)) == (4 * 15, 8 * 15)
    assert init.compute_fans((7,)) == (7, 7)


def test_fans_match_torch():
    torch = require_torch()
    for shape in [(10, 20), (8, 4, 3, 5), (6, 2, 7)]:
        fi, fo = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        assert init.compute_fans(shape) == (fi, fo)


def test_gain_matches_torch():
    torch = require_torch()
    for nl, p in [("relu", None), ("tanh", None), ("leaky_relu", 0.2), ("leaky_relu", None),
                  ("sigmoid", None), ("selu", None), ("linear", None)]:
        assert init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))


@pytest.mark.parametrize("spec,std", [
    ("kaiming_normal", math.sqrt(2 / 300)),
    ("kaiming_uniform", math.sqrt(2 / 300)),
    ("he_normal", math.sqrt(2 / 300)),
    ("kaiming_normal(mode='fan_out')", math.sqrt(2 / 400)),
    ("kaiming_normal(nonlinearity='leaky_relu', a=0.2)", math.sqrt(2 / 1.04 / 300)),
    ("xavier_uniform", math.sqrt(2 / 700)),
    ("glorot_normal", math.sqrt(2 / 700)),
    ("xavier_normal(gain=2.0)", 2 * math.sqrt(2 / 700)),
    ("lecun_normal", math.sqrt(1 / 300)),
    ("lecun_uniform", math.sqrt(1 / 300)),
    ("torch_default", math.sqrt(1 / 300 / 3)),
    ("variance_scaling(scale=3.0, mode='fan_avg', distribution='normal')", math.sqrt(3 / 350)),
    ("truncated_normal(std=0.3)", 0.3),
    ("normal(mean=1.0, std=0.1)", 0.1),
])
def test_preset_has_promised_std(spec, std):
    w = draw(spec)
    assert w.std() == pytest.approx(std, rel=0.02)


def test_truncated_normal_is_bounded_and_variance_corrected():
    w = draw("truncated_normal(std=2.0, bound=1.5)")
    sigma_prime = w.std()
    assert sigma_prime == pytest.approx(2.0, rel=0.02)
    assert np.abs(w).max() <= 1.5 * sigma_prime / 0.7 + 1e-9  # truncated, far below 4σ tails


def test_uniform_bounds():
    w = draw("kaiming_uniform")
    bound = math.sqrt(6 / 300)
    assert w.max() <= bound and w.min() >= -bound and w.max() > 0.99 * bound
    b = init.initialize("torch_default", (400,), np.random.default_rng(0), fan_in=300)
    assert np.abs(b).max() <= 1 / math.sqrt(300)


def test_orthogonal():
    w = draw("orthogonal", (30, 50))
    np.testing.assert_allclose(w @ w.T, np.eye(30), atol=1e-10)
    w = draw("orthogonal(gain=2.0)", (50, 30))
    np.testing.assert_allclose(w.T @ w, 4 * np.eye(30), atol=1e-10)


def test_gamma_beta_presets():
    assert np.all(draw("ones", (5,)) == 1) and np.all(draw("zeros", (5,)) == 0)
    assert np.all(draw("slimming", (5,)) == 0.5) and np.all(draw("0.5", (5,)) == 0.5)
    assert np.all(draw(0.5, (5,)) == 0.5)
    u = draw("uniform", (10000,))
    assert u.min() >= 0 and u.max() < 1 and u.mean() == pytest.approx(0.5, abs=0.02)
    d = draw("dcgan", (10000,))
    assert d.mean() == pytest.approx(1.0, abs=0.002) and d.std() == pytest.approx(0.02, rel=0.05)


def test_same_seed_same_values_and_dtype():
    a = init.initialize("kaiming_normal", (20, 10), np.random.default_rng(3))
    b = init.initialize("kaiming_normal", (20, 10), np.random.default_rng(3))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    c = init.initialize("kaiming_normal", (20, 10), np.random.default_rng(4))
    assert not np.array_equal(a, c)


def test_get_accepts_callable_and_array():
    def mine(shape, rng):
        return np.full(shape, 3.0)

    assert np.all(init.initialize(mine, (2, 3), None) == 3.0)
    arr = np.arange(6.0).reshape(2, 3)
    out = init.initialize(arr, (2, 3), None)
    assert np.array_equal(out, arr) and out is not arr
    with pytest.raises(ConfigError, match=r"array has shape \(2, 3\), expected \(3, 2\)"):
        init.initialize(arr, (3, 2), None)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown initializer 'heee'.*kaiming_normal.*zeros"):
        init.get("heee")


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match=r"'normal'.*unknown argument\(s\) \['sigma'\]"):
        init.get("normal(sigma=1)")
    with pytest.raises(ConfigError, match="cannot read the arguments"):
        init.get("normal(1, 2)")
    with pytest.raises(ConfigError, match="mode='fan_middle'"):
        draw("kaiming_normal(mode='fan_middle')")
    with pytest.raises(ConfigError, match="unknown nonlinearity 'swish'"):
        init.calculate_gain("swish")


def test_bad_callable_results_are_refused():
    with pytest.raises(ConfigError, match=r"returned shape \(2,\), expected \(3,\)"):
        init.initialize(lambda shape, rng: np.zeros(2), (3,), None)
    with pytest.raises(ConfigError, match="non-finite"):
        init.initialize(lambda shape, rng: np.full(shape, np.nan), (3,), None)
