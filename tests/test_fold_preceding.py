"""fold_batchnorm(preceding=True): a BatchNorm before a Linear/Conv folds into it (exactly, in
float64), a padded Conv is refused with the reason, BatchNorm-after folding is unchanged; the
BatchNorm variants and the frozen layers fold too."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.deploy.fold import fold_batchnorm, fold_preceding_pair
from gammabeta.nn.batchnorm import _BatchNorm
from gammabeta.nn.batchrenorm import BatchRenorm1d
from gammabeta.nn.frozen_bn import FrozenBatchNorm2d, freeze_batchnorm
from gammabeta.nn.ghostbatchnorm import GhostBatchNorm2d

from .test_fold import rel_err

TOL = {np.float64: 1e-12, np.float32: 1e-5}


def stats(model, seed=0):
    """Random γ, β, running_mean, running_var in every BatchNorm (eps 1e-3: var + ε matters)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            c = m.num_features
            if m.affine:
                m.weight.data[...] = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)
                m.bias.data[...] = rng.normal(0, 0.5, c)
            m.running_mean[...] = rng.normal(0.5, 1.0, c)
            m.running_var[...] = rng.uniform(0.2, 3.0, c)
    return model


def check(model, shape, dtype, expect_folded, n=5):
    x = (np.random.default_rng(1).standard_normal((n, *shape)) * 2 + 0.3).astype(dtype)
    model.eval()
    with nn.no_grad():
        ref = model(x)
    folded = fold_batchnorm(model, preceding=True)
    assert folded.folded == expect_folded and folded.fold_notes == []
    assert not any(isinstance(m, _BatchNorm) for m in folded.modules())
    y = folded(x)
    assert y.dtype == dtype
    assert rel_err(y, ref) <= TOL[dtype]
    return folded


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_bn1d_then_linear(dtype, bias):
    rng = np.random.default_rng(2)
    model = stats(nn.Sequential(nn.BatchNorm1d(6, eps=1e-3, dtype=dtype),
                                nn.Linear(6, 4, bias=bias, rng=rng, dtype=dtype)))
    folded = check(model, (6,), dtype, [("1", "0")])
    assert isinstance(folded[0], nn.Identity) and folded[1].bias is not None
    assert folded[1].weight.dtype == dtype
    assert (model[1].bias is None) == (not bias)  # the original is untouched


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [dict(), dict(stride=2, dilation=2), dict(groups=3),
                                dict(padding="valid", bias=False)])
def test_bn1d_then_conv1d_without_padding(dtype, kw):
    rng = np.random.default_rng(3)
    model = stats(nn.Sequential(nn.BatchNorm1d(6, eps=1e-3, dtype=dtype),
                                nn.Conv1d(6, 9, 3, rng=rng, dtype=dtype, **kw)))
    check(model, (6, 11), dtype, [("1", "0")])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("groups", [1, 2])
def test_bn2d_then_conv2d_stride_2(dtype, groups):
    rng = np.random.default_rng(4)
    model = stats(nn.Sequential(nn.BatchNorm2d(4, eps=1e-3, dtype=dtype),
                                nn.Conv2d(4, 6, 3, stride=2, groups=groups, rng=rng,
                                          dtype=dtype)))
    check(model, (4, 9, 8), dtype, [("1", "0")])


@pytest.mark.parametrize("padding", [1, "same", (0, 1)])
def test_padded_conv_is_refused_with_the_reason(padding):
    rng = np.random.default_rng(5)
    model = stats(nn.Sequential(nn.BatchNorm2d(3, dtype=np.float64),
                                nn.Conv2d(3, 4, 3, padding=padding, rng=rng,
                                          dtype=np.float64)))
    x = np.random.default_rng(6).standard_normal((2, 3, 7, 7))
    ref = model.eval()(x)
    folded = fold_batchnorm(model, preceding=True)
    assert folded.folded == []
    assert len(folded.fold_notes) == 1
    note = folded.fold_notes[0]
    assert note.startswith("0: BatchNorm2d(3) left in place: it is the first layer of its "
                           "Sequential; and it precedes Conv2d(3, 4")
    assert "whose zero padding would not be normalized" in note
    assert "exact only with padding=0" in note
    np.testing.assert_array_equal(folded(x), ref)
    # ... and folding it anyway would indeed be wrong at the border:
    fold_preceding_pair(folded[0], folded[1])
    assert rel_err(folded[1](x), ref) > 1e-3


@pytest.mark.parametrize("preceding", [False, True])
def test_linear_bn_relu_chain_is_unaffected(preceding):
    rng = np.random.default_rng(7)
    model = stats(nn.Sequential(nn.Linear(5, 4, rng=rng, dtype=np.float64),
                                nn.BatchNorm1d(4, dtype=np.float64), nn.ReLU(),
                                nn.Linear(4, 3, rng=rng, dtype=np.float64)))
    x = np.random.default_rng(8).standard_normal((6, 5))
    ref = model.eval()(x)
    folded = fold_batchnorm(model, preceding=preceding)
    plain = fold_batchnorm(model)
    assert folded.folded == plain.folded == [("0", "1")] and folded.fold_notes == []
    for key, value in plain.state_dict().items():  # the same fold, bit for bit
        np.testing.assert_array_equal(folded.state_dict()[key], value)
    assert rel_err(folded(x), ref) <= 1e-12


def test_after_is_preferred_and_default_keeps_bn_before_layers():
    rng = np.random.default_rng(9)
    model = stats(nn.Sequential(nn.BatchNorm1d(5, dtype=np.float64),
                                nn.Linear(5, 4, rng=rng, dtype=np.float64),
                                nn.BatchNorm1d(4, dtype=np.float64),
                                nn.Linear(4, 4, rng=rng, dtype=np.float64),
                                nn.Tanh(), nn.BatchNorm1d(4, dtype=np.float64),
                                nn.Linear(4, 2, rng=rng, dtype=np.float64),
                                nn.BatchNorm1d(2, dtype=np.float64)))
    x = np.random.default_rng(10).standard_normal((7, 5))
    ref = model.eval()(x)
    default = fold_batchnorm(model)
    assert default.folded == [("1", "2"), ("6", "7")]
    assert default.fold_notes == [
        "0: BatchNorm1d(5) left in place: it is the first layer of its Sequential",
        "5: BatchNorm1d(4) left in place: it follows Tanh(), not a Linear/Conv layer"]
    both = fold_batchnorm(model, preceding=True)
    assert both.folded == [("1", "0"), ("1", "2"), ("6", "5"), ("6", "7")]
    assert both.fold_notes == []
    assert rel_err(both(x), ref) <= 1e-12 and rel_err(default(x), ref) <= 1e-12


def test_reasons_when_nothing_fits():
    rng = np.random.default_rng(11)
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(5, 2, rng=rng),
                          nn.Tanh(), nn.BatchNorm1d(2), nn.Conv1d(2, 2, 1, rng=rng),
                          nn.BatchNorm1d(2, track_running_stats=False), nn.Tanh(),
                          nn.BatchNorm2d(2), nn.Conv1d(2, 2, 1, rng=rng), nn.ReLU(),
                          nn.BatchNorm1d(2))
    notes = fold_batchnorm(model, preceding=True).fold_notes
    assert notes == [
        "1: BatchNorm1d(4) left in place: it follows ReLU(), not a Linear/Conv layer; and "
        "Linear(in_features=5, out_features=2, bias=True) has 5 inputs but the BatchNorm has 4",
        "6: BatchNorm1d(2, track_running_stats=False) left in place: it has "
        "track_running_stats=False (batch statistics even in eval)",
        "8: BatchNorm2d(2) left in place: it follows Tanh(), not a Linear/Conv layer; and "
        "BatchNorm2d does not match Conv1d (expected BatchNorm1d)",
        "11: BatchNorm1d(2) left in place: it follows ReLU(), not a Linear/Conv layer; and "
        "it is the last layer of its Sequential"]
    assert fold_batchnorm(model, preceding=True).folded == [("5", "4")]


def test_variants_and_frozen_layers_fold():
    rng = np.random.default_rng(12)
    model = stats(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, rng=rng, dtype=np.float64),
        GhostBatchNorm2d(4, 2, dtype=np.float64), nn.ReLU(),
        nn.BatchNorm2d(4, dtype=np.float64), nn.Conv2d(4, 3, 2, rng=rng, dtype=np.float64),
        nn.Flatten(), nn.Linear(3 * 5 * 5, 6, rng=rng, dtype=np.float64),
        BatchRenorm1d(6, dtype=np.float64), nn.Tanh(), nn.BatchNorm1d(6, dtype=np.float64),
        nn.Linear(6, 2, rng=rng, dtype=np.float64)))
    x = np.random.default_rng(13).standard_normal((3, 2, 6, 6))
    ref = model.eval()(x)
    expected = [("0", "1"), ("4", "3"), ("6", "7"), ("10", "9")]
    assert fold_batchnorm(model, preceding=True).folded == expected
    frozen = freeze_batchnorm(model)
    assert isinstance(frozen[3], FrozenBatchNorm2d)
    folded = fold_batchnorm(frozen, preceding=True)
    assert folded.folded == expected and folded.fold_notes == []
    assert not any("Frozen" in type(m).__name__ for m in folded.modules())
    assert rel_err(folded(x), ref) <= 1e-12
