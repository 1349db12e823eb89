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

from .fold import fold_batchnorm, fold_pair, fold_preceding_pair
from .onnx_export import DEFAULT_OPSET, export_onnx
from .predict import LoadedModel, format_predictions, load_inputs, load_model, predict_proba

__all__ = ["fold_batchnorm", "fold_pair", "fold_preceding_pair", "export_onnx", "DEFAULT_OPSET",
           "LoadedModel", "load_model", "load_inputs", "predict_proba", "format_predictions"]
