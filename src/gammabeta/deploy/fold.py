r"""Fold inference-mode BatchNorm into the Linear/Conv layer before it.

In evaluation a BatchNorm is an affine map per channel ``c``::

    BN(z)_c = γ_c · (z_c − μ_c) / √(σ²_c + ε) + β_c          μ, σ² = running_mean, running_var

so after ``z = W x + b`` (Linear, or a Conv: channel ``c`` is output channel ``c``) it folds into
the layer, with ``s_c = γ_c / √(σ²_c + ε)``::

    W'_c = s_c · W_c            (row c of a Linear weight, filter c of a Conv weight)
    b'_c = s_c · (b_c − μ_c) + β_c                     (b = 0 when the layer had no bias)

The products are formed in float64 and cast back to the layer's dtype once. The folded
BatchNorm is replaced by :class:`~gammabeta.nn.Identity` at the same position, so every other
layer keeps its state-dict key.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import nn
from ..nn.batchnorm import _BatchNorm

__all__ = ["fold_batchnorm", "fold_pair"]

# BatchNorm types that can follow each foldable layer type (the channel axis must agree).
_FOLDS = {nn.Linear: nn.BatchNorm1d, nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d}


def _why_not(prev: nn.Module | None, bn: _BatchNorm) -> str | None:
    """``None`` if ``bn`` folds into ``prev``, else the reason it does not."""
    if not bn.track_running_stats:
        return "it has track_running_stats=False (batch statistics even in eval)"
    if prev is None:
        return "it is the first layer of its Sequential"
    want = _FOLDS.get(type(prev))
    if want is None:
        return f"it follows {prev.describe()}, not a Linear/Conv layer"
    if type(bn) is not want:
        return (f"{type(bn).__name__} does not match {type(prev).__name__} "
                f"(expected {want.__name__})")
    out = prev.out_features if isinstance(prev, nn.Linear) else prev.out_channels
    if out != bn.num_features:
        return f"{prev.describe()} has {out} outputs but the BatchNorm has {bn.num_features}"
    return None


def fold_pair(layer: nn.Module, bn: _BatchNorm) -> None:
    """Fold the eval-mode ``bn`` into ``layer`` (Linear/Conv) in place; ``bn`` is left as is.

    ``W' = W · s``, ``b' = (b − running_mean) · s + β`` per output channel, with
    ``s = γ / √(running_var + ε)``; computed in float64, stored in the weight's dtype. A bias is
    created when the layer had none.
    """
    w = layer.weight.data
    dtype = w.dtype
    c = bn.num_features
    gamma = bn.weight.data.astype(np.float64) if bn.affine else np.ones(c)
    beta = bn.bias.data.astype(np.float64) if bn.affine else np.zeros(c)
    mean = np.asarray(bn.running_mean, dtype=np.float64)
    var = np.asarray(bn.running_var, dtype=np.float64)
    s = gamma / np.sqrt(var + bn.eps)
    b = layer.bias.data.astype(np.float64) if layer.bias is not None else np.zeros(c)
    w_new = w.astype(np.float64) * s.reshape((c,) + (1,) * (w.ndim - 1))
    b_new = (b - mean) * s + beta
    layer.weight.data = w_new.astype(dtype)
    if layer.bias is not None:
        layer.bias.data = b_new.astype(dtype)
    else:
        layer.bias = nn.Parameter(b_new.astype(dtype))
    layer.weight.grad = None


def fold_batchnorm(model: nn.Module) -> nn.Module:
    r"""Return a new eval-mode model with every foldable BatchNorm merged into its layer.

    A BatchNorm folds when it directly follows a Linear (BatchNorm1d), Conv1d (BatchNorm1d)
    or Conv2d (BatchNorm2d) with as many outputs as it has channels, inside any
    :class:`~gammabeta.nn.Sequential` of the tree (including the ``block`` and ``shortcut`` of
    :class:`~gammabeta.nn.Residual`)::

        s  = γ / √(running_var + ε)
        W' = W · s                        (per output channel)
        b' = (b − running_mean) · s + β   (b = 0 if the layer had no bias: a bias is created)

    computed in float64, then cast to the layer's dtype. The BatchNorm becomes an
    ``Identity`` (other keys are unchanged). A BatchNorm that cannot fold (after an
    activation, first in its Sequential, ``track_running_stats=False``, ...) stays in place.

    A Linear followed by BatchNorm1d is folded on the assumption that it sees ``(N, features)``
    inputs (BatchNorm1d's channel axis is axis 1, which is the Linear's output axis only then).

    Parameters
    ----------
    model : gammabeta.nn.Module
        Left untouched: the result is a deep copy.

    Returns
    -------
    gammabeta.nn.Module
        The folded copy, in eval mode, equal to ``model.eval()``'s output up to float
        rounding. Its attribute ``fold_notes`` lists one line per BatchNorm left in place (why),
        and ``folded`` the ``(layer, batchnorm)`` key pairs that were merged.
    """
    out = copy.deepcopy(model)
    out.eval()
    notes: list[str] = []
    folded: list[tuple[str, str]] = []
    seen: set[int] = set()
    for name, seq in list(out.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        pre = f"{name}." if name else ""
        prev_key, prev = None, None
        for key, child in list(seq._modules.items()):
            if isinstance(child, _BatchNorm):
                seen.add(id(child))
                why = _why_not(prev, child)
                if why is None:
                    fold_pair(prev, child)
                    seq._modules[key] = nn.Identity()
                    folded.append((pre + prev_key, pre + key))
                    prev_key, prev = key, seq._modules[key]
                    continue
                notes.append(f"{pre}{key}: {child.describe()} left in place: {why}")
            prev_key, prev = key, child
    for name, m in out.named_modules():
        if isinstance(m, _BatchNorm) and id(m) not in seen:
            notes.append(f"{name or '(root)'}: {m.describe()} left in place: it is not inside "
                         "a Sequential after a Linear/Conv layer")
    out.eval()
    object.__setattr__(out, "fold_notes", notes)
    object.__setattr__(out, "folded", folded)
    return out
