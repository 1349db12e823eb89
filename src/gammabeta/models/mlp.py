"""Multilayer perceptrons: ``mlp`` and the MNIST-1D paper's residual ``resmlp``, with BN."""

from __future__ import annotations

import math

from .. import nn
from ..errors import ConfigError
from . import activation, register_model
from .norms import check_norm, linear_bias, norm_layer


def _hidden(hidden) -> tuple[int, ...]:
    if isinstance(hidden, str):
        try:
            hidden = [int(h) for h in hidden.split(",") if h.strip()]
        except ValueError:
            raise ConfigError(f"hidden={hidden!r}: expected comma-separated integers") from None
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"hidden={hidden}: expected one or more positive layer widths")
    return hidden


def _dense_block(n_in, n_out, rng, norm, act, dropout, weight_init, bias_init, gamma_init,
                 beta_init, norm_options=None) -> list[nn.Module]:
    """Linear → [norm] → activation → [Dropout]; the Linear has no bias when the norm would
    subtract it (batch statistics: β plays its role; see :mod:`gammabeta.models.norms`)."""
    layers: list[nn.Module] = [nn.Linear(n_in, n_out, bias=linear_bias(norm), rng=rng,
                                         weight_init=weight_init, bias_init=bias_init)]
    layer = norm_layer(norm, n_out, 0, rng, gamma_init, beta_init, norm_options)
    if layer is not None:
        layers.append(layer)
    layers.append(activation(act))
    if dropout:
        layers.append(nn.Dropout(dropout, rng=rng))
    return layers


@register_model("mlp")
def mlp(input_shape, num_classes, rng, hidden=(256, 256), norm="batch", act="relu",
        dropout=0.2, weight_init="torch_default", bias_init="torch_default",
        gamma_init="ones", beta_init="zeros", norm_options=None) -> nn.Sequential:
    """[Flatten] → (Linear → norm → act → Dropout) per hidden width → Linear to the classes."""
    norm_options = check_norm(norm, norm_options)
    hidden = _hidden(hidden)
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    n_in = math.prod(input_shape)
    for h in hidden:
        layers += _dense_block(n_in, h, rng, norm, act, dropout, weight_init, bias_init,
                               gamma_init, beta_init, norm_options)
        n_in = h
    layers.append(nn.Linear(n_in, num_classes, rng=rng, weight_init=weight_init,
                            bias_init=bias_init))
    return nn.Sequential(*layers)


@register_model("resmlp")
def resmlp(input_shape, num_classes, rng, hidden=(256, 256), norm="batch", act="relu",
           dropout=0.2, weight_init="torch_default", bias_init="torch_default",
           gamma_init="ones", beta_init="zeros", norm_options=None) -> nn.Sequential:
    """The MNIST-1D paper's residual MLP with BN inside each block.

    ``h = act(BN(L1 x)); h = h + act(BN(L2 h)) (once per further width); out = L3 h``;
    all hidden widths must be equal (the residual additions need it).
    """
    norm_options = check_norm(norm, norm_options)
    hidden = _hidden(hidden)
    if len(set(hidden)) != 1:
        raise ConfigError(f"resmlp: hidden={hidden}; residual blocks need equal widths")
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    w = hidden[0]
    layers += _dense_block(math.prod(input_shape), w, rng, norm, act, 0.0, weight_init,
                           bias_init, gamma_init, beta_init, norm_options)
    for _ in hidden[1:]:
        block = _dense_block(w, w, rng, norm, act, 0.0, weight_init, bias_init, gamma_init,
                             beta_init, norm_options)
        layers.append(nn.Residual(nn.Sequential(*block)))
    if dropout:
        layers.append(nn.Dropout(dropout, rng=rng))
    layers.append(nn.Linear(w, num_classes, rng=rng, weight_init=weight_init,
                            bias_init=bias_init))
    return nn.Sequential(*layers)
