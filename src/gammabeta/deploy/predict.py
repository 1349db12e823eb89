"""Inference from a training run's checkpoint: rebuild the model, read inputs, softmax, argmax.

A run folder written by ``gammabeta train`` holds ``model.safetensors`` whose metadata carry
``config`` (the TrainConfig JSON), ``input_shape`` (a JSON list) and ``num_classes``;
:func:`load_model` rebuilds the network from them and loads the weights (strict keys and
shapes, never a pickle). :func:`load_inputs` reads ``.npz`` (array ``x``, else ``x_test`` or the
only array), ``.csv`` (numbers, an optional header row; a ``label``/``y`` column is taken as
labels) or IDX (``uint8`` images scaled by 1/255, as ``load_mnist`` does) and fits them to the
model: ``(N, *input_shape)`` as is, ``(N, prod(input_shape))`` or any ``(N, ...)`` of the same
size per sample reshaped; anything else is a :class:`~gammabeta.errors.ShapeError` naming the
file, the shape it has and the shape the model expects.
"""

from __future__ import annotations

import csv
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import nn
from ..errors import CheckpointError, ConfigError, DataError, ShapeError, StateDictError

__all__ = ["LoadedModel", "load_model", "load_inputs", "predict_proba", "format_predictions"]

_LABELS = ("label", "y")


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, in eval mode, with what it was trained on."""

    model: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    config: object
    path: Path


def _checkpoint_path(path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint; expected a run folder holding "
                              "model.safetensors (gammabeta train --out DIR) or the file itself")
    return p


def load_model(path) -> LoadedModel:
    """Rebuild the trained model from ``DIR/model.safetensors`` (or that file), in eval mode."""
    from ..experiment import TrainConfig
    from ..io import load_checkpoint
    from ..models import build_model

    p = _checkpoint_path(path)
    state, meta = load_checkpoint(p)
    missing = [k for k in ("config", "input_shape", "num_classes") if k not in meta]
    if missing:
        raise CheckpointError(f"{p}: metadata lacks {missing}; expected a checkpoint written by "
                              "gammabeta train (config, input_shape, num_classes)")
    try:
        cfg = TrainConfig.from_dict(json.loads(meta["config"]))
        input_shape = tuple(int(s) for s in json.loads(meta["input_shape"]))
        num_classes = int(meta["num_classes"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{p}: unreadable metadata ({e})") from None
    model = build_model(cfg.model, input_shape, num_classes, rng=np.random.default_rng(0),
                        **cfg.model_kwargs())
    try:
        model.load_state_dict(state, strict=True)
    except StateDictError as e:
        raise StateDictError(f"{p}: {e}") from None
    model.eval()
    return LoadedModel(model, input_shape, num_classes, cfg, p)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    rows: list[list[str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: is not UTF-8 text ({e}); expected a CSV file") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e})") from None
    if not rows:
        raise DataError(f"{path}: holds no rows; expected numbers, one sample per row")
    header, label_col, first = None, None, 1

    def number(cell):
        try:
            return float(cell)
        except ValueError:
            return None

    if any(number(c) is None for c in rows[0]):
        header = [c.strip().lower() for c in rows[0]]
        label_col = next((header.index(n) for n in _LABELS if n in header), None)
    else:
        first = 0
    width = len(rows[0])
    table = np.empty((len(rows) - first, width), dtype=np.float64)
    for i, row in enumerate(rows[first:]):
        line = i + first + 1
        if len(row) != width:
            raise DataError(f"{path}: row {line} has {len(row)} fields; expected {width}")
        for j, cell in enumerate(row):
            v = number(cell)
            if v is None or not math.isfinite(v):
                col = header[j] if header else j + 1
                raise DataError(f"{path}: row {line}, column {col!r}: {cell.strip()!r} is not a "
                                "finite number")
            table[i, j] = v
    if len(table) == 0:
        raise DataError(f"{path}: has a header but no data rows")
    if label_col is None:
        return table, None
    return np.delete(table, label_col, axis=1), table[:, label_col].astype(np.int64)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if isinstance(z, np.ndarray):
        return z, None
    with z:
        keys = sorted(z.files)
        xk = next((k for k in ("x", "x_test") if k in keys), keys[0] if len(keys) == 1 else None)
        if xk is None:
            raise DataError(f"{path}: found arrays {keys}; expected 'x' (or 'x_test', or a "
                            "single array) holding the inputs")
        yk = {"x": "y", "x_test": "y_test"}.get(xk)
        try:
            x = z[xk]
            y = z[yk] if yk in keys else None
        except ValueError:
            raise DataError(f"{path}: array {xk!r} holds Python objects (pickled data), which "
                            "are refused; expected numbers") from None
    return x, y


def load_inputs(path, input_shape) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a ``.npz``/``.csv``/IDX file; return ``(x, labels or None)`` shaped for the model.

    ``x`` is float32 ``(N, *input_shape)``. Raises :class:`DataError` for unreadable or
    non-finite data and :class:`ShapeError` (file, got shape, expected shape) when the
    samples do not fit ``input_shape``.
    """
    from ..data import read_idx

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected a .npz, .csv or IDX input file")
    ext = path.suffix.lower()
    if ext == ".npz":
        x, y = _read_npz(path)
    elif ext == ".csv":
        x, y = _read_csv(path)
    else:
        x, y = read_idx(path), None
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255.0)
    input_shape = tuple(int(s) for s in input_shape)
    want = f"(N, {', '.join(map(str, input_shape))})" + \
        (f" or (N, {math.prod(input_shape)})" if len(input_shape) > 1 else "")
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: inputs have dtype {x.dtype}; expected numbers")
    if x.ndim < 2 or math.prod(x.shape[1:]) != math.prod(input_shape):
        raise ShapeError(f"{path}: got inputs of shape {x.shape}; the model expects "
                         f"{want} (one sample of shape {input_shape} per row)")
    x = np.ascontiguousarray(x, dtype=np.float32).reshape((len(x), *input_shape))
    if not np.isfinite(x).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise DataError(f"{path}: non-finite input at index {bad}; expected finite numbers")
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        y = None
    return x, y


def predict_proba(model: nn.Module, x, batch_size: int = 1000) -> np.ndarray:
    """Softmax class probabilities of ``model`` in eval mode (its mode is restored)."""
    from ..train import predict_logits

    if int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size}; expected >= 1")
    logits = predict_logits(model, x, int(batch_size)).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def format_predictions(probs: np.ndarray) -> str:
    """CSV text: ``index,prediction,p0,...,p{K-1}`` then one row per sample."""
    k = probs.shape[1]
    lines = ["index,prediction," + ",".join(f"p{i}" for i in range(k))]
    pred = probs.argmax(axis=1)
    for i, (c, row) in enumerate(zip(pred, probs, strict=True)):
        lines.append(f"{i},{int(c)}," + ",".join(f"{v:.6g}" for v in row))
    return "\n".join(lines) + "\n"
