"""The checker's float64 references, value by value against PyTorch: batch, spatial batch,
layer and group normalization (forward, dx, dγ, dβ), evaluation and the running update."""

from __future__ import annotations

import numpy as np
import pytest

from gammabeta.check.epsilon import estimate_eps
from gammabeta.check.reference import NORMS, eval_ref, running_after, train_ref

from ._torch import require_torch

pytestmark = pytest.mark.torch


def _torch_out(torch, kind, x, g, b, eps, groups):
    F = torch.nn.functional
    if kind in ("batchnorm", "spatial_batchnorm"):
        return F.batch_norm(x, None, None, g, b, training=True, eps=eps)
    if kind == "layernorm":
        return F.layer_norm(x, x.shape[1:], g, b, eps=eps)
    return F.group_norm(x, groups, g.reshape(-1), b.reshape(-1), eps=eps)


@pytest.mark.parametrize("kind, shape, groups", [
    ("batchnorm", (8, 3), 1), ("batchnorm", (4, 3, 2, 5), 1),
    ("spatial_batchnorm", (3, 4, 3, 5), 1), ("layernorm", (4, 7), 1),
    ("groupnorm", (2, 6, 3, 4), 2), ("groupnorm", (3, 6, 2, 2), 3)])
def test_train_reference_matches_torch(kind, shape, groups):
    torch = require_torch()
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)
    c = shape[1]
    g, b = rng.uniform(0.5, 2, c), rng.normal(size=c)  # never ones and zeros
    dy = rng.normal(size=shape)
    eps = 1e-3
    ref = train_ref(x, g, b, eps, dy, norm=NORMS[kind], groups=groups)
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(g, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    y = _torch_out(torch, kind, xt, gt, bt, eps, groups)
    y.backward(torch.tensor(dy))
    np.testing.assert_allclose(ref["y"], y.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref["dx"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ref["dgamma"], gt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ref["dbeta"], bt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_eval_and_running_update_match_torch():
    torch = require_torch()
    rng = np.random.default_rng(4)
    c = 3
    bn = torch.nn.BatchNorm1d(c, eps=1e-4, momentum=0.3, dtype=torch.float64)
    g, b = rng.uniform(0.5, 2, c), rng.normal(size=c)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(g))
        bn.bias.copy_(torch.tensor(b))
    batches = [rng.normal(size=(6, c)) * 2 + 1 for _ in range(3)]
    for xb in batches:
        bn(torch.tensor(xb))
    rm, rv = running_after(batches, w=0.3)
    np.testing.assert_allclose(rm, bn.running_mean.numpy(), rtol=1e-13)
    np.testing.assert_allclose(rv, bn.running_var.numpy(), rtol=1e-13)
    xe = rng.normal(size=(5, c))
    want = bn.eval()(torch.tensor(xe)).detach().numpy()
    np.testing.assert_allclose(eval_ref(xe, g, b, 1e-4, rm, rv), want, rtol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 1e-8, 1e-5, 0.01])
def test_the_eps_a_forward_pass_uses_is_read_back(eps):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 3)) * 0.04 + rng.uniform(-1, 1, 3)
    g, b = rng.uniform(0.5, 2, 3), rng.normal(size=3)
    y = train_ref(x, g, b, eps)["y"]
    got, model = estimate_eps(x, y, g, b, NORMS["batchnorm"])
    assert model == "inside"
    assert got == pytest.approx(eps, rel=1e-6, abs=1e-13)
    xc = x - x.mean(0)
    y_out = g * xc / (x.std(0) + 0.01) + b  # ε added to σ: recognized as such
    assert estimate_eps(x, y_out, g, b, NORMS["batchnorm"])[1] == "outside"
