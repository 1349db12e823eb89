"""Backward without the gradient of the input (the training loop's call): the same parameter
gradients as the full backward, ``None`` for dx, and user modules still work."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.nn.sequential import backward_params_only


def _grads(model):
    return {k: p.grad.copy() for k, p in model.named_parameters()}


def _models(rng):
    bn = dict(gamma_init="normal", beta_init="normal", rng=rng)
    return {
        "mlp": (nn.Sequential(nn.Linear(6, 5, bias=False, rng=rng), nn.BatchNorm1d(5, **bn),
                              nn.ReLU(), nn.Dropout(0.0), nn.Linear(5, 3, rng=rng)), (7, 6)),
        "cnn, reshape first": (nn.Sequential(nn.Unflatten(1, (1, 12)),
                                             nn.Conv1d(1, 4, 3, padding=1, rng=rng),
                                             nn.BatchNorm1d(4, **bn), nn.ReLU(), nn.Flatten(),
                                             nn.Linear(48, 3, rng=rng)), (5, 12)),
        "conv2d, nested": (nn.Sequential(nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, rng=rng),
                                                       nn.BatchNorm2d(3, **bn)),
                                         nn.Flatten(), nn.Linear(12, 2, rng=rng)), (4, 2, 5, 5)),
        "bn first": (nn.Sequential(nn.BatchNorm1d(6, **bn), nn.Linear(6, 2, rng=rng)), (8, 6)),
    }


@pytest.mark.parametrize("name", ["mlp", "cnn, reshape first", "conv2d, nested", "bn first"])
def test_params_only_backward_gives_the_same_parameter_gradients(name):
    model, shape = _models(np.random.default_rng(0))[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    y = model(x)
    dy = rng.standard_normal(y.shape)
    dx = model.backward(dy)
    assert dx.shape == x.shape
    full = _grads(model)
    model.zero_grad()
    model(x)
    assert model.backward(dy, input_grad=False) is None
    only = _grads(model)
    assert full.keys() == only.keys()
    for k in full:
        np.testing.assert_array_equal(only[k], full[k], err_msg=k)


def test_layers_return_none_without_input_grad():
    rng = np.random.default_rng(2)
    for layer, shape in ((nn.Linear(4, 3, rng=rng), (5, 4)),
                         (nn.Conv1d(2, 3, 3, rng=rng), (2, 2, 7)),
                         (nn.Conv2d(2, 3, 3, rng=rng), (2, 2, 5, 5))):
        x = rng.standard_normal(shape)
        y = layer(x)
        assert layer.backward(np.ones_like(y), input_grad=False) is None
        assert layer.weight.grad is not None and layer.bias.grad is not None


def test_backward_params_only_calls_a_users_module_plainly():
    class Doubler(nn.Module):  # a user's module: backward(dy) without the keyword
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2, rng=np.random.default_rng(0))

        def forward(self, x):
            return 2 * self.lin(x)

        def backward(self, dy):
            return self.lin.backward(2 * dy)

    m = Doubler()
    x = np.random.default_rng(1).standard_normal((4, 3))
    m(x)
    backward_params_only(m, np.ones((4, 2)))
    np.testing.assert_allclose(m.lin.bias.grad, np.full(2, 8.0))
    np.testing.assert_allclose(m.lin.weight.grad, 2 * np.ones((2, 4)) @ x)
