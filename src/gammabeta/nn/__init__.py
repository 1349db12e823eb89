"""Layers with explicit, closed-form backward passes."""

from .module import (
    Module,
    Parameter,
    Sequential,
    detect_anomaly,
    is_anomaly_enabled,
    is_grad_enabled,
    no_grad,
    set_detect_anomaly,
)

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "detect_anomaly",
    "is_anomaly_enabled",
    "is_grad_enabled",
    "no_grad",
    "set_detect_anomaly",
]
