"""Model builders for the CLI and the studies: each returns a plain ``nn.Sequential``.

Every builder takes ``(input_shape, num_classes, rng, **options)`` and its options are JSON
values, so a model is rebuilt from the config saved beside its checkpoint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from .. import nn
from ..errors import ConfigError

__all__ = ["BUILDERS", "build_model", "register_model", "activation", "check_norm", "norm_layer",
           "NORMS"]

BUILDERS: dict[str, Callable] = {}


def register_model(name: str):
    """Decorator adding a builder to :data:`BUILDERS`."""

    def deco(fn):
        BUILDERS[name] = fn
        return fn

    return deco


def build_model(name: str, input_shape, num_classes: int, rng=None, **options) -> nn.Module:
    """Build the registered model ``name``; unknown names list the valid ones."""
    if name not in BUILDERS:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(sorted(BUILDERS))}")
    rng = np.random.default_rng() if rng is None else rng
    accepted = inspect.signature(BUILDERS[name]).parameters
    bad = sorted(k for k in options if k not in accepted or k in ("input_shape", "rng"))
    if bad:
        ok = [k for k in accepted if k not in ("input_shape", "num_classes", "rng")]
        raise ConfigError(f"model {name!r} has no option(s) {bad}; it takes {ok}")
    return BUILDERS[name](tuple(input_shape), int(num_classes), rng, **options)


_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh,
                "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    """A fresh activation layer by name (relu, leaky_relu, tanh, sigmoid, gelu)."""
    if name not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; expected one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


from . import cnn, mlp  # noqa: E402,F401  (register the builders)
from .norms import NORMS, check_norm, norm_layer  # noqa: E402
