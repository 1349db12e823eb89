"""FrozenBatchNorm1d/2d and freeze_batchnorm: the evaluation map in every mode, nothing moves
in training (unless γ/β are trainable), gradients, state dicts both ways, optimizers."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta import optim
from gammabeta.errors import ConfigError, ShapeError, StateDictError
from gammabeta.nn.batchrenorm import BatchRenorm1d
from gammabeta.nn.frozen_bn import FrozenBatchNorm1d, FrozenBatchNorm2d, freeze_batchnorm
from gammabeta.nn.ghostbatchnorm import GhostBatchNorm2d

from .gradcheck import check_module_grads
from .test_fold import randomize_bn

IMG = (2, 6, 6)


def build(seed=0):
    """Conv–BN2d (ghost) – ReLU – residual block with BN2d – Flatten – Linear – BN1d (renorm)
    – ReLU – Linear – BN1d, with trained running statistics and random γ/β."""
    rng = np.random.default_rng(seed)
    block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4))
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, rng=rng), GhostBatchNorm2d(4, 4), nn.ReLU(),
        nn.Residual(block, shortcut=nn.BatchNorm2d(4)), nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8, rng=rng), BatchRenorm1d(8, warmup_steps=1, ramp_steps=2),
        nn.ReLU(), nn.Linear(8, 5, rng=rng), nn.BatchNorm1d(5))
    randomize_bn(model, rng)
    for _ in range(4):
        model(rng.standard_normal((10, *IMG)).astype(np.float32) * 2 + 0.5)
    return model


def bn_modules(model):
    return [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]


def x_batch(n=6, seed=1):
    return (np.random.default_rng(seed).standard_normal((n, *IMG)) * 1.5 + 0.2) \
        .astype(np.float32)


def sgd_steps(model, steps=3, seed=2):
    rng = np.random.default_rng(seed)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        y = model(x_batch(8, int(rng.integers(1 << 30))))
        model.backward(rng.standard_normal(y.shape).astype(np.float32))
        opt.step()
    return opt


@pytest.mark.parametrize("trainable", [False, True])
def test_train_forward_equals_eval_forward_equals_the_batchnorm_eval(trainable):
    model = build()
    x = x_batch()
    ref, ref1 = model.eval()(x), model(x[:1])
    model.train()
    frozen = freeze_batchnorm(model, trainable_affine=trainable)
    assert frozen is model and not bn_modules(model)
    kinds = [type(m).__name__ for m in model.modules() if "Frozen" in type(m).__name__]
    assert kinds == ["FrozenBatchNorm2d"] * 3 + ["FrozenBatchNorm1d"] * 2
    assert model.training and model[1].training
    np.testing.assert_array_equal(model(x), ref)
    np.testing.assert_array_equal(model.eval()(x), ref)
    np.testing.assert_array_equal(model.train()(x[:1]), ref1)  # a batch of one in training


@pytest.mark.parametrize("trainable", [False, True])
def test_training_moves_neither_running_stats_nor_frozen_affine(trainable):
    model = freeze_batchnorm(build(), trainable_affine=trainable)
    frozen = [m for m in model.modules() if isinstance(m, (FrozenBatchNorm1d,
                                                            FrozenBatchNorm2d))]
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = sgd_steps(model.train())
    after = model.state_dict()
    optimized = {id(p) for g in opt.param_groups for p in g["params"]}
    for f in frozen:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert np.array_equal(getattr(f, name), before[_key(model, f, name)])
        gamma_moved = not np.array_equal(after[_key(model, f, "weight")],
                                         before[_key(model, f, "weight")])
        beta_moved = not np.array_equal(after[_key(model, f, "bias")],
                                        before[_key(model, f, "bias")])
        assert gamma_moved == beta_moved == trainable
        assert (id(f.weight) in optimized) == trainable
    assert not np.array_equal(after["0.weight"], before["0.weight"])  # the rest trains


def _key(model, layer, name):
    prefix = next(n for n, m in model.named_modules() if m is layer)
    return f"{prefix}.{name}"


def test_optimizer_built_after_freezing_has_no_gamma_beta():
    model = build()
    n_all = len(list(model.parameters()))
    freeze_batchnorm(model)
    opt = optim.SGD(model.parameters(), lr=0.1)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == n_all - 2 * 5
    assert all(p.shape != (5,) or p is model[8].bias for p in params)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("1.", "6.", "9.", "3.shortcut.", "3.block.1.")) for n in names)


@pytest.mark.parametrize("cls,shape", [(FrozenBatchNorm1d, (5, 3)), (FrozenBatchNorm1d, (4, 3, 2)),
                                       (FrozenBatchNorm2d, (3, 3, 2, 2))])
@pytest.mark.parametrize("trainable", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_gradcheck_float64(cls, shape, trainable, training):
    rng = np.random.default_rng(3)
    layer = cls(shape[1], eps=1e-3, trainable_affine=trainable)
    layer.train(training)
    state = layer.state_dict()
    state.update(weight=rng.normal(1, 0.5, shape[1]), bias=rng.normal(0, 1, shape[1]),
                 running_mean=rng.normal(0, 2, shape[1]), running_var=rng.uniform(0.2, 3, shape[1]))
    layer.load_state_dict(state)
    check_module_grads(layer, rng.standard_normal(shape) * 2 + 1)
    if not trainable:
        assert list(layer.parameters()) == []


def test_backward_is_the_batchnorm_eval_backward():
    model = build()
    bn = model[3].block[1]
    frozen = freeze_batchnorm(nn.Sequential(bn), trainable_affine=True)[0]
    x = np.random.default_rng(4).standard_normal((3, 4, 6, 6)).astype(np.float32)
    dy = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    bn.eval()
    bn.zero_grad()
    np.testing.assert_array_equal(frozen(x), bn(x))
    np.testing.assert_array_equal(frozen.backward(dy), bn.backward(dy))
    np.testing.assert_array_equal(frozen.weight.grad, bn.weight.grad)
    np.testing.assert_array_equal(frozen.bias.grad, bn.bias.grad)


@pytest.mark.parametrize("trainable", [False, True])
def test_state_dict_round_trip_with_an_unfrozen_model(trainable):
    model = build()
    x = x_batch()
    ref = model.eval()(x)
    unfrozen_state = model.state_dict()
    frozen = freeze_batchnorm(build(seed=9), trainable_affine=trainable)  # other values
    frozen.load_state_dict(unfrozen_state)  # BatchNorm checkpoint -> frozen model (strict)
    frozen_state = frozen.state_dict()
    assert list(frozen_state) == list(unfrozen_state)
    for k, v in unfrozen_state.items():
        np.testing.assert_array_equal(frozen_state[k], v)
    np.testing.assert_array_equal(frozen.train()(x), ref)
    fresh = build(seed=7)
    fresh.load_state_dict(frozen_state)  # frozen checkpoint -> BatchNorm model (strict)
    np.testing.assert_array_equal(fresh.eval()(x), ref)


def test_conversion_details():
    rng = np.random.default_rng(6)
    shared = nn.BatchNorm1d(3, affine=False, dtype=np.float64)
    shared.running_mean[...] = rng.standard_normal(3)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    model.eval()
    freeze_batchnorm(model, trainable_affine=True)
    assert model[0] is model[2] and isinstance(model[0], FrozenBatchNorm1d)
    assert model[0].weight is None and not model[0].trainable_affine
    assert model[0].running_mean.dtype == np.float64 and not model[0].training
    np.testing.assert_array_equal(model[0].running_mean, shared.running_mean)
    assert model[0].running_mean is not shared.running_mean  # copied
    root = freeze_batchnorm(nn.BatchNorm2d(2, eps=1e-3))
    assert isinstance(root, FrozenBatchNorm2d) and root.eps == 1e-3
    assert repr(root) == "FrozenBatchNorm2d(2, eps=0.001)"
    assert freeze_batchnorm(nn.ReLU()).describe() == "ReLU()"


def test_refusals():
    with pytest.raises(ConfigError, match=r"layer 1 SyncBatchNorm\(3\) is not a BatchNorm1d"):
        freeze_batchnorm(nn.Sequential(nn.BatchNorm1d(3), nn.SyncBatchNorm(3)))
    model = nn.Sequential(nn.BatchNorm1d(3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(ConfigError, match="layer 1 .*track_running_stats=False"):
        freeze_batchnorm(model)
    assert isinstance(model[0], nn.BatchNorm1d)  # nothing was replaced
    with pytest.raises(ConfigError, match="trainable_affine=True needs affine=True"):
        FrozenBatchNorm1d(3, affine=False, trainable_affine=True)
    with pytest.raises(ConfigError, match="trainable_affine"):
        freeze_batchnorm(model, trainable_affine=1)
    with pytest.raises(ConfigError, match="model is a list"):
        freeze_batchnorm([nn.BatchNorm1d(3)])
    layer = FrozenBatchNorm1d(3)
    with pytest.raises(ShapeError, match=r"got 4 channels"):
        layer(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match="expected 4-D"):
        FrozenBatchNorm2d(3)(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        layer.backward(np.ones((2, 3), dtype=np.float32))
    layer(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"dy of shape \(2, 2\)"):
        layer.backward(np.ones((2, 2), dtype=np.float32))
    state = layer.state_dict()
    state["running_var"] = np.array([1.0, -1.0, 1.0], dtype=np.float32)
    with pytest.raises(StateDictError, match="running_var"):
        layer.load_state_dict(state)
