"""The normalization layer each builder puts after a Linear/Conv: one name → one layer.

After a Linear (features, ``(N, C)``) and after a Conv (``(N, C, L)`` or ``(N, C, H, W)``):

- ``batch``: ``BatchNorm1d(C)``; after a Conv2d ``BatchNorm2d(C)``.
- ``layer``: ``LayerNorm(C)`` after a Linear; after a Conv ``GroupNorm(1, C)``, one group:
  Wu & He's "LN" for conv nets (statistics over channels and positions, per-channel γ, β).
- ``group``: ``GroupNorm(G, C)``.
- ``instance``: ``InstanceNorm1d/2d(C, affine=True)`` after a Conv; refused after a Linear (a
  feature vector has no positions to normalize over).
- ``renorm``: ``BatchRenorm1d/2d(C, r_max, d_max, warmup_steps, ramp_steps)``.
- ``ghost``: ``GhostBatchNorm1d/2d(C, virtual_batch_size)``.
- ``none``: nothing (the Linear/Conv keeps its bias).

``G`` is ``norm_options["groups"]`` (default: :data:`DEFAULT_GROUPS`, or the largest divisor of
``C`` below it when it does not divide ``C``; a ``groups`` given explicitly must divide every
width). The Linear/Conv before the layer drops its bias where the layer would subtract it
anyway (batch statistics remove a per-channel constant; so does instance normalization) and
keeps it before ``layer``/``group``, whose statistics mix channels with different biases.
"""

from __future__ import annotations

from .. import nn
from ..config import DEFAULT_GROUPS, NORMS
from ..errors import ConfigError

__all__ = ["NORMS", "DEFAULT_GROUPS", "norm_layer", "linear_bias", "check_norm",
           "norm_option_names", "norm_modules", "norm_gammas"]

# the option each norm reads from ``norm_options`` (all others are refused for it)
_OPTIONS = {"group": ("groups",), "ghost": ("virtual_batch_size",),
            "renorm": ("r_max", "d_max", "warmup_steps", "ramp_steps")}


def norm_option_names(norm: str) -> tuple[str, ...]:
    """The ``norm_options`` keys that ``norm`` uses."""
    return _OPTIONS.get(norm, ())


def check_norm(norm: str, options: dict | None = None) -> dict:
    """Refuse an unknown ``norm`` or an option it does not use; return the options."""
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
    options = dict(options or {})
    bad = sorted(k for k in options if k not in norm_option_names(norm))
    if bad:
        uses = norm_option_names(norm)
        raise ConfigError(f"norm_options {bad} do not apply to norm={norm!r}; it takes "
                          f"{', '.join(uses) if uses else 'none'}")
    return options


def linear_bias(norm: str) -> bool:
    """Whether the Linear/Conv before ``norm`` keeps its bias (see the module docstring)."""
    return norm in ("none", "layer", "group")


def _groups(width: int, options: dict) -> int:
    g = options.get("groups")
    if g is None:
        return max(d for d in range(1, min(DEFAULT_GROUPS, width) + 1) if width % d == 0)
    if width % g:
        raise ConfigError(f"groups={g} does not divide a layer's {width} channels; GroupNorm "
                          f"needs the channels split evenly (choose a divisor of {width})")
    return g


def norm_layer(norm: str, width: int, dims: int, rng, gamma_init="ones", beta_init="zeros",
               options: dict | None = None) -> nn.Module | None:
    """The layer for ``norm`` after a layer of ``width`` outputs; ``None`` for ``"none"``.

    ``dims``: 0 after a Linear (``(N, C)``), 1 or 2 after a Conv1d/Conv2d.
    """
    options = check_norm(norm, options)
    if norm == "none":
        return None
    affine = dict(rng=rng)
    if norm in ("batch", "renorm", "ghost"):
        affine.update(gamma_init=gamma_init, beta_init=beta_init)
    else:
        affine.update(weight_init=gamma_init, bias_init=beta_init)
    two = dims == 2
    if norm == "batch":
        return (nn.BatchNorm2d if two else nn.BatchNorm1d)(width, **affine)
    if norm == "renorm":
        return (nn.BatchRenorm2d if two else nn.BatchRenorm1d)(width, **options, **affine)
    if norm == "ghost":
        vbs = options.get("virtual_batch_size")
        if vbs is None:
            raise ConfigError("norm='ghost' needs virtual_batch_size (--virtual-batch-size): "
                              "the samples per ghost batch")
        return (nn.GhostBatchNorm2d if two else nn.GhostBatchNorm1d)(
            width, virtual_batch_size=vbs, **affine)
    if norm == "layer":
        return nn.LayerNorm(width, **affine) if dims == 0 else nn.GroupNorm(1, width, **affine)
    if norm == "group":
        return nn.GroupNorm(_groups(width, options), width, **affine)
    if dims == 0:
        raise ConfigError("norm='instance' normalizes each channel over its positions; an MLP's "
                          "features have none (use a conv model, or norm='layer')")
    return (nn.InstanceNorm2d if two else nn.InstanceNorm1d)(width, affine=True, **affine)


_NORM_CLASSES = ("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
                 "FrozenBatchNorm1d", "FrozenBatchNorm2d")


def norm_modules(model: nn.Module) -> list[nn.Module]:
    """Every normalization layer of ``model`` (the BatchNorm family, LayerNorm, GroupNorm,
    InstanceNorm, frozen BatchNorm), in module order."""
    from ..nn._bn_base import _BatchNorm

    kinds = (_BatchNorm, *(getattr(nn, n) for n in _NORM_CLASSES if hasattr(nn, n)))
    return [m for m in model.modules() if isinstance(m, kinds)]


def norm_gammas(model: nn.Module) -> list:
    """The γ (``weight``) Parameters of every normalization layer of ``model``."""
    out = []
    for m in norm_modules(model):
        w = m._parameters.get("weight")
        if w is not None:
            out.append(w)
    return out
