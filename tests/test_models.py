"""Model builders: shapes in 1-D and 2-D, the paper's ConvBase, zero-γ residual identity."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import ConfigError
from gammabeta.models import BUILDERS, build_model

from ._torch import require_torch

CASES = [(n, s) for n in sorted(BUILDERS) for s in [(40,), (1, 28, 28)]
         if not (n == "papercnn" and len(s) == 3)]  # papercnn is the paper's 1-D network


@pytest.mark.parametrize("name,shape", CASES)
def test_every_builder_gives_logits_and_trains_a_step(name, shape):
    rng = np.random.default_rng(0)
    model = build_model(name, shape, 10, rng=rng)
    x = rng.standard_normal((4,) + shape).astype(np.float32)
    y = model(x)
    assert y.shape == (4, 10) and y.dtype == np.float32
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape
    assert all(p.grad is not None for p in model.parameters())


def test_papercnn_is_the_papers_convbase():
    torch = require_torch()
    model = build_model("papercnn", (40,), 10, rng=np.random.default_rng(0), norm="none")
    ref = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 40)),
        torch.nn.Conv1d(1, 25, 5, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv1d(25, 25, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv1d(25, 25, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(125, 10))
    sd = model.state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == [
        (k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    x = np.random.default_rng(1).standard_normal((5, 40)).astype(np.float32)
    out = ref(torch.from_numpy(x)).detach().numpy()
    assert np.abs(model(x) - out).max() <= 1e-5 * np.abs(out).max()


@pytest.mark.parametrize("shape", [(40,), (1, 12, 12)])
def test_zero_init_residual_blocks_are_exactly_the_identity(shape):
    rng = np.random.default_rng(0)
    model = build_model("resnet", shape, 10, rng=rng, zero_init_residual=True, stages=2,
                        blocks=2)
    blocks = [m for m in model.modules() if isinstance(m, nn.Residual)]
    assert len(blocks) == 4
    for block in blocks:
        assert np.all(nn.last_batchnorm(block.block).weight.data == 0)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        h = rng.standard_normal((6,) + shape).astype(np.float32)
        for layer in model:  # walk the top-level layers, checking each residual block
            out = layer(h)
            if isinstance(layer, nn.Residual):
                skip = h if layer.shortcut is None else layer.shortcut(h)
                assert np.array_equal(out, skip)
            h = out
    plain = build_model("resnet", shape, 10, rng=rng)
    assert not np.all(nn.last_batchnorm(
        [m for m in plain.modules() if isinstance(m, nn.Residual)][0].block).weight.data == 0)


def test_conv_builders_refuse_bad_shapes_and_options():
    with pytest.raises(ConfigError, match=r"papercnn is a 1-D network; got input shape"):
        build_model("papercnn", (1, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"inputs \(L,\), \(C, L\) or \(C, H, W\)"):
        build_model("cnn", (1, 2, 3, 4), 10)
    with pytest.raises(ConfigError, match=r"model 'mlp' has no option\(s\) \['channels'\]"):
        build_model("mlp", (40,), 10, channels=8)
