"""A run decides once, from its size alone, whether loading the compiled kernels pays."""

import numpy as np
import pytest

from gammabeta import backend, jit_plan, nn, optim
from gammabeta.train import fit


def _cnn(rng):
    return nn.Sequential(nn.Conv1d(2, 4, 3, padding=1, rng=rng), nn.BatchNorm1d(4), nn.ReLU(),
                         nn.Flatten(), nn.LayerNorm(40), nn.Linear(40, 3, rng=rng))


def test_normalized_values_counts_every_norm_layers_input_and_restores_modes():
    rng = np.random.default_rng(0)
    model = _cnn(rng)
    model[1].eval()  # a child in its own mode stays so
    x = rng.standard_normal((8, 2, 10)).astype(np.float32)
    before = [b.copy() for b in (model[1].running_mean, model[1].running_var)]
    assert jit_plan.normalized_values(model, x) == 8 * 4 * 10 + 8 * 40
    assert model.training and not model[1].training and model[2].training
    for a, b in zip(before, (model[1].running_mean, model[1].running_var), strict=True):
        assert np.array_equal(a, b)  # evaluation mode: the statistics are untouched
    plain = nn.Sequential(nn.Linear(3, 2, rng=rng))
    assert jit_plan.normalized_values(plain, np.ones((4, 3), np.float32)) == 0


def test_run_jit_mode_turns_auto_off_for_short_runs_only(monkeypatch):
    rng = np.random.default_rng(1)
    model, x = _cnn(rng), np.ones((8, 2, 10), np.float32)
    per_step = 8 * 4 * 10 + 8 * 40
    monkeypatch.setattr(jit_plan, "RUN_MIN_VALUES", 100 * per_step)
    with backend.jit("auto"):
        assert jit_plan.run_jit_mode(model, x, 99) == "off"
        assert jit_plan.run_jit_mode(model, x, 100) == "auto"
    for mode in ("off", "force"):
        with backend.jit(mode):
            assert jit_plan.run_jit_mode(model, x, 1) == mode


@pytest.mark.parametrize("minimum, expected", [(None, "off"), (1, "auto")])
def test_fit_runs_a_short_run_without_kernels(monkeypatch, minimum, expected):
    if minimum is not None:
        monkeypatch.setattr(jit_plan, "RUN_MIN_VALUES", minimum)
    from gammabeta.nn import _bn_base

    modes = []
    real = _bn_base.kernels
    monkeypatch.setattr(_bn_base, "kernels",
                        lambda *a, **k: modes.append(backend.jit_mode()) or real(*a, **k))
    rng = np.random.default_rng(2)
    model = _cnn(rng)
    x = rng.standard_normal((64, 2, 10)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    with backend.jit("auto"):
        hist = fit(model, x, y, optimizer=optim.AdamW(model.parameters()), epochs=1,
                   batch_size=16, rng=rng)
        assert backend.jit_mode() == "auto"  # restored after the run
    assert hist.jit == expected
    assert modes[0] == "off"  # the planning pass (one forward, evaluation mode)
    assert len(modes) > 1 and set(modes[1:]) == {expected}  # then every call in the run's mode
