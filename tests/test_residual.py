"""Residual blocks, zero-γ initialization, and BatchNorm2d parity with PyTorch on conv shapes."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import ShapeError
from gammabeta.nn.conv import Conv2d
from gammabeta.nn.pool import AdaptiveAvgPool2d
from gammabeta.nn.residual import Residual, last_batchnorm, zero_init_residual_

from ._torch import require_torch
from .gradcheck import check_module_grads


def basic_block(c_in, c_out, rng, stride=1):
    """Conv–BN–ReLU–Conv–BN (ResNet's basic block) with a projection when the shape changes."""
    block = nn.Sequential(Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, rng=rng),
                          nn.BatchNorm2d(c_out), nn.ReLU(),
                          Conv2d(c_out, c_out, 3, padding=1, bias=False, rng=rng),
                          nn.BatchNorm2d(c_out))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(Conv2d(c_in, c_out, 1, stride=stride, bias=False, rng=rng),
                                 nn.BatchNorm2d(c_out))
    return Residual(block, shortcut)


# ----- gradients -----------------------------------------------------------------------------
def test_backward_adds_both_paths_exactly():
    rng = np.random.default_rng(0)
    lin = nn.Linear(4, 4, rng=rng)
    res = Residual(lin)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    dy = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(res(x), lin(x) + x)
    dx = res.backward(dy)
    np.testing.assert_allclose(dx, dy @ lin.weight.data + dy, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make,shape", [
    (lambda rng: Residual(nn.Linear(5, 5, rng=rng)), (3, 5)),
    (lambda rng: Residual(nn.Sequential(nn.Linear(5, 4, rng=rng), nn.Tanh(),
                                        nn.Linear(4, 3, rng=rng)),
                          nn.Linear(5, 3, rng=rng)), (4, 5)),
    (lambda rng: Residual(nn.Sequential(Conv2d(2, 2, 3, padding=1, rng=rng), nn.Tanh(),
                                        Conv2d(2, 2, (3, 2), padding="same", rng=rng))),
     (2, 2, 5, 4)),
    (lambda rng: Residual(Conv2d(2, 3, 3, stride=2, padding=1, rng=rng),
                          Conv2d(2, 3, 1, stride=2, rng=rng)), (2, 2, 5, 5)),
])
def test_gradcheck(make, shape):
    rng = np.random.default_rng(1)
    check_module_grads(make(rng), rng.standard_normal(shape))


def test_gradcheck_basic_blocks_with_batchnorm():
    rng = np.random.default_rng(2)
    net = nn.Sequential(basic_block(2, 2, rng), nn.ReLU(), basic_block(2, 3, rng, stride=2))
    for m in net.modules():  # random γ/β so that no gradient path is hidden
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.num_features)
            m.bias.data[...] = rng.standard_normal(m.num_features)
    check_module_grads(net, rng.standard_normal((3, 2, 5, 5)))


# ----- structure -----------------------------------------------------------------------------
def test_state_dict_keys():
    rng = np.random.default_rng(3)
    r = basic_block(2, 4, rng, stride=2)
    keys = list(r.state_dict())
    assert keys[:2] == ["block.0.weight", "block.1.weight"]
    assert "block.4.running_var" in keys and "shortcut.0.weight" in keys
    assert "shortcut.1.num_batches_tracked" in keys
    assert list(Residual(nn.Linear(2, 2)).state_dict()) == ["block.weight", "block.bias"]
    assert Residual(nn.Linear(2, 2)).shortcut is None


def test_state_dict_keys_match_pytorch():
    torch = require_torch()

    class TorchResidual(torch.nn.Module):
        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block, self.shortcut = block, shortcut

    tn = torch.nn
    ref = TorchResidual(tn.Sequential(tn.Conv2d(2, 4, 3, 2, 1, bias=False), tn.BatchNorm2d(4),
                                      tn.ReLU(), tn.Conv2d(4, 4, 3, 1, 1, bias=False),
                                      tn.BatchNorm2d(4)),
                        tn.Sequential(tn.Conv2d(2, 4, 1, 2, bias=False), tn.BatchNorm2d(4)))
    ours = basic_block(2, 4, np.random.default_rng(4), stride=2)
    sd, tsd = ours.state_dict(), ref.state_dict()
    assert list(sd) == list(tsd)
    assert all(sd[k].shape == tuple(tsd[k].shape) for k in sd)


def test_shape_mismatch_is_reported():
    with pytest.raises(ShapeError, match=r"Residual\(Linear\(in_features=4, out_features=3.*"
                                         r"maps \(2, 4\) to \(2, 3\) but the shortcut gives "
                                         r"\(2, 4\); expected equal shapes"):
        Residual(nn.Linear(4, 3))(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="expected a Module"):
        Residual(lambda x: x)


# ----- zero-γ initialization -----------------------------------------------------------------
def test_last_batchnorm():
    rng = np.random.default_rng(5)
    r = basic_block(2, 2, rng)
    assert last_batchnorm(r.block) is r.block[4]
    seq = nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 2), nn.BatchNorm1d(2), nn.ReLU())
    assert last_batchnorm(seq) is seq[2]
    assert last_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) is None


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_zero_init_makes_each_block_the_identity(mode):
    rng = np.random.default_rng(6)
    blocks = [basic_block(4, 4, rng) for _ in range(3)]
    net = nn.Sequential(Conv2d(3, 4, 3, padding=1, rng=rng), *blocks, AdaptiveAvgPool2d(1))
    # a block without BatchNorm is left alone and not counted
    extra = Residual(nn.Sequential(Conv2d(4, 4, 1, rng=rng), nn.ReLU()))
    net.append(nn.Flatten()).append(extra)
    assert zero_init_residual_(net) == 3
    for b in blocks:
        assert not b.block[4].weight.data.any() and b.block[1].weight.data.all()
    getattr(net, mode)()
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    for b in blocks:
        y = b(x)
        assert y.dtype == x.dtype and np.array_equal(y, x)
        x = y
    # the zeroed γ still receives a gradient, so the blocks can leave the identity
    blocks[0].backward(np.ones_like(x))
    assert np.abs(blocks[0].block[4].weight.grad).max() > 0


# ----- BatchNorm2d parity on conv shapes -----------------------------------------------------
def _rel(a, ref, floor=0.0):
    ref = np.asarray(ref)
    return float(np.abs(np.asarray(a, np.float64) - ref).max()
                 / max(np.abs(ref).max(), floor, 1e-30))


@pytest.mark.parametrize("shape,kw", [((2, 3, 4, 5), {}), ((2, 4, 1, 1), {}),
                                      ((5, 6, 3, 7), dict(momentum=None)),
                                      ((8, 2, 2, 3), dict(momentum=0.3, eps=1e-3))])
def test_batchnorm2d_parity_with_pytorch(shape, kw):
    torch = require_torch()
    rng = np.random.default_rng(7)
    c = shape[1]
    ours = nn.BatchNorm2d(c, gamma_init="normal(mean=1, std=0.5)", beta_init="normal", rng=rng,
                          **kw)
    ref = torch.nn.BatchNorm2d(c, **kw)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.weight.data))
        ref.bias.copy_(torch.from_numpy(ours.bias.data))
    for _step in range(3):
        scale = rng.uniform(0.5, 3, c).reshape(1, c, 1, 1)
        x = (rng.standard_normal(shape) * scale + 2).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        ours.zero_grad()
        ref.zero_grad()
        y = ours(x)
        dx = ours.backward(dy)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = ref(tx)
        ty.backward(torch.from_numpy(dy))
        assert _rel(y, ty.detach().numpy()) <= 1e-5
        # dx = γ/σ·(dy − mean(dy) − x̂·mean(dy·x̂)) cancels heavily for tiny batches (N·H·W = 2:
        # x̂ = ±1 and dx is ~0 up to rounding), so |dx_ref| is no scale for its float32 error;
        # measure against the size of the terms that cancel, |dy|max·|γ|max/√(min σ²) instead
        var = x.var(axis=(0, 2, 3))
        floor = np.abs(dy).max() * np.abs(ours.weight.data).max() / np.sqrt(var.min() + ours.eps)
        assert _rel(dx, tx.grad.numpy(), floor) <= 1e-5
        assert _rel(ours.weight.grad, ref.weight.grad.numpy()) <= 1e-5
        assert _rel(ours.bias.grad, ref.bias.grad.numpy()) <= 1e-5
    assert _rel(ours.running_mean, ref.running_mean.numpy()) <= 1e-5
    assert _rel(ours.running_var, ref.running_var.numpy()) <= 1e-5
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ours.eval()
    ref.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    assert _rel(ours(x), ref(torch.from_numpy(x)).detach().numpy()) <= 1e-5
