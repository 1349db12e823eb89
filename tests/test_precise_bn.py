"""update_bn_stats (PreciseBN): exact population means, the mean of batch variances, nothing
else changed (parameters, modes, momenta, counters), every BatchNorm variant, refusals."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import ConfigError, DataError, ShapeError
from gammabeta.nn.batchrenorm import BatchRenorm1d
from gammabeta.nn.ghostbatchnorm import GhostBatchNorm1d
from gammabeta.nn.precise_bn import update_bn_stats

from .test_fold import randomize_bn

K, B = 12, 16  # batches, samples per batch


def network(rng, dtype=np.float64, **bn_kw):
    model = nn.Sequential(nn.Linear(5, 4, rng=rng, dtype=dtype), nn.BatchNorm1d(4, dtype=dtype,
                                                                                  **bn_kw),
                          nn.ReLU(), nn.Linear(4, 3, rng=rng, dtype=dtype),
                          nn.BatchNorm1d(3, dtype=dtype, **bn_kw))
    randomize_bn(model, rng)
    for _ in range(3):  # running statistics that PreciseBN must replace
        model(rng.standard_normal((8, 5)).astype(dtype) * 3 + 1)
    return model


def dataset(rng, dtype=np.float64):
    return [(rng.standard_normal((B, 5)) * rng.uniform(0.5, 3, 5) + rng.normal(0, 2, 5))
            .astype(dtype) for _ in range(K)]


def batch_stats(h):
    return h.mean(0), h.var(0, ddof=1)


def reference(model, data):
    """Per batch, in float64 by hand: the two BatchNorms' inputs (each batch normalized by its
    own statistics, as in training)."""
    lin1, bn1, lin2 = model[0], model[1], model[3]
    h1s, h2s = [], []
    for x in data:
        h1 = x @ lin1.weight.data.T + lin1.bias.data
        z = (h1 - h1.mean(0)) / np.sqrt(h1.var(0) + bn1.eps) * bn1.weight.data + bn1.bias.data
        h2s.append(np.maximum(z, 0) @ lin2.weight.data.T + lin2.bias.data)
        h1s.append(h1)
    return h1s, h2s


def rel(a, ref):
    return float(np.abs(np.asarray(a) - ref).max() / np.abs(ref).max())


def test_population_mean_and_mean_of_batch_variances_exactly():
    rng = np.random.default_rng(0)
    model, data = network(rng), dataset(rng)
    h1s, h2s = reference(model, data)
    update_bn_stats(model, data, num_batches=K)
    for bn, hs in ((model[1], h1s), (model[4], h2s)):
        pop = np.concatenate(hs)
        assert rel(bn.running_mean, pop.mean(0)) <= 1e-12  # the exact population mean
        means, variances = zip(*(batch_stats(h) for h in hs), strict=True)
        assert rel(bn.running_mean, np.mean(means, 0)) <= 1e-12
        assert rel(bn.running_var, np.mean(variances, 0)) <= 1e-12  # fvcore's estimator
        # ... which differs from the population variance by (1/K) Σ [s²_k/m − (μ_k − μ)²]
        gap = np.mean([v / B - (mu - pop.mean(0)) ** 2 for mu, v in zip(means, variances,
                                                                          strict=True)], 0)
        assert rel(bn.running_var - pop.var(0), gap) <= 1e-9
        assert np.abs(gap).min() > 1e-6  # the two really are different numbers


def test_nothing_else_changes():
    rng = np.random.default_rng(1)
    model = network(rng, momentum=0.3)
    model[4].momentum = None
    model.train()
    model[0].eval()  # mixed modes come back as they were
    params = {n: p.data.copy() for n, p in model.named_parameters()}
    counts = [int(model[i].num_batches_tracked) for i in (1, 4)]
    update_bn_stats(model, dataset(rng), num_batches=K)
    assert [m.training for m in model.modules()] == [True, False, True, True, True, True]
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, params[n])
        assert p.grad is None
    assert (model[1].momentum, model[4].momentum) == (0.3, None)
    assert [int(model[i].num_batches_tracked) for i in (1, 4)] == counts
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        model[1].backward(np.ones((B, 4)))  # no_grad: no caches kept


def test_float32_model_and_xy_tuples_from_a_generator():
    rng = np.random.default_rng(2)
    model, data = network(rng, np.float32), dataset(rng, np.float32)
    h1s, _ = reference(model.double(), [x.astype(np.float64) for x in data])
    model.float()
    items = iter([(x, np.zeros(B)) for x in data] + ["never read"])
    update_bn_stats(model.eval(), items, num_batches=K)
    assert next(items) == "never read"  # exactly num_batches consumed
    assert model[1].running_mean.dtype == np.float32
    assert rel(model[1].running_mean, np.concatenate(h1s).mean(0)) <= 1e-5
    assert rel(model[1].running_var, np.mean([h.var(0, ddof=1) for h in h1s], 0)) <= 1e-5
    assert not model.training


def test_dropout_is_off_during_the_pass():
    rng = np.random.default_rng(3)
    drop = nn.Dropout(0.5, rng=np.random.default_rng(4))
    model = nn.Sequential(nn.Linear(5, 4, rng=rng, dtype=np.float64), drop,
                          nn.BatchNorm1d(4, dtype=np.float64))
    state = drop.rng.bit_generator.state
    data = dataset(rng)
    update_bn_stats(model, data, num_batches=K)
    h = np.concatenate([x @ model[0].weight.data.T + model[0].bias.data for x in data])
    assert rel(model[2].running_mean, h.mean(0)) <= 1e-12
    assert drop.rng.bit_generator.state == state and drop.training


def test_variants_ghost_renorm_sync_and_unreached_layers():
    rng = np.random.default_rng(5)
    ghost = GhostBatchNorm1d(5, 4, dtype=np.float64)
    renorm = BatchRenorm1d(5, warmup_steps=0, ramp_steps=0, dtype=np.float64)
    renorm.running_mean[...] = 40.0  # r and d would be clipped far from 1 and 0
    renorm(rng.standard_normal((8, 5)))
    renorm_count = int(renorm.num_batches_tracked)

    class OneRank:
        def Get_size(self): return 1
        def Get_rank(self): return 0
        def Allgather(self, send, recv): recv[0] = send
        def Allreduce(self, send, recv): recv[...] = send

    sync = nn.SyncBatchNorm(5, comm=OneRank(), dtype=np.float64)

    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.ghost, self.renorm, self.sync = ghost, renorm, sync
            self.unused = nn.BatchNorm1d(5, dtype=np.float64)
            self.unused.running_mean[...] = 7.0

        def forward(self, x):
            return self.ghost(x) + self.renorm(x) + self.sync(x)

    model = Branches()
    data = dataset(rng)
    update_bn_stats(model, data, num_batches=K)
    chunks = [x[a:a + 4] for x in data for a in range(0, B, 4)]  # 4 virtual batches each
    assert rel(ghost.running_var, np.mean([c.var(0, ddof=1) for c in chunks], 0)) <= 1e-12
    assert rel(ghost.running_mean, np.concatenate(data).mean(0)) <= 1e-12
    for layer in (renorm, sync):
        assert rel(layer.running_mean, np.concatenate(data).mean(0)) <= 1e-12
        assert rel(layer.running_var, np.mean([x.var(0, ddof=1) for x in data], 0)) <= 1e-12
    assert (renorm.r_max, renorm.d_max, int(renorm.num_batches_tracked)) == \
        (3.0, 5.0, renorm_count)
    np.testing.assert_array_equal(model.unused.running_mean, 7.0)  # never reached: kept
    assert int(ghost.num_batches_tracked) == 0


def test_refusals_leave_the_model_as_it_was():
    rng = np.random.default_rng(6)
    model = network(rng)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(DataError, match=r"batches gave 5 batches, expected num_batches=200"):
        update_bn_stats(model, dataset(rng)[:5])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    assert model.training and model[1].momentum == 0.1
    with pytest.raises(ConfigError, match="no BatchNorm layer with running statistics"):
        update_bn_stats(nn.Sequential(nn.Linear(5, 2, rng=rng)), dataset(rng))
    with pytest.raises(ConfigError, match="no BatchNorm layer with running statistics"):
        update_bn_stats(nn.BatchNorm1d(5, track_running_stats=False), dataset(rng))
    with pytest.raises(ConfigError, match="num_batches=0"):
        update_bn_stats(model, dataset(rng), num_batches=0)
    with pytest.raises(ConfigError, match="batches is a int"):
        update_bn_stats(model, 3)
    with pytest.raises(ConfigError, match="model is a list"):
        update_bn_stats([model], dataset(rng))
    bad = [dataset(rng)[0], np.ones((B, 7))]  # the second batch has the wrong width
    with pytest.raises(ShapeError, match="7"):
        update_bn_stats(model, bad, num_batches=2)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
