"""Linear, activations, Dropout, Flatten, Identity, Sequential and the Module API."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import ConfigError, DTypeError, ShapeError, StateDictError

from ._torch import require_torch
from .gradcheck import check_module_grads

ACTS = [
    (lambda: nn.ReLU(), "relu", {}),
    (lambda: nn.LeakyReLU(0.2), "leaky_relu", {"negative_slope": 0.2}),
    (lambda: nn.Sigmoid(), "sigmoid", {}),
    (lambda: nn.Tanh(), "tanh", {}),
    (lambda: nn.GELU(), "gelu", {}),
    (lambda: nn.GELU("tanh"), "gelu", {"approximate": "tanh"}),
]


@pytest.mark.parametrize("make", [a[0] for a in ACTS] + [nn.Identity, nn.Flatten])
def test_gradcheck_elementwise(make):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the ReLU kink
    check_module_grads(make(), x)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_linear(shape, bias):
    rng = np.random.default_rng(1)
    check_module_grads(nn.Linear(7, 4, bias=bias, rng=rng), rng.standard_normal(shape))


def test_gradcheck_dropout_in_training():
    rng = np.random.default_rng(2)
    check_module_grads(nn.Dropout(0.3, rng=rng), rng.standard_normal((6, 5)))


def test_gradcheck_sequential_mlp_with_bn():
    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Linear(6, 5, rng=rng), nn.BatchNorm1d(5, gamma_init="normal",
                          beta_init="normal", rng=rng), nn.Tanh(), nn.Linear(5, 3, rng=rng))
    check_module_grads(model, rng.standard_normal((7, 6)))


@pytest.mark.parametrize("make,name,kw", ACTS)
def test_activation_parity(make, name, kw):
    torch = require_torch()
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((8, 9)) * 4).astype(np.float32)
    x[0, :3] = [60.0, -60.0, 0.5]  # sigmoid saturation must not overflow
    dy = rng.standard_normal(x.shape).astype(np.float32)
    layer = make()
    y = layer(x)
    dx = layer.backward(dy)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = getattr(torch.nn.functional, name)(tx, **kw)
    ty.backward(torch.from_numpy(dy))
    # the project's parity measure: max |ours − torch| / max |torch| ≤ 1e-5 (float32)
    for a, b in [(y, ty.detach().numpy()), (dx, tx.grad.numpy())]:
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
    assert y.dtype == np.float32 and dx.dtype == np.float32


def test_linear_parity_and_layout():
    torch = require_torch()
    rng = np.random.default_rng(5)
    ours = nn.Linear(10, 6, rng=rng)
    assert ours.weight.shape == (6, 10)
    ref = torch.nn.Linear(10, 6)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((5, 10)).astype(np.float32)
    dy = rng.standard_normal((5, 6)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = ref(tx)
    ty.backward(torch.from_numpy(dy))
    y = ours(x)
    dx = ours.backward(dy)
    for a, b in [(y, ty), (dx, tx.grad), (ours.weight.grad, ref.weight.grad),
                 (ours.bias.grad, ref.bias.grad)]:
        b = b.detach().numpy()
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()


def test_linear_default_init_matches_torch_distribution():
    lin = nn.Linear(300, 200, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(300)
    assert np.abs(lin.weight.data).max() <= bound and np.abs(lin.bias.data).max() <= bound
    assert lin.weight.data.std() == pytest.approx(bound / np.sqrt(3), rel=0.03)


def test_dropout_scales_and_eval_is_identity():
    d = nn.Dropout(0.25, rng=np.random.default_rng(0))
    x = np.ones((200, 100), dtype=np.float32)
    y = d(x)
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert (y == 0).mean() == pytest.approx(0.25, abs=0.01)
    assert np.array_equal(d.backward(x), y)
    d.eval()
    assert d(x) is x
    with pytest.raises(ConfigError, match=r"Dropout: p=1.5; expected a probability"):
        nn.Dropout(1.5)


def test_gradients_accumulate_until_zero_grad():
    rng = np.random.default_rng(6)
    lin = nn.Linear(3, 2, rng=rng)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    lin(x)
    lin.backward(dy)
    g1 = lin.weight.grad.copy()
    lin(x)
    lin.backward(dy)
    np.testing.assert_allclose(lin.weight.grad, 2 * g1, rtol=1e-6)
    lin.zero_grad()
    assert lin.weight.grad is None


def test_frozen_parameter_gets_no_grad():
    lin = nn.Linear(3, 2, rng=np.random.default_rng(0))
    lin.weight.requires_grad = False
    lin(np.ones((2, 3), dtype=np.float32))
    lin.backward(np.ones((2, 2), dtype=np.float32))
    assert lin.weight.grad is None and lin.bias.grad is not None


def test_module_api_names_modes_and_state_dict():
    rng = np.random.default_rng(7)
    model = nn.Sequential(nn.Linear(4, 3, rng=rng), nn.BatchNorm1d(3), nn.ReLU(),
                          nn.Dropout(0.1, rng=rng), nn.Linear(3, 2, rng=rng))
    assert [n for n, _ in model.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert [n for n, _ in model.named_buffers()] == [
        "1.running_mean", "1.running_var", "1.num_batches_tracked"]
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    sd = model.state_dict()
    other = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(3, 2))
    other.load_state_dict(sd)
    for k, v in other.state_dict().items():
        assert np.array_equal(v, sd[k])
    sd["0.weight"][...] = 99  # state_dict returns copies
    assert not np.any(model[0].weight.data == 99)
    assert model.num_parameters() == 4 * 3 + 3 + 3 + 3 + 3 * 2 + 2


def test_load_state_dict_errors_name_the_key():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    sd = model.state_dict()
    bad = dict(sd, **{"0.weight": np.zeros((3, 5), dtype=np.float32)})
    with pytest.raises(StateDictError, match=r"'0.weight' has shape \(3, 5\).*expects \(3, 4\)"):
        model.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "1.running_var"}
    with pytest.raises(StateDictError, match=r"missing keys \['1.running_var'\]"):
        model.load_state_dict(missing)
    with pytest.raises(StateDictError, match=r"unexpected keys \['2.weight'\]"):
        model.load_state_dict(dict(sd, **{"2.weight": np.zeros(3)}))
    assert model.load_state_dict(missing, strict=False) == (["1.running_var"], [])


def test_linear_errors():
    lin = nn.Linear(4, 3)
    with pytest.raises(ShapeError, match=r"Linear\(in_features=4.*got input of shape \(2, 5\), "
                                         r"expected \(\*, 4\)"):
        lin(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(DTypeError, match="dtype int64, expected a floating-point array"):
        lin(np.zeros((2, 4), dtype=np.int64))


def test_float64_input_into_float32_model_is_cast_not_promoted():
    lin = nn.Linear(4, 3, rng=np.random.default_rng(0))
    assert lin(np.ones((2, 4))).dtype == np.float32


def test_no_grad_keeps_no_cache():
    lin = nn.Linear(4, 3)
    with nn.no_grad():
        lin(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        lin.backward(np.ones((2, 3), dtype=np.float32))


def test_forward_hooks_see_input_and_output_and_can_be_removed():
    model = nn.Sequential(nn.Linear(3, 2, rng=np.random.default_rng(0)), nn.ReLU())
    seen = []
    handle = model[1].register_forward_hook(lambda m, x, y: seen.append((m, x.shape, y.min())))
    model(np.ones((4, 3), dtype=np.float32))
    assert len(seen) == 1 and seen[0][0] is model[1] and seen[0][1] == (4, 2)
    assert seen[0][2] >= 0
    handle.remove()
    model(np.ones((4, 3), dtype=np.float32))
    assert len(seen) == 1


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (5,), (3, 7), (3, 1 << 16), (1 << 16, 2), (2, 33, 1000)])
def test_relu_blockwise_maximum_is_bit_for_bit_maximum(shape, dtype):
    """ReLU compares C-contiguous inputs with a cached zero block (NumPy's SIMD loop), in
    blocks of 2**16: the same bits as maximum(x, 0), -0.0, NaN of either sign and ±inf
    included, across block boundaries."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    special = np.array([-0.0, 0.0, np.nan, -np.nan, -np.inf, np.inf], dtype=dtype)
    flat = x.reshape(-1)
    for i, pos in enumerate(range(0, flat.size, max(1, flat.size // 7))):
        flat[pos] = special[i % special.size]
    relu = nn.ReLU()
    y = relu(x)
    want = np.maximum(x, 0)
    assert y.dtype == want.dtype and y.shape == want.shape
    assert np.array_equal(y.view(np.uint8), want.view(np.uint8))
    # the backward keeps its rule on the block path's output
    dy = rng.standard_normal(shape).astype(dtype)
    assert np.array_equal(relu.backward(dy), dy * (want > 0))


def test_relu_of_a_strided_input_and_the_shared_zero_block():
    """A non-contiguous input takes plain maximum; the shared zero block stays zero."""
    from gammabeta.nn import activations

    x = np.random.default_rng(4).standard_normal((64, 40)).astype(np.float32)[:, ::3]
    assert np.array_equal(nn.ReLU()(x), np.maximum(x, 0))
    nn.ReLU()(np.ones((10,), np.float32))
    block = activations._zero_blocks[np.dtype(np.float32)]
    assert not block.flags.writeable and not block.any()
