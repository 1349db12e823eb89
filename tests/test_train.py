"""fit/evaluate, determinism, model builders, run configs, and the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta import optim
from gammabeta.cli import main
from gammabeta.errors import ConfigError, NonFiniteError
from gammabeta.experiment import TrainConfig, run
from gammabeta.io import load_checkpoint
from gammabeta.models import build_model
from gammabeta.train import evaluate, fit, predict_logits


def blobs(n=300, d=10, k=3, seed=0):
    """A small separable problem: k Gaussian blobs in d dimensions."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y.astype(np.int64)


def train_small(seed, epochs=3):
    x, y = blobs()
    rng = np.random.default_rng(seed)
    model = build_model("mlp", (10,), 3, rng=rng, hidden=(16, 16))
    opt = optim.AdamW(optim.param_groups(model, 0.01), lr=0.01)
    hist = fit(model, x, y, optimizer=opt, epochs=epochs, batch_size=32, rng=rng,
               x_val=x, y_val=y)
    return model, hist


def test_fit_learns_and_records_history():
    model, hist = train_small(0, epochs=8)
    assert len(hist) == 8
    cols = hist.as_dict()
    assert {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
            "seconds"} <= set(cols)
    assert cols["train_loss"][-1] < cols["train_loss"][0]
    assert cols["val_accuracy"][-1] >= 0.9


def test_same_seed_is_bit_identical_and_other_seed_differs():
    a, ha = train_small(7)
    b, hb = train_small(7)
    c, _ = train_small(8)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and np.array_equal(va, vb)
    assert ha.as_dict()["train_loss"] == hb.as_dict()["train_loss"]
    assert not np.array_equal(a.state_dict()["0.weight"], c.state_dict()["0.weight"])


def test_evaluate_restores_training_mode_and_keeps_no_cache():
    model, _ = train_small(0, epochs=1)
    x, y = blobs()
    model.train()
    ev = evaluate(model, x, y)
    assert model.training and 0 <= ev["accuracy"] <= 1 and ev["loss"] > 0
    logits = predict_logits(model, x, batch_size=64)
    assert logits.shape == (300, 3)


def test_diverging_training_stops_with_a_clear_error():
    x, y = blobs()
    rng = np.random.default_rng(0)
    model = build_model("mlp", (10,), 3, rng=rng, hidden=(16,), norm="none", dropout=0)
    x = x * 1e30
    opt = optim.SGD(model.parameters(), lr=1e10)
    with pytest.raises(NonFiniteError, match="non-finite|became"):
        fit(model, x, y, optimizer=opt, epochs=2, batch_size=32, rng=rng)


def test_builders_and_their_errors():
    rng = np.random.default_rng(0)
    m = build_model("resmlp", (1, 4, 5), 10, rng=rng, hidden="32,32,32")
    assert m(np.zeros((3, 1, 4, 5), dtype=np.float32)).shape == (3, 10)
    assert sum(isinstance(mod, nn.BatchNorm1d) for mod in m.modules()) == 3
    plain = build_model("mlp", (8,), 2, rng=rng, hidden="4", norm="none")
    assert not any(isinstance(mod, nn.BatchNorm1d) for mod in plain.modules())
    with pytest.raises(ConfigError, match="unknown model 'mlpp'; expected one of .*mlp"):
        build_model("mlpp", (8,), 2)
    with pytest.raises(ConfigError, match="residual blocks need equal widths"):
        build_model("resmlp", (8,), 2, hidden="32,16")
    with pytest.raises(ConfigError, match="unknown norm 'weight'; expected one of batch, layer"):
        build_model("mlp", (8,), 2, norm="weight")
    with pytest.raises(ConfigError, match="hidden='a,b': expected comma-separated integers"):
        build_model("mlp", (8,), 2, hidden="a,b")


def test_zero_epochs_is_refused(npz_data):
    with pytest.raises(ConfigError, match=r"epochs=0; expected a whole number in \[1, "):
        run(TrainConfig(data=str(npz_data), epochs=0))


def test_config_refuses_unknown_keys_and_resolves_recipe():
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    cfg = TrainConfig().resolved()
    assert cfg.hidden == "256,256" and cfg.epochs == 100 and cfg.dropout == 0.2
    img = TrainConfig(model="cnn", epochs=3).resolved(input_rank=3)
    assert img.epochs == 3 and img.model_options == {"layers": 4, "pool_every": 1}


@pytest.fixture
def npz_data(tmp_path):
    x, y = blobs(n=400)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    return path


def test_cli_train_writes_metrics_checkpoint_and_curves(npz_data, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(npz_data), "--hidden", "32,32", "--epochs", "4",
               "--lr", "0.02", "--out", str(out), "--quiet", "--gamma-init", "uniform"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9
    assert metrics["config"]["gamma_init"] == "uniform" and metrics["config"]["epochs"] == 4
    assert len(metrics["history"]["epoch"]) == 4
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sd, meta = load_checkpoint(out / "model.safetensors")
    cfg = TrainConfig.from_dict(json.loads(meta["config"]))
    model = build_model(cfg.model, json.loads(meta["input_shape"]), int(meta["num_classes"]),
                        **cfg.model_kwargs())
    model.load_state_dict(sd)
    x, y = np.load(npz_data)["x"], np.load(npz_data)["y"]
    res = run(TrainConfig(data=str(npz_data), hidden="32,32", epochs=4, lr=0.02,
                          gamma_init="uniform"))
    assert res.test_accuracy == metrics["test_accuracy"]  # same seed, same run
    assert x.shape[0] == y.shape[0]


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "missing.npz"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "gammabeta: error:" in err and "missing.npz" in err
    rc = main(["train", "--data", "digits", "--gamma-init", "bogus", "--epochs", "1",
               "--quiet", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown initializer 'bogus'" in err and "dcgan" in err


def test_cli_diagnostics_records_every_layer(npz_data, tmp_path):
    out = tmp_path / "diag"
    rc = main(["train", "--data", str(npz_data), "--hidden", "8,8", "--epochs", "2", "--quiet",
               "--out", str(out), "--diagnostics", "--diagnostics-every", "3"])
    assert rc == 0
    d = json.loads((out / "diagnostics.json").read_text())
    steps_per_epoch = 320 // 100 + 1  # 400 samples, 80 held out, batch 100, last batch of 20
    assert d["steps"] == list(range(3, 2 * steps_per_epoch + 1, 3))
    assert {"0", "1", "2"} <= set(d["activations"])  # Linear, BatchNorm1d, ReLU
    assert all(len(v) == len(d["steps"]) for v in d["activations"]["1"].values())
    bn_out = d["activations"]["1"]
    # BN output: per channel mean β and std γ, both near their init (0, 1) after a few steps
    assert all(abs(m) < 0.2 for m in bn_out["mean"])
    assert all(0.5 < s < 1.5 for s in bn_out["std"])
    assert all(g > 0 for g in d["grad_norms"]["0.weight"])
