"""Optimizers (SGD, Adam, AdamW), the ``param_groups`` helper and learning-rate schedules.

Names, arguments, defaults and update formulas follow ``torch.optim``; updates are in place
on ``Parameter.data`` and keep its dtype.
"""

from .clip import clip_grad_norm_
from .optimizers import SGD, Adam, AdamW, Optimizer, param_groups
from .schedules import CosineAnnealingLR, LinearWarmup, LRScheduler, OneCycleLR, StepLR

__all__ = [
    "clip_grad_norm_",
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "param_groups",
    "LRScheduler",
    "StepLR",
    "CosineAnnealingLR",
    "LinearWarmup",
    "OneCycleLR",
]
