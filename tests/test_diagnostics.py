"""Per-layer diagnostics: activation statistics from forward hooks, gradient norms, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gammabeta import nn, optim
from gammabeta.diagnostics import Diagnostics, activation_inputs, attach, leaf_layers
from gammabeta.errors import ConfigError
from gammabeta.models import build_model
from gammabeta.nn.losses import CrossEntropyLoss
from gammabeta.train import fit


def _model(seed=0, norm="batch", act="sigmoid"):
    return build_model("mlp", (6,), 3, rng=np.random.default_rng(seed), hidden="8,8",
                       norm=norm, act=act, dropout=0.0)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def test_activation_stats_match_numpy_and_grads_are_norms():
    model = _model()
    x, y = _data()
    diag = Diagnostics(model, layers=["1", "2"], percentiles=(15, 50, 85), units=[0])
    loss = CrossEntropyLoss()
    loss(model(x), y)
    model.backward(loss.backward())
    row = diag.record_step(1)
    # the hook saw exactly the layers' outputs: recompute them by hand
    h = model[0](x)
    bn = model[1](h)
    a = row["activations"]["1"]
    assert a["mean"] == pytest.approx(float(bn.mean()), abs=1e-6)
    assert a["std"] == pytest.approx(float(bn.std()), rel=1e-5)
    assert a["p85"] == pytest.approx(float(np.percentile(bn, 85)), rel=1e-5)
    assert row["units"]["1"]["0"]["p15"] == pytest.approx(float(np.percentile(bn[:, 0], 15)),
                                                         rel=1e-5)
    assert 0.0 < row["activations"]["2"]["p50"] < 1.0  # a sigmoid output
    for name, p in model.named_parameters():
        assert row["grad_norms"][name] == pytest.approx(float(np.linalg.norm(p.grad)), rel=1e-5)


def test_records_over_training_and_saves_json(tmp_path):
    model = _model(act="relu")
    x, y = _data(200)
    diag = attach(model)
    assert diag.layers == leaf_layers(model)
    opt = optim.AdamW(optim.param_groups(model, 0.0), lr=0.01)
    fit(model, x, y, optimizer=opt, epochs=2, batch_size=50, rng=np.random.default_rng(0),
        on_step=lambda step, loss: diag.record_step(step))
    d = diag.to_dict()
    assert d["steps"] == list(range(1, 9))
    for layer in diag.layers:
        assert len(d["activations"][layer]["mean"]) == 8
    relu = [n for n in diag.layers if isinstance(dict(model.named_modules())[n], nn.ReLU)][0]
    assert all(0 <= f <= 1 for f in d["activations"][relu]["frac_zero"])
    assert all(len(v) == 8 for v in d["grad_norms"].values())
    diag.save(tmp_path / "diag.json")
    assert json.loads((tmp_path / "diag.json").read_text())["steps"] == d["steps"]
    diag.remove()
    model(x[:10])
    assert diag._latest == {}  # hooks detached


def test_unrecorded_steps_cost_nothing_and_missing_grads_are_none():
    model = _model()
    x, _ = _data()
    with Diagnostics(model, layers=lambda name, m: isinstance(m, nn.BatchNorm1d)) as diag:
        model(x)
        row = diag.record_step(0)  # forward only: no gradients yet
    assert set(row["activations"]) == {"1", "4"}
    assert all(v is None for v in row["grad_norms"].values())
    assert diag.to_dict()["steps"] == [0]


def test_activation_inputs_finds_pre_activations():
    assert activation_inputs(_model()) == ["1", "4"]          # BN feeds each sigmoid
    assert activation_inputs(_model(norm="none")) == ["0", "2"]  # Linear feeds each sigmoid


def test_bad_layer_names_and_percentiles_are_refused():
    with pytest.raises(ConfigError, match="no layer"):
        Diagnostics(_model(), layers=["7"])
    with pytest.raises(ConfigError, match="percentiles"):
        Diagnostics(_model(), percentiles=(50, 150))
