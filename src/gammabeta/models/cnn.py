"""Convolutional builders: ``cnn`` (conv–BN–ReLU stacks), ``papercnn`` and ``resnet``.

Inputs of shape ``(L,)`` (MNIST-1D) are viewed as one channel ``(1, L)``; ``(C, L)`` gives 1-D
convolutions and ``(C, H, W)`` 2-D ones.
"""

from __future__ import annotations

import math

from .. import nn
from ..errors import ConfigError
from . import activation, register_model
from .norms import check_norm, linear_bias, norm_layer

_LAYERS = {1: (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
           2: (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)}


def _front(input_shape) -> tuple[list[nn.Module], tuple[int, ...]]:
    """Layers that bring the input to ``(C, *spatial)``, and that shape."""
    if len(input_shape) == 1:
        return [nn.Unflatten(1, (1, input_shape[0]))], (1, input_shape[0])
    if len(input_shape) in (2, 3):
        return [], tuple(input_shape)
    raise ConfigError(f"convolutional models take inputs (L,), (C, L) or (C, H, W); got "
                      f"{tuple(input_shape)}")


def _conv_bn_act(conv, c_in, c_out, rng, norm, act, k=3, stride=1, padding=1,
                 weight_init="kaiming_normal", gamma_init="ones", beta_init="zeros",
                 norm_options=None):
    """Conv → [norm] → act; the conv has no bias where the norm would subtract it (batch or
    instance statistics: β plays that role)."""
    layers: list[nn.Module] = [conv(c_in, c_out, k, stride=stride, padding=padding,
                                    bias=linear_bias(norm), weight_init=weight_init, rng=rng)]
    layer = norm_layer(norm, c_out, 2 if conv is nn.Conv2d else 1, rng, gamma_init, beta_init,
                       norm_options)
    if layer is not None:
        layers.append(layer)
    if act:
        layers.append(activation(act))
    return layers


def _out_len(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


@register_model("cnn")
def cnn(input_shape, num_classes, rng, channels=32, layers=8, pool_every=2, norm="batch",
        act="relu", dropout=0.0, weight_init="kaiming_normal", bias_init="torch_default",
        gamma_init="ones", beta_init="zeros", hidden=None, norm_options=None) -> nn.Sequential:
    """``layers`` × (Conv k3 → norm → ReLU), a 2× max-pool after every ``pool_every`` of them.

    Ends with Flatten → [Dropout] → Linear. ``hidden`` is accepted and ignored (shared CLI).
    """
    norm_options = check_norm(norm, norm_options)
    front, shape = _front(input_shape)
    dims = len(shape) - 1
    conv, pool, _ = _LAYERS[dims]
    out: list[nn.Module] = list(front)
    c, spatial = shape[0], list(shape[1:])
    for i in range(int(layers)):
        out += _conv_bn_act(conv, c, channels, rng, norm, act, weight_init=weight_init,
                            gamma_init=gamma_init, beta_init=beta_init,
                            norm_options=norm_options)
        c = channels
        if (i + 1) % pool_every == 0 and i + 1 < layers and min(spatial) >= 4:
            out.append(pool(2))
            spatial = [s // 2 for s in spatial]
    out.append(nn.Flatten())
    if dropout:
        out.append(nn.Dropout(dropout, rng=rng))
    out.append(nn.Linear(c * math.prod(spatial), num_classes, rng=rng, bias_init=bias_init))
    return nn.Sequential(*out)


@register_model("papercnn")
def papercnn(input_shape, num_classes, rng, channels=25, norm="batch", act="relu",
             dropout=0.0, weight_init="torch_default", bias_init="torch_default",
             gamma_init="ones", beta_init="zeros", hidden=None,
             norm_options=None) -> nn.Sequential:
    """The MNIST-1D paper's ConvBase: Conv1d(k5 s2 p1), 2 × Conv1d(k3 s2 p1), Linear(125→10).

    ``norm="none"`` is the paper's network exactly; ``norm="batch"`` adds BN after each conv
    (any other ``norm`` its layer).
    """
    norm_options = check_norm(norm, norm_options)
    front, shape = _front(input_shape)
    if len(shape) != 2:
        raise ConfigError(f"papercnn is a 1-D network; got input shape {tuple(input_shape)}")
    out: list[nn.Module] = list(front)
    c, n = shape
    for k in (5, 3, 3):
        out.append(nn.Conv1d(c, channels, k, stride=2, padding=1, bias=linear_bias(norm),
                             weight_init=weight_init, bias_init=bias_init, rng=rng))
        layer = norm_layer(norm, channels, 1, rng, gamma_init, beta_init, norm_options)
        if layer is not None:
            out.append(layer)
        out.append(activation(act))
        c, n = channels, _out_len(n, k, 2, 1)
    out.append(nn.Flatten())
    if dropout:
        out.append(nn.Dropout(dropout, rng=rng))
    out.append(nn.Linear(c * n, num_classes, rng=rng, weight_init=weight_init,
                         bias_init=bias_init))
    return nn.Sequential(*out)


@register_model("resnet")
def resnet(input_shape, num_classes, rng, channels=16, stages=3, blocks=1, norm="batch",
           act="relu", dropout=0.0, weight_init="kaiming_normal", bias_init="torch_default",
           gamma_init="ones", beta_init="zeros", zero_init_residual=False,
           hidden=None, norm_options=None) -> nn.Sequential:
    """A small ResNet: stem conv, ``stages`` × ``blocks`` basic blocks, global average pool.

    Basic block: Residual(Conv–BN–ReLU–Conv–BN, shortcut) → ReLU; the first block of every
    stage after the first halves the resolution and doubles the channels, with a 1×1
    Conv–BN projection shortcut. ``zero_init_residual=True`` sets γ of the last BN in every
    block to 0, so each block starts as the identity (Goyal et al. 2017; torchvision).
    """
    norm_options = check_norm(norm, norm_options)
    front, shape = _front(input_shape)
    dims = len(shape) - 1
    conv, _, gap = _LAYERS[dims]
    kw = dict(weight_init=weight_init, gamma_init=gamma_init, beta_init=beta_init,
              norm_options=norm_options)
    out: list[nn.Module] = list(front)
    out += _conv_bn_act(conv, shape[0], channels, rng, norm, act, **kw)
    c = channels
    for s in range(int(stages)):
        for b in range(int(blocks)):
            stride = 2 if (s > 0 and b == 0) else 1
            c_out = channels * 2**s
            body = (_conv_bn_act(conv, c, c_out, rng, norm, act, stride=stride, **kw)
                    + _conv_bn_act(conv, c_out, c_out, rng, norm, None, **kw))
            shortcut = None
            if stride != 1 or c != c_out:
                sc = [conv(c, c_out, 1, stride=stride, bias=linear_bias(norm),
                           weight_init=weight_init, rng=rng)]
                layer = norm_layer(norm, c_out, dims, rng, options=norm_options)
                if layer is not None:
                    sc.append(layer)
                shortcut = nn.Sequential(*sc)
            out += [nn.Residual(nn.Sequential(*body), shortcut), activation(act)]
            c = c_out
    out += [gap(1), nn.Flatten()]
    if dropout:
        out.append(nn.Dropout(dropout, rng=rng))
    out.append(nn.Linear(c, num_classes, rng=rng, bias_init=bias_init))
    model = nn.Sequential(*out)
    if zero_init_residual:
        nn.zero_init_residual_(model)
    return model
