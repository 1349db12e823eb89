"""What a new user meets first: the validation split, the unseeded-layer warning, the
announcement of the kernel compilation, the recipes in ``train --help`` and the demo."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from gammabeta import backend
from gammabeta.cli import main
from gammabeta.data import validation_split
from gammabeta.errors import ConfigError, DataError, UnseededWarning
from gammabeta.experiment import TrainConfig, run


def test_validation_split_is_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(4), [50, 30, 20, 3])
    tr, va = validation_split(y, 0.1, np.random.default_rng(0))
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    assert [int((y[va] == c).sum()) for c in range(4)] == [5, 3, 2, 0]
    assert (np.diff(tr) > 0).all() and (np.diff(va) > 0).all()  # data order kept
    tr2, va2 = validation_split(y, 0.1, np.random.default_rng(0))
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, validation_split(y, 0.1, np.random.default_rng(1))[1])


def test_validation_split_refuses_what_holds_out_nothing():
    with pytest.raises(DataError, match="holds out none"):
        validation_split(np.array([0, 1, 0, 1]), 0.1, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="fraction"):
        validation_split(np.array([0, 1]), 1.5, np.random.default_rng(0))


def test_run_holds_out_validation_and_measures_test_once():
    r = run(TrainConfig(data="digits", epochs=2, seed=0))
    assert r.split == {"train": 1295, "val": 143, "test": 359}
    assert r.val_accuracy == r.history.records[-1]["val_accuracy"]
    assert 0.5 < r.val_accuracy <= 1 and 0.5 < r.test_accuracy <= 1
    m = r.metrics()
    assert m["split"]["val"] == 143 and "validation split" in m["note"]
    r0 = run(TrainConfig(data="digits", epochs=2, seed=0, val_fraction=0))
    assert r0.split["val"] == 0 and r0.val_accuracy is None
    assert "val_accuracy" not in r0.history.records[-1]


def test_val_fraction_is_a_checked_flag(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--val-fraction", "0.9", "--out",
                 str(tmp_path / "x")]) == 2
    assert "--val-fraction=0.9" in capsys.readouterr().err
    assert main(["train", "--data", "digits", "--epochs", "1", "--quiet", "--val-fraction",
                 "0.2", "--out", str(tmp_path / "y")]) == 0
    metrics = json.loads((tmp_path / "y" / "metrics.json").read_text())
    from gammabeta.data import load_digits

    counts = np.bincount(load_digits(seed=0).y_train)
    assert metrics["config"]["val_fraction"] == 0.2
    assert metrics["split"]["val"] == sum(round(0.2 * n) for n in counts)


def test_layers_without_rng_warn_once_and_seeded_ones_never(monkeypatch):
    import gammabeta.nn as nn
    from gammabeta.nn import _args

    monkeypatch.setattr(_args, "_warned", [])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        nn.BatchNorm1d(4)  # γ = 1, β = 0: nothing random, nothing to say
        nn.Linear(3, 4, rng=np.random.default_rng(0))
        assert not [w for w in seen if w.category is UnseededWarning]
        nn.BatchNorm1d(4, gamma_init="uniform")
        nn.Linear(3, 4)
        nn.Dropout(0.5)(np.ones((2, 3), np.float32))
    unseeded = [w for w in seen if w.category is UnseededWarning]
    assert len(unseeded) == 1
    assert "'uniform'" in str(unseeded[0].message) and "rng=" in str(unseeded[0].message)


def test_dropout_without_rng_warns_when_it_draws(monkeypatch):
    import gammabeta.nn as nn
    from gammabeta.nn import _args

    monkeypatch.setattr(_args, "_warned", [])
    d = nn.Dropout(0.5)
    with pytest.warns(UnseededWarning, match="Dropout"):
        d(np.ones((2, 3), np.float32))


def test_compile_notice_is_given_once_when_the_kernel_cache_is_cold(monkeypatch):
    calls = []
    monkeypatch.setattr(backend, "_kernel_module", None)
    monkeypatch.setattr(backend, "kernels_compiled", lambda: False)
    prev = backend.set_compile_notice(lambda: calls.append(1))
    try:
        backend._load_kernels()
        backend._load_kernels()
    finally:
        backend.set_compile_notice(prev)
    assert calls == [1]


def test_no_compile_notice_with_a_warm_cache(monkeypatch):
    calls = []
    monkeypatch.setattr(backend, "_kernel_module", None)
    monkeypatch.setattr(backend, "kernels_compiled", lambda: True)
    prev = backend.set_compile_notice(lambda: calls.append(1))
    try:
        backend._load_kernels()
    finally:
        backend.set_compile_notice(prev)
    assert calls == []


def test_train_help_lists_every_models_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    from gammabeta.config import MODELS

    for model in MODELS:
        assert f"  {model} " in out
    assert "epochs 100, lr 0.05" in out and "channels 32, layers 8" in out


def test_progress_announces_compilation(capsys):
    from gammabeta.progress import Progress

    Progress("x", enabled=False).compiling()
    assert "compiling the BatchNorm kernels" in capsys.readouterr().err


def test_kernels_compiled_sees_numbas_cache_once_the_kernels_ran():
    pytest.importorskip("numba")
    import gammabeta.nn as nn

    bn = nn.BatchNorm1d(8)
    x = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    with backend.jit("force"):  # compiles (or loads) the kernels, which caches them on disk
        bn.backward(bn(x))
    assert backend.kernels_compiled()
