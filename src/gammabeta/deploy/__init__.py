"""Deployment: BatchNorm folding, ONNX export and inference from a checkpoint.

* :func:`fold_batchnorm` — a new inference model with each BatchNorm that follows a Linear/Conv
  merged into it: ``W' = W·γ/√(var+ε)``, ``b' = (b − mean)·γ/√(var+ε) + β``; with
  ``preceding=True`` also each BatchNorm that precedes an unpadded Linear/Conv
  (:func:`fold_preceding_pair`);
* :func:`export_onnx` — an ONNX file (input ``"input"`` ``(N, *input_shape)``, output
  ``"logits"``, opset 17 by default) built with ``onnx.helper``;
* :func:`load_model`, :func:`load_inputs`, :func:`predict_proba` — what ``gammabeta predict``
  runs.

None of these import ``onnx`` or ``torch`` at import time.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what static tools (the API docs, type checkers) read; loaded on first use
    from .fold import fold_batchnorm, fold_pair, fold_preceding_pair
    from .onnx_export import export_onnx
    from .predict import LoadedModel, format_predictions, load_inputs, load_model, predict_proba

DEFAULT_OPSET = 17  # the opset export_onnx writes unless told otherwise

_HOME = {"fold_batchnorm": "fold", "fold_pair": "fold", "fold_preceding_pair": "fold",
         "export_onnx": "onnx_export", "LoadedModel": "predict",
         "load_model": "predict", "load_inputs": "predict", "predict_proba": "predict",
         "format_predictions": "predict"}
__all__ = ["fold_batchnorm", "fold_pair", "fold_preceding_pair", "export_onnx", "DEFAULT_OPSET",
           "LoadedModel", "load_model", "load_inputs", "predict_proba", "format_predictions"]


def __getattr__(name: str):
    """The public names on first use, so that building the command line's parsers imports
    neither NumPy nor the model code."""
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
