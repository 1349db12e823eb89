"""fold_batchnorm: equal to the eval-mode original (every CLI builder), copies, notes, biases.

Also home of the helpers the interop/ONNX tests share: ``CASES`` and :func:`trained`, a model
with non-trivial running statistics (a few SGD steps on random data) and random γ/β.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta import optim
from gammabeta.deploy import fold_batchnorm
from gammabeta.models import BUILDERS, build_model
from gammabeta.nn.batchnorm import _BatchNorm

# every builder the CLI offers on MNIST-1D-like vectors, and the image-capable ones on 28×28
CASES = [(n, (40,)) for n in ("mlp", "resmlp", "cnn", "papercnn", "resnet")] + \
    [("cnn", (1, 28, 28)), ("resnet", (1, 28, 28))]
# builder options: the CLI's defaults (resnet has projection shortcuts, mlp dropout 0.2)
OPTIONS: dict[str, dict] = {n: {} for n, _ in CASES}


def rel_err(got, ref) -> float:
    """max |got − ref| / max |ref|."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(got, dtype=np.float64) - ref).max() / np.abs(ref).max())


def randomize_bn(model, rng) -> None:
    """Random γ ∈ [0.5, 1.5] and β ~ N(0, 0.5) in every BatchNorm."""
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.affine:
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data[...] = rng.normal(0.0, 0.5, m.bias.shape)


def train_steps(model, shape, rng, steps: int = 3, batch: int = 16) -> None:
    """A few SGD steps on random (offset, scaled) data: running statistics move away from 0/1."""
    model.train()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        x = (rng.standard_normal((batch, *shape)) * 2.0 + 0.7).astype(np.float32)
        opt.zero_grad()
        logits = model(x)
        loss_fn(logits, rng.integers(0, logits.shape[1], batch))
        model.backward(loss_fn.backward())
        opt.step()


@functools.cache
def _trained(name, shape, seed, opts):
    rng = np.random.default_rng(seed)
    model = build_model(name, shape, 10, rng=rng, **dict(opts))
    randomize_bn(model, rng)
    train_steps(model, shape, rng)
    return model


def trained(name, shape, seed=0, **options):
    """A (cached) model of builder ``name`` after :func:`train_steps`; do not mutate it."""
    opts = {**OPTIONS.get(name, {}), **options}
    return _trained(name, tuple(shape), seed, tuple(sorted(opts.items())))


def inputs(shape, n=6, seed=1):
    return (np.random.default_rng(seed).standard_normal((n, *shape)) * 1.5 + 0.3) \
        .astype(np.float32)


def eval_out(model, x):
    model.eval()
    with nn.no_grad():
        return model(x)


def test_cases_cover_every_builder():
    assert {n for n, _ in CASES} == set(BUILDERS)


@pytest.mark.parametrize("name,shape", CASES)
def test_folded_equals_eval_original(name, shape):
    model = trained(name, shape)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x = inputs(shape)
    ref = eval_out(model, x)
    model.train()
    folded = fold_batchnorm(model)
    assert model.training and all(m.training for m in model.modules())  # original untouched
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    assert not folded.training
    assert not any(isinstance(m, _BatchNorm) for m in folded.modules())
    n_bn = sum(isinstance(m, _BatchNorm) for m in model.modules())
    assert len(folded.folded) == n_bn > 0 and folded.fold_notes == []
    y = folded(x)
    assert y.dtype == np.float32
    assert rel_err(y, ref) <= 1e-5
    if name == "resnet":  # projection shortcuts fold too
        assert any(".shortcut." in bn for _, bn in folded.folded)


def test_bn_that_cannot_fold_stays_with_a_note():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 8, rng=rng), nn.ReLU(),
                          nn.BatchNorm1d(8), nn.Linear(8, 5, bias=False, rng=rng),
                          nn.BatchNorm1d(5),
                          nn.Residual(nn.Sequential(nn.BatchNorm1d(5), nn.Tanh()),
                                      nn.BatchNorm1d(5, track_running_stats=True)))
    randomize_bn(model, rng)
    train_steps(model, (6,), rng)
    x = inputs((6,))
    ref = eval_out(model, x)
    folded = fold_batchnorm(model)
    assert folded.folded == [("4", "5")]
    notes = "\n".join(folded.fold_notes)
    assert len(folded.fold_notes) == 4, notes
    assert "0: BatchNorm1d(6) left in place: it is the first layer" in notes
    assert "3: BatchNorm1d(8) left in place: it follows ReLU()" in notes
    assert "6.shortcut: BatchNorm1d(5) left in place: it is not inside a Sequential" in notes
    assert folded[4].bias is not None and model[4].bias is None  # bias created in the copy only
    assert rel_err(folded(x), ref) <= 1e-5


def test_conv_bias_and_mismatched_layers():
    rng = np.random.default_rng(2)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=True, rng=rng),
                          nn.BatchNorm2d(4),
                          nn.Identity(),
                          nn.Conv2d(4, 3, 3, groups=1, rng=rng), nn.BatchNorm2d(3, affine=False),
                          nn.Flatten(), nn.Linear(3 * 4 * 4, 4, rng=rng), nn.BatchNorm1d(4),
                          nn.BatchNorm1d(4))
    randomize_bn(model, rng)
    train_steps(model, (2, 6, 6), rng)
    x = inputs((2, 6, 6))
    ref = eval_out(model, x)
    folded = fold_batchnorm(model)
    assert folded.folded == [("0", "1"), ("3", "4"), ("6", "7")]
    assert folded.fold_notes == ["8: BatchNorm1d(4) left in place: it follows Identity(), "
                                 "not a Linear/Conv layer"]
    assert rel_err(folded(x), ref) <= 1e-5


def test_folding_math_is_float64_and_exact_for_float64_models():
    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Linear(5, 4, rng=rng, dtype=np.float64),
                          nn.BatchNorm1d(4, eps=1e-3, dtype=np.float64))
    bn = model[1]
    bn.running_mean[...] = [1e3, -2.0, 0.5, 0.0]
    bn.running_var[...] = [1e-6, 4.0, 0.25, 1e4]
    randomize_bn(model, rng)
    x = rng.standard_normal((7, 5))
    ref = eval_out(model, x)
    folded = fold_batchnorm(model)
    assert folded[0].weight.dtype == np.float64
    assert rel_err(folded(x), ref) <= 1e-12


def test_models_without_bn_are_copied_unchanged():
    model = trained("mlp", (40,), norm="none")
    x = inputs((40,))
    folded = fold_batchnorm(model)
    assert folded is not model and folded.folded == [] and folded.fold_notes == []
    assert np.array_equal(folded(x), eval_out(model, x))
