"""PyTorch interop: equivalent ``torch.nn`` trees both ways, and loading PyTorch state dicts.

gammabeta's state dicts already use PyTorch's names and layouts (``"0.weight"`` of shape
``(out, in)``, ``"1.running_mean"``, ``"1.num_batches_tracked"``, Conv weights
``(out, in/groups, *kernel)``), so a checkpoint moves between the two libraries unchanged:

* :func:`to_torch` builds the equivalent ``torch.nn`` module tree, layer by layer, and copies
  every parameter and buffer with ``load_state_dict(strict=True)``;
* :func:`from_torch` does the reverse for the supported layer types;
* :func:`load_torch_state_dict` loads a safetensors file (never a pickle: loading runs no code
  from the file) or an in-memory dict of tensors/arrays into a gammabeta model, checking every
  key and shape and naming the first mismatch.

Supported layers: Sequential, Linear, Conv1d/2d, BatchNorm1d/2d, LayerNorm, GroupNorm,
InstanceNorm1d/2d, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Dropout, Flatten, Unflatten, Identity,
MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d and :class:`~gammabeta.nn.Residual` (on the
torch side a small ``Residual`` module with the same ``block``/``shortcut`` children, so the
keys ``"3.block.0.weight"`` agree).

PyTorch is optional: it is imported inside the functions, never when this module is imported.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import nn
from .errors import ConfigError, StateDictError
from .nn.groupnorm import GroupNorm
from .nn.instancenorm import InstanceNorm1d, InstanceNorm2d
from .nn.layernorm import LayerNorm

__all__ = ["to_torch", "from_torch", "load_torch_state_dict", "torch_residual_class"]


def _torch():
    try:
        import torch
    except ImportError:
        raise ConfigError("PyTorch interop needs torch: pip install torch") from None
    return torch


@functools.cache
def torch_residual_class():
    """The ``torch.nn.Module`` subclass used for :class:`gammabeta.nn.Residual` (created once)."""
    torch = _torch()

    class Residual(torch.nn.Module):
        """``y = block(x) + (shortcut(x) if shortcut is not None else x)``."""

        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block = block
            self.shortcut = shortcut

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    return Residual


def _one(t: tuple):
    return t[0] if len(t) == 1 else t


# ----- gammabeta -> torch ------------------------------------------------------------------------
def _leaf_to_torch(m: nn.Module, tnn, where: str):
    name = type(m).__name__
    if isinstance(m, nn.Linear):
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        cls = tnn.Conv1d if isinstance(m, nn.Conv1d) else tnn.Conv2d
        pad = m.padding if isinstance(m.padding, str) else _one(m.padding)
        return cls(m.in_channels, m.out_channels, _one(m.kernel_size), stride=_one(m.stride),
                   padding=pad, dilation=_one(m.dilation), groups=m.groups,
                   bias=m.bias is not None)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = tnn.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else tnn.BatchNorm2d
        return cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats)
    norm = _norm_to_torch(m, tnn)
    if norm is not None:
        return norm
    if isinstance(m, nn.LeakyReLU):
        return tnn.LeakyReLU(m.negative_slope)
    if isinstance(m, nn.GELU):
        return tnn.GELU(approximate=m.approximate)
    simple = {nn.ReLU: tnn.ReLU, nn.Sigmoid: tnn.Sigmoid, nn.Tanh: tnn.Tanh,
              nn.Identity: tnn.Identity}
    if type(m) in simple:
        return simple[type(m)]()
    if isinstance(m, nn.Dropout):
        return tnn.Dropout(m.p)
    if isinstance(m, nn.Flatten):
        return tnn.Flatten(m.start_dim, m.end_dim)
    if isinstance(m, nn.Unflatten):
        return tnn.Unflatten(m.dim, m.unflattened_size)
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
        cls = tnn.MaxPool1d if isinstance(m, nn.MaxPool1d) else tnn.MaxPool2d
        return cls(_one(m.kernel_size), stride=_one(m.stride), padding=_one(m.padding))
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
        cls = tnn.AvgPool1d if isinstance(m, nn.AvgPool1d) else tnn.AvgPool2d
        return cls(_one(m.kernel_size), stride=_one(m.stride), padding=_one(m.padding),
                   count_include_pad=m.count_include_pad)
    if isinstance(m, nn.AdaptiveAvgPool1d):
        return tnn.AdaptiveAvgPool1d(m.output_size[0])
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return tnn.AdaptiveAvgPool2d(m.output_size)
    raise ConfigError(f"to_torch: layer {where or '(root)'} is a {name}, which has no torch.nn "
                      "equivalent here; supported: " + _SUPPORTED)


_SUPPORTED = ("Sequential, Residual, Linear, Conv1d/2d, BatchNorm1d/2d, LayerNorm, GroupNorm, "
              "InstanceNorm1d/2d, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Dropout, Flatten, "
              "Unflatten, Identity, MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d")


def _has_bias(m) -> bool:
    """A normalization layer's ``bias`` argument (True when it has no γ/β at all)."""
    return m.weight is None or m.bias is not None


def _norm_to_torch(m: nn.Module, tnn):
    """The torch twin of a LayerNorm, GroupNorm or InstanceNorm; ``None`` for other layers."""
    if isinstance(m, LayerNorm):
        return tnn.LayerNorm(m.normalized_shape, eps=m.eps,
                             elementwise_affine=m.elementwise_affine, bias=_has_bias(m))
    if isinstance(m, GroupNorm):
        return tnn.GroupNorm(m.num_groups, m.num_channels, eps=m.eps, affine=m.affine,
                             bias=_has_bias(m))
    if isinstance(m, (InstanceNorm1d, InstanceNorm2d)):
        cls = tnn.InstanceNorm1d if isinstance(m, InstanceNorm1d) else tnn.InstanceNorm2d
        return cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats, bias=_has_bias(m))
    return None


def _norm_from_torch(t, tnn, dtype):
    """The gammabeta twin of a torch LayerNorm, GroupNorm or InstanceNorm1d/2d; ``None`` for
    other layers (γ and β start at 1 and 0: the torch values are loaded afterwards)."""
    kind = type(t)
    if kind is tnn.LayerNorm:
        return LayerNorm(tuple(t.normalized_shape), eps=t.eps,
                         elementwise_affine=t.elementwise_affine, bias=_has_bias(t),
                         dtype=dtype)
    if kind is tnn.GroupNorm:
        return GroupNorm(t.num_groups, t.num_channels, eps=t.eps, affine=t.affine,
                         bias=_has_bias(t), dtype=dtype)
    if kind in (tnn.InstanceNorm1d, tnn.InstanceNorm2d):
        cls = InstanceNorm1d if kind is tnn.InstanceNorm1d else InstanceNorm2d
        return cls(t.num_features, eps=t.eps, momentum=t.momentum, affine=t.affine,
                   track_running_stats=t.track_running_stats, bias=_has_bias(t), dtype=dtype)
    return None


def _tree_to_torch(m: nn.Module, tnn, where: str):
    if isinstance(m, nn.Sequential):
        seq = tnn.Sequential()
        for key, child in m._modules.items():
            seq.add_module(key, _tree_to_torch(child, tnn, f"{where}.{key}" if where else key))
        return seq
    if isinstance(m, nn.Residual):
        sub = f"{where}." if where else ""
        block = _tree_to_torch(m.block, tnn, sub + "block")
        short = None if m.shortcut is None else _tree_to_torch(m.shortcut, tnn, sub + "shortcut")
        return torch_residual_class()(block, short)
    return _leaf_to_torch(m, tnn, where)


def to_torch(model: nn.Module):
    """Build the equivalent ``torch.nn`` module tree and copy every parameter and buffer.

    Parameters
    ----------
    model : gammabeta.nn.Module
        A tree of the supported layers (see the module docstring).

    Returns
    -------
    torch.nn.Module
        Same structure, same state-dict keys and shapes (filled with
        ``load_state_dict(strict=True)``), same dtype and the same train/eval mode; its outputs
        equal gammabeta's in both modes.
    """
    torch = _torch()
    tm = _tree_to_torch(model, torch.nn, "")
    sd = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in model.state_dict().items()}
    dtype = next((v.dtype for v in sd.values() if v.is_floating_point()), torch.float32)
    tm.to(dtype)
    tm.load_state_dict(sd, strict=True)
    for (_, g), t in zip(model.named_modules(), tm.modules(), strict=False):
        t.train(g.training)
    return tm


# ----- torch -> gammabeta ------------------------------------------------------------------------
def _check(cond: bool, t, where: str, what: str) -> None:
    if not cond:
        raise ConfigError(f"from_torch: {where or '(root)'} ({t!r}) uses {what}, which "
                          "gammabeta does not support")


def _leaf_from_torch(t, tnn, where: str, dtype):
    kind = type(t)
    zeros = dict(weight_init="zeros", bias_init="zeros")  # placeholders: torch's values follow
    if kind is tnn.Linear:
        return nn.Linear(t.in_features, t.out_features, bias=t.bias is not None, dtype=dtype,
                         **zeros)
    if kind in (tnn.Conv1d, tnn.Conv2d):
        _check(t.padding_mode == "zeros", t, where, f"padding_mode={t.padding_mode!r}")
        cls = nn.Conv1d if kind is tnn.Conv1d else nn.Conv2d
        return cls(t.in_channels, t.out_channels, t.kernel_size, stride=t.stride,
                   padding=t.padding, dilation=t.dilation, groups=t.groups,
                   bias=t.bias is not None, dtype=dtype, **zeros)
    if kind in (tnn.BatchNorm1d, tnn.BatchNorm2d):
        cls = nn.BatchNorm1d if kind is tnn.BatchNorm1d else nn.BatchNorm2d
        return cls(t.num_features, eps=t.eps, momentum=t.momentum, affine=t.affine,
                   track_running_stats=t.track_running_stats, dtype=dtype)
    norm = _norm_from_torch(t, tnn, dtype)
    if norm is not None:
        return norm
    if kind is tnn.LeakyReLU:
        return nn.LeakyReLU(t.negative_slope)
    if kind is tnn.GELU:
        return nn.GELU(t.approximate)
    simple = {tnn.ReLU: nn.ReLU, tnn.Sigmoid: nn.Sigmoid, tnn.Tanh: nn.Tanh,
              tnn.Identity: nn.Identity}
    if kind in simple:
        return simple[kind]()
    if kind is tnn.Dropout:
        return nn.Dropout(t.p)
    if kind is tnn.Flatten:
        return nn.Flatten(t.start_dim, t.end_dim)
    if kind is tnn.Unflatten:
        return nn.Unflatten(t.dim, t.unflattened_size)
    if kind in (tnn.MaxPool1d, tnn.MaxPool2d):
        _check(not t.ceil_mode and not t.return_indices, t, where, "ceil_mode/return_indices")
        _check(all(d == 1 for d in np.atleast_1d(t.dilation)), t, where, "dilation")
        cls = nn.MaxPool1d if kind is tnn.MaxPool1d else nn.MaxPool2d
        return cls(t.kernel_size, stride=t.stride, padding=t.padding)
    if kind in (tnn.AvgPool1d, tnn.AvgPool2d):
        _check(not t.ceil_mode and getattr(t, "divisor_override", None) is None, t, where,
               "ceil_mode/divisor_override")
        cls = nn.AvgPool1d if kind is tnn.AvgPool1d else nn.AvgPool2d
        return cls(t.kernel_size, stride=t.stride, padding=t.padding,
                   count_include_pad=t.count_include_pad)
    if kind is tnn.AdaptiveAvgPool1d:
        return nn.AdaptiveAvgPool1d(t.output_size)
    if kind is tnn.AdaptiveAvgPool2d:
        return nn.AdaptiveAvgPool2d(t.output_size)
    raise ConfigError(f"from_torch: layer {where or '(root)'} is a torch {kind.__name__}, which "
                      "gammabeta cannot represent; supported: " + _SUPPORTED)


def _tree_from_torch(t, tnn, where: str, dtype) -> nn.Module:
    sub = f"{where}." if where else ""
    if isinstance(t, tnn.Sequential):
        seq = nn.Sequential()
        for key, child in t.named_children():
            seq.add_module(key, _tree_from_torch(child, tnn, sub + key, dtype))
        return seq
    if type(t).__name__ == "Residual" and isinstance(getattr(t, "block", None), tnn.Module):
        short = getattr(t, "shortcut", None)
        return nn.Residual(_tree_from_torch(t.block, tnn, sub + "block", dtype),
                           None if short is None else
                           _tree_from_torch(short, tnn, sub + "shortcut", dtype))
    return _leaf_from_torch(t, tnn, where, dtype)


def from_torch(torch_module) -> nn.Module:
    """Build the gammabeta model equivalent to a ``torch.nn`` tree and copy its state.

    Parameters
    ----------
    torch_module : torch.nn.Module
        ``Sequential`` containers (their child names become the gammabeta keys), the leaf
        types listed in the module docstring, and ``Residual`` modules with ``block`` and
        ``shortcut`` children (such as the ones :func:`to_torch` makes).

    Returns
    -------
    gammabeta.nn.Module
        Same keys, shapes, values, dtype and train/eval mode.
    """
    torch = _torch()
    sd = torch_module.state_dict()
    dtype = next((np.dtype(str(v.dtype).replace("torch.", "")) for v in sd.values()
                  if v.is_floating_point()), np.dtype(np.float32))
    model = _tree_from_torch(torch_module, torch.nn, "", dtype)
    model.load_state_dict(_to_numpy_dict(sd, "from_torch"), strict=True)
    for (_, g), t in zip(model.named_modules(), torch_module.modules(), strict=False):
        g.training = bool(t.training)
    return model


# ----- state dicts -------------------------------------------------------------------------------
def _to_numpy_dict(sd: Mapping, where: str) -> dict[str, np.ndarray]:
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise StateDictError(f"{where}: key {k!r} is a {type(k).__name__}, expected str")
        if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor, without importing torch
            v = v.detach().cpu().numpy()
        a = np.asarray(v)
        if a.dtype.kind not in "fiub":
            raise StateDictError(f"{where}: key {k!r} has dtype {a.dtype}; expected a numeric "
                                 "tensor or array")
        out[k] = a
    return out


def load_torch_state_dict(model: nn.Module, path_or_dict, strict: bool = True):
    """Load a PyTorch state dict into ``model`` in place, checking every key and shape.

    Parameters
    ----------
    model : gammabeta.nn.Module
    path_or_dict : str, os.PathLike or mapping
        A safetensors file (e.g. written by ``safetensors.torch.save_file(m.state_dict(),
        path)``) or a dict of ``torch.Tensor``/NumPy arrays. Pickles (``torch.save`` files) are
        refused unread: loading never runs code from the file.
    strict : bool, default True
        Refuse missing or unexpected keys.

    Returns
    -------
    (missing_keys, unexpected_keys)

    Raises
    ------
    CheckpointError
        The file is missing, truncated, a pickle or not safetensors.
    StateDictError
        The first key that is missing, unexpected, of another shape or non-numeric, with both
        shapes.
    """
    from .io import load_checkpoint

    if isinstance(path_or_dict, (str, os.PathLike)):
        where = str(Path(path_or_dict))
        sd, _ = load_checkpoint(path_or_dict)
    elif isinstance(path_or_dict, Mapping):
        where = "state dict"
        sd = path_or_dict
    else:
        raise ConfigError(f"load_torch_state_dict: got a {type(path_or_dict).__name__}; "
                          "expected a safetensors path or a dict of tensors/arrays")
    arrays = _to_numpy_dict(sd, where)
    try:
        return model.load_state_dict(arrays, strict=strict)
    except StateDictError as e:
        raise StateDictError(f"{where}: {e}") from None
