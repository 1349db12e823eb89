"""Layers with explicit, closed-form backward passes."""

from ._softmax import log_softmax, softmax
from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .batchrenorm import BatchRenorm1d, BatchRenorm2d
from .conv import Conv1d, Conv2d
from .frozen_bn import FrozenBatchNorm1d, FrozenBatchNorm2d, freeze_batchnorm
from .ghostbatchnorm import GhostBatchNorm1d, GhostBatchNorm2d
from .groupnorm import GroupNorm
from .instancenorm import InstanceNorm1d, InstanceNorm2d
from .layernorm import LayerNorm
from .layers import Dropout, Flatten, Identity, Unflatten
from .linear import Linear
from .losses import CrossEntropyLoss, MSELoss
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
from .pool import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from .precise_bn import update_bn_stats
from .residual import Residual, last_batchnorm, zero_init_residual_
from .syncbatchnorm import SyncBatchNorm, convert_sync_batchnorm

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "Conv1d", "Conv2d",
    "MaxPool1d", "MaxPool2d", "Residual", "last_batchnorm", "zero_init_residual_",
    "CrossEntropyLoss", "MSELoss", "log_softmax", "softmax",
    "GELU", "BatchNorm1d", "BatchNorm2d", "Dropout", "Flatten", "Identity", "LeakyReLU",
    "Linear", "Module", "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh", "Unflatten",
    "SyncBatchNorm", "convert_sync_batchnorm",
    "BatchRenorm1d", "BatchRenorm2d", "GhostBatchNorm1d", "GhostBatchNorm2d",
    "FrozenBatchNorm1d", "FrozenBatchNorm2d", "freeze_batchnorm", "update_bn_stats",
    "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
    "detect_anomaly", "is_anomaly_enabled", "is_grad_enabled", "no_grad", "set_detect_anomaly",
]
