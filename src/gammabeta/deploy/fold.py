r"""Fold inference-mode BatchNorm into the Linear/Conv layer before it (or the one after it).

In evaluation a BatchNorm is an affine map per channel ``c``::

    BN(z)_c = γ_c · (z_c − μ_c) / √(σ²_c + ε) + β_c          μ, σ² = running_mean, running_var

so after ``z = W x + b`` (Linear, or a Conv: channel ``c`` is output channel ``c``) it folds into
the layer, with ``s_c = γ_c / √(σ²_c + ε)``::

    W'_c = s_c · W_c            (row c of a Linear weight, filter c of a Conv weight)
    b'_c = s_c · (b_c − μ_c) + β_c                     (b = 0 when the layer had no bias)

With ``fold_batchnorm(model, preceding=True)`` a BatchNorm that *precedes* a Linear/Conv (and
cannot fold into the layer before it) folds into the layer after it:
``BN(x) = s ⊙ x + t`` per input channel, ``t_c = β_c − s_c · μ_c``, so::

    Linear:  W' = W · diag(s),                   b' = b + W t
    Conv:    W'[o, c, k] = W[o, c, k] · s_c,      b'_o = b_o + Σ_{c,k} W[o, c, k] · t_c

(with ``groups``, c runs over output channel o's group). The Conv case is exact only without
zero padding: the original pads BN's *output* with zeros, the folded layer would pad the raw
input, so border outputs would gain the ``t`` terms of the padded taps. Such pairs are refused.

The products are formed in float64 and cast back to the layer's dtype once. The folded
BatchNorm is replaced by :class:`~gammabeta.nn.Identity` at the same position, so every other
layer keeps its state-dict key. Subclasses of BatchNorm1d/2d whose evaluation is BatchNorm's
(Ghost BatchNorm, Batch Renormalization) and the frozen layers (FrozenBatchNorm1d/2d) fold too.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import nn
from ..nn.batchnorm import _BatchNorm
from ..nn.frozen_bn import FrozenBatchNorm1d, FrozenBatchNorm2d, _FrozenBatchNorm

__all__ = ["fold_batchnorm", "fold_pair", "fold_preceding_pair"]

# BatchNorm types that can follow (or precede) each foldable layer type: the channel axis must
# agree. A type also stands for its subclasses and its frozen twin (_FAMILY).
_FOLDS = {nn.Linear: nn.BatchNorm1d, nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d}
_FAMILY = {nn.BatchNorm1d: (nn.BatchNorm1d, FrozenBatchNorm1d),
           nn.BatchNorm2d: (nn.BatchNorm2d, FrozenBatchNorm2d)}
_NORMS = (_BatchNorm, _FrozenBatchNorm)


def _why_not_layer(layer: nn.Module, bn, where: str) -> str | None:
    """``None`` if ``bn``'s type and width fit ``layer``, else why not (``where``: "follows"
    or "precedes")."""
    want = _FOLDS.get(type(layer))
    if want is None:
        return f"it {where} {layer.describe()}, not a Linear/Conv layer"
    if not isinstance(bn, _FAMILY[want]):
        return (f"{type(bn).__name__} does not match {type(layer).__name__} "
                f"(expected {want.__name__})")
    return None


def _why_not(prev: nn.Module | None, bn) -> str | None:
    """``None`` if ``bn`` folds into ``prev`` (the layer before it), else the reason it does
    not."""
    if not bn.track_running_stats:
        return "it has track_running_stats=False (batch statistics even in eval)"
    if prev is None:
        return "it is the first layer of its Sequential"
    why = _why_not_layer(prev, bn, "follows")
    if why is not None:
        return why
    out = prev.out_features if isinstance(prev, nn.Linear) else prev.out_channels
    if out != bn.num_features:
        return f"{prev.describe()} has {out} outputs but the BatchNorm has {bn.num_features}"
    return None


def _why_not_before(bn, nxt: nn.Module | None) -> str | None:
    """``None`` if ``bn`` folds into ``nxt`` (the layer after it), else the reason."""
    if not bn.track_running_stats:
        return "it has track_running_stats=False (batch statistics even in eval)"
    if nxt is None:
        return "it is the last layer of its Sequential"
    why = _why_not_layer(nxt, bn, "precedes")
    if why is not None:
        return why
    n_in = nxt.in_features if isinstance(nxt, nn.Linear) else nxt.in_channels
    if n_in != bn.num_features:
        return f"{nxt.describe()} has {n_in} inputs but the BatchNorm has {bn.num_features}"
    if not isinstance(nxt, nn.Linear) and any(p for pair in nxt._pads for p in pair):
        return (f"it precedes {nxt.describe()}, whose zero padding would not be normalized "
                "(folding a BatchNorm into the next Conv is exact only with padding=0)")
    return None


def _scale(bn):
    """``(s, β, μ)`` in float64: ``s = γ / √(running_var + ε)``."""
    c = bn.num_features
    if bn.affine:  # Parameters, or a frozen layer's plain array buffers
        gamma, beta = (np.asarray(v.data if isinstance(v, nn.Parameter) else v,
                                  dtype=np.float64) for v in (bn.weight, bn.bias))
    else:
        gamma, beta = np.ones(c), np.zeros(c)
    mean = np.asarray(bn.running_mean, dtype=np.float64)
    var = np.asarray(bn.running_var, dtype=np.float64)
    return gamma / np.sqrt(var + bn.eps), beta, mean


def _store(layer: nn.Module, w_new, b_new) -> None:
    """Write the folded weight and bias in the weight's dtype (creating a bias if needed)."""
    dtype = layer.weight.data.dtype
    layer.weight.data = w_new.astype(dtype)
    if layer.bias is not None:
        layer.bias.data = b_new.astype(dtype)
    else:
        layer.bias = nn.Parameter(b_new.astype(dtype))
    layer.weight.grad = None


def fold_pair(layer: nn.Module, bn: _BatchNorm) -> None:
    """Fold the eval-mode ``bn`` into ``layer`` (Linear/Conv) in place; ``bn`` is left as is.

    ``W' = W · s``, ``b' = (b − running_mean) · s + β`` per output channel, with
    ``s = γ / √(running_var + ε)``; computed in float64, stored in the weight's dtype. A bias is
    created when the layer had none.
    """
    w = layer.weight.data
    c = bn.num_features
    s, beta, mean = _scale(bn)
    b = layer.bias.data.astype(np.float64) if layer.bias is not None else np.zeros(c)
    w_new = w.astype(np.float64) * s.reshape((c,) + (1,) * (w.ndim - 1))
    _store(layer, w_new, (b - mean) * s + beta)


def fold_preceding_pair(bn, layer: nn.Module) -> None:
    """Fold the eval-mode ``bn`` into the Linear/Conv ``layer`` that follows it, in place.

    With ``s = γ / √(running_var + ε)`` and ``t = β − s · running_mean`` per input channel:
    Linear ``W' = W · diag(s)``, ``b' = b + W t``; Conv (no zero padding: the caller checks)
    ``W'[o, c, …] = W[o, c, …] · s_c``, ``b'_o = b_o + Σ_{c,k} W[o, c, k] · t_c`` over the
    channels of o's group. Float64 products, stored in the weight's dtype; a bias is created
    when the layer had none. ``bn`` is left as is.
    """
    s, beta, mean = _scale(bn)
    t = beta - s * mean
    w = layer.weight.data.astype(np.float64)
    out = w.shape[0]
    b = layer.bias.data.astype(np.float64) if layer.bias is not None else np.zeros(out)
    if isinstance(layer, nn.Linear):
        _store(layer, w * s[None, :], b + w @ t)
        return
    groups, per_group = layer.groups, w.shape[1]
    rows = np.arange(out) // (out // groups)  # each output channel's group
    s_o = s.reshape(groups, per_group)[rows]  # (O, C/groups): the scales filter o meets
    t_o = t.reshape(groups, per_group)[rows]
    taps = w.reshape(out, per_group, -1)
    _store(layer, w * s_o.reshape(s_o.shape + (1,) * (w.ndim - 2)),
           b + np.einsum("ock,oc->o", taps, t_o))


def fold_batchnorm(model: nn.Module, preceding: bool = False) -> nn.Module:
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
    Subclasses of BatchNorm1d/2d (Ghost BatchNorm, BatchRenorm: their evaluation is
    BatchNorm's) and FrozenBatchNorm1d/2d fold the same way; SyncBatchNorm does not.

    With ``preceding=True``, a BatchNorm that cannot fold into the layer before it folds into a
    Linear/Conv directly *after* it (``W' = W · diag(s)``, ``b' = b + W t`` with
    ``t = β − s · running_mean``; see :mod:`gammabeta.deploy.fold`), except into a Conv with
    zero padding (not exact: refused, and the note says why).

    A Linear next to a BatchNorm1d is folded on the assumption that it sees ``(N, features)``
    inputs (BatchNorm1d's channel axis is axis 1, which is the Linear's feature axis only then).

    Parameters
    ----------
    model : gammabeta.nn.Module
        Left untouched: the result is a deep copy.
    preceding : bool, default False
        Also fold BatchNorms into the Linear/Conv layer that follows them.

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
        keys = list(seq._modules)
        prev_key, prev = None, None
        for i, key in enumerate(keys):
            child = seq._modules[key]
            if isinstance(child, _NORMS):
                seen.add(id(child))
                why = _why_not(prev, child)
                if why is None:
                    fold_pair(prev, child)
                    seq._modules[key] = nn.Identity()
                    folded.append((pre + prev_key, pre + key))
                    prev_key, prev = key, seq._modules[key]
                    continue
                if preceding:
                    nxt_key = keys[i + 1] if i + 1 < len(keys) else None
                    nxt = seq._modules[nxt_key] if nxt_key is not None else None
                    why_before = _why_not_before(child, nxt)
                    if why_before is None:
                        fold_preceding_pair(child, nxt)
                        seq._modules[key] = nn.Identity()
                        folded.append((pre + nxt_key, pre + key))
                        prev_key, prev = key, seq._modules[key]
                        continue
                    if why_before != why:
                        why = f"{why}; and {why_before}"
                notes.append(f"{pre}{key}: {child.describe()} left in place: {why}")
            prev_key, prev = key, child
    where = "next to" if preceding else "after"
    for name, m in out.named_modules():
        if isinstance(m, _NORMS) and id(m) not in seen:
            notes.append(f"{name or '(root)'}: {m.describe()} left in place: it is not inside "
                         f"a Sequential {where} a Linear/Conv layer")
    out.eval()
    object.__setattr__(out, "fold_notes", notes)
    object.__setattr__(out, "folded", folded)
    return out
