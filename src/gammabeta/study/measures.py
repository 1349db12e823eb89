"""Measurements a study records about a trained model (beyond its accuracy)."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn.batchnorm import _BatchNorm

__all__ = ["bn_gap", "precise_bn"]


def bn_gap(model, x, batch_size: int = 1000) -> dict:
    """How far the running statistics are from the population's, averaged over every
    BatchNorm channel: ``mean`` = |running_mean − μ| / σ and ``var`` = |running_var − σ²| / σ²,
    with μ and σ² of each BatchNorm's input over all of ``x`` (the model in eval mode, so
    each layer sees what inference feeds it)."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    sums = {id(m): [0, 0.0, 0.0] for m in bns}  # count, mean, M2 per channel

    def hook(module, inp, out):  # merged batch by batch (Chan et al.), never E[x²] − E[x]²
        axes = (0, *range(2, inp.ndim))
        xb = np.asarray(inp, dtype=np.float64)
        nb, mb = xb.size // xb.shape[1], xb.mean(axis=axes)
        m2b = np.square(xb - np.expand_dims(mb, axes)).sum(axis=axes)
        n, mean, m2 = sums[id(module)]
        tot = n + nb
        delta = mb - mean
        sums[id(module)] = [tot, mean + delta * nb / tot, m2 + m2b + delta**2 * n * nb / tot]

    handles = [m.register_forward_hook(hook) for m in bns]
    was = model.training
    model.eval()
    try:
        with nn.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size])
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    gaps_m, gaps_v = [], []
    for m in bns:
        n, mu, m2 = sums[id(m)]
        var = np.maximum(m2 / n, 1e-12)
        gaps_m.append(np.abs(np.asarray(m.running_mean, np.float64) - mu) / np.sqrt(var))
        gaps_v.append(np.abs(np.asarray(m.running_var, np.float64) - var) / var)
    if not bns:
        return {"mean": None, "var": None}
    return {"mean": float(np.mean(np.concatenate(gaps_m))),
            "var": float(np.mean(np.concatenate(gaps_v)))}


def precise_bn(model, ds, num_batches: int, batch_size: int, seed: int) -> dict:
    """PreciseBN after training: the gap of the running (EMA) statistics to the population's
    (:func:`bn_gap`) and the test accuracy, before and after recomputing the statistics over
    ``num_batches`` shuffled, equal-sized training batches with the weights frozen
    (:func:`gammabeta.nn.update_bn_stats`; Wu & Johnson 2021). Changes ``model``'s buffers."""
    from ..data.loader import DataLoader
    from ..train import evaluate

    before = bn_gap(model, ds.x_train)
    loader = DataLoader(ds.x_train, ds.y_train, batch_size=min(batch_size, len(ds.y_train)),
                        shuffle=True, drop_last=True, rng=np.random.default_rng([seed, 2]))
    n = min(num_batches, len(loader))
    nn.update_bn_stats(model, (x for x, _ in loader), num_batches=n)
    ev = evaluate(model, ds.x_test, ds.y_test)
    return {"bn_gap": before, "precise_bn_gap": bn_gap(model, ds.x_train),
            "precise_bn_batches": n, "precise_test_accuracy": ev["accuracy"]}
