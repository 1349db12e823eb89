r"""PreciseBN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", arXiv:2105.07576):
recompute BatchNorm's running statistics with the weights fixed, every batch weighted
equally, as fvcore's ``update_bn_stats``."""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import ConfigError, DataError
from . import _args
from ._bn_base import _BatchNorm
from .batchrenorm import _BatchRenorm
from .module import Module, no_grad

__all__ = ["update_bn_stats"]


def update_bn_stats(model: Module, batches, num_batches: int = 200) -> Module:
    r"""Recompute every BatchNorm's running statistics over ``num_batches`` batches (PreciseBN).

    During training the running averages mix statistics of weights that kept changing, and
    weigh recent batches most; PreciseBN recomputes them with the weights fixed. Each layer
    with running statistics (:class:`BatchNorm1d`/``2d``, :class:`SyncBatchNorm`,
    :class:`GhostBatchNorm1d`/``2d``, :class:`BatchRenorm1d`/``2d``: every BatchNorm subclass
    with ``track_running_stats=True``) normalizes each batch with its own statistics (as in
    training) and ends with, over the K batch statistics it saw (fvcore's estimator; every
    batch counts the same, whatever its size):

        running_mean = (1/K) Σ_k μ_k
        running_var  = (1/K) Σ_k s²_k,     s²_k = m_k/(m_k − 1) · σ²_k   (unbiased)

    With K equal batches of m values per channel partitioning a data set, running_mean *is*
    the population mean μ. running_var is the mean of the batches' unbiased variances, not
    the population variance σ²_pop = (1/K) Σ_k [σ²_k + (μ_k − μ)²] (law of total variance):

        running_var − σ²_pop = (1/K) Σ_k [s²_k/m − (μ_k − μ)²]

    which is zero on average over random batches (E(μ_k − μ)² ≈ σ²/m) but not for a given
    partition; its spread shrinks as K grows. (fvcore's current default instead pools all
    batches into one sample variance; this is its earlier, the BatchNorm paper's, estimator.)

    Specifics. Ghost BatchNorm contributes one statistic per *virtual* batch. BatchRenorm
    layers use r = 1, d = 0 during the pass (plain batch normalization, as BatchNorm layers
    do). Every other layer runs in evaluation mode (Dropout off, so the statistics are those
    of the inference-time activations), under :func:`no_grad` (no gradients, no caches);
    parameters are not touched. Afterwards each module's train/eval flag, each layer's
    ``momentum`` and ``num_batches_tracked`` are as before (the pass is not training: a
    BatchRenorm schedule does not advance); a layer the batches never reached keeps its
    statistics. If anything fails (too few batches, a bad input), every running statistic is
    restored. Averages are accumulated in the buffers' dtype (float32 by default: about
    1e-7·K relative rounding at worst).

    Parameters
    ----------
    model : Module
        The network; its BatchNorm layers' ``running_mean`` and ``running_var`` are replaced.
    batches : iterable
        Inputs for ``model``: arrays, or tuples/lists whose first element is the input (as a
        ``(x, y)`` data loader yields); only the first ``num_batches`` are used.
    num_batches : int, default 200
        How many batches to use (fvcore's default, ``num_iters=200``); fewer in ``batches``
        raises :class:`DataError`.

    Returns
    -------
    Module
        ``model``, updated in place.

    Raises
    ------
    ConfigError
        The model has no BatchNorm layer with running statistics.
    DataError
        ``batches`` holds fewer than ``num_batches`` batches.

    References
    ----------
    - Wu & Johnson (2021), "Rethinking 'Batch' in BatchNorm", arXiv:2105.07576 (PreciseBN).
    - fvcore, ``fvcore.nn.precise_bn.update_bn_stats`` (facebookresearch/fvcore).

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> rng = np.random.default_rng(0)
    >>> model = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.BatchNorm1d(4), nn.ReLU())
    >>> data = [rng.standard_normal((32, 3)).astype(np.float32) for _ in range(10)]
    >>> model = nn.update_bn_stats(model.eval(), data, num_batches=10)
    >>> h = [model[0](x) for x in data]  # what the BatchNorm saw
    >>> bool(np.allclose(model[1].running_mean, np.mean([b.mean(0) for b in h], 0), atol=1e-6))
    True
    >>> bool(np.allclose(model[1].running_var, np.mean([b.var(0, ddof=1) for b in h], 0)))
    True
    >>> model.training, int(model[1].num_batches_tracked), model[1].momentum
    (False, 0, 0.1)
    """
    if not isinstance(model, Module):
        raise _args.ConfigTypeError(f"update_bn_stats: model is a {type(model).__name__}; "
                                    "expected a gammabeta.nn.Module")
    num_batches = _args.integer("update_bn_stats", "num_batches", num_batches)
    layers = [m for m in model.modules()
              if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not layers:
        raise ConfigError("update_bn_stats: the model has no BatchNorm layer with running "
                          "statistics (BatchNorm1d/2d or a subclass, track_running_stats=True): "
                          "nothing to update")
    try:
        iterator = iter(batches)
    except TypeError:
        raise _args.ConfigTypeError(f"update_bn_stats: batches is a {type(batches).__name__}; "
                                    "expected an iterable of arrays or (x, y) tuples") from None
    modes = [(m, m.training) for m in model.modules()]
    saved = [_Saved(m) for m in layers]
    done = False
    try:
        model.eval()
        for m in layers:
            object.__setattr__(m, "training", True)
            m.momentum = None  # cumulative: α = 1/k, every batch statistic weighs the same
            m.reset_running_stats()
            if isinstance(m, _BatchRenorm):  # BatchRenorm: plain batch normalization (r = 1, d = 0)
                m.r_max, m.d_max = 1.0, 0.0
        seen = 0
        with no_grad():
            for batch in itertools.islice(iterator, num_batches):
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
                seen += 1
        if seen < num_batches:
            raise DataError(f"update_bn_stats: batches gave {seen} batches, expected "
                            f"num_batches={num_batches}; pass num_batches={seen} or more data")
        done = True
    finally:
        for s in saved:
            s.restore(keep_statistics=done)
        for m, training in modes:
            object.__setattr__(m, "training", training)
    return model


class _Saved:
    """A layer's settings and statistics before the pass, to put back afterwards."""

    def __init__(self, layer: _BatchNorm):
        self.layer, self.momentum = layer, layer.momentum
        self.mean, self.var = layer.running_mean.copy(), layer.running_var.copy()
        self.count = np.array(layer.num_batches_tracked, dtype=np.int64)
        self.limits = (layer.r_max, layer.d_max) if isinstance(layer, _BatchRenorm) else None

    def restore(self, keep_statistics: bool) -> None:
        m = self.layer
        if not keep_statistics or int(m.num_batches_tracked) == 0:  # failed, or not reached
            m.running_mean[...] = self.mean
            m.running_var[...] = self.var
        m.num_batches_tracked = self.count.copy()
        m.momentum = self.momentum
        if self.limits is not None:
            m.r_max, m.d_max = self.limits
