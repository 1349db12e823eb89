"""Gradient clipping by global norm, as ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, NonFiniteError


def clip_grad_norm_(parameters, max_norm: float, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place so their joint L2 norm is at most ``max_norm``.

    ``total = sqrt(Σ ||g||²)``; when ``total > max_norm`` every gradient is multiplied by
    ``max_norm / (total + 1e-6)`` (PyTorch's formula). Returns ``total`` (before clipping).
    """
    if not max_norm > 0:
        raise ConfigError(f"clip_grad_norm_: max_norm={max_norm}; expected a positive number")
    grads = [p.grad for p in parameters if p.grad is not None]
    total = math.sqrt(sum(float(np.vdot(g, g).real) for g in grads))
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise NonFiniteError(f"clip_grad_norm_: the total gradient norm is {total}; "
                                 "expected a finite number")
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= g.dtype.type(coef)
    return total
