"""Inference from a training run's checkpoint: rebuild the model, read inputs, softmax, argmax.

A run folder written by ``gammabeta train`` holds ``model.safetensors`` whose metadata carry
``config`` (the TrainConfig JSON), ``input_shape`` (a JSON list) and ``num_classes``;
:func:`load_model` rebuilds the network from them and loads the weights (strict keys and
shapes, never a pickle). :func:`load_inputs` reads ``.npz`` (array ``x``, else ``x_test``;
anything else is refused, listing the arrays found), ``.csv`` (numbers, an optional header
row naming every column; a ``label``/``y`` column is taken as labels) with the readers
``gammabeta train`` uses (:mod:`gammabeta.data.files`), or IDX (``uint8`` images scaled by
1/255, as ``load_mnist`` does) and fits them to the model: ``(N, *input_shape)`` as is,
``(N, prod(input_shape))`` or any ``(N, ...)`` of the same size per sample reshaped;
anything else is a :class:`~gammabeta.errors.ShapeError` naming the file, the shape it has
and the shape the model expects.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import nn
from ..errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NonFiniteError,
    ShapeError,
    StateDictError,
)

__all__ = ["LoadedModel", "load_model", "load_inputs", "predict_proba", "format_predictions",
           "check_range", "check_outputs"]


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, in eval mode, with what it was trained on."""

    model: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    config: object
    path: Path
    input_range: tuple[float, float] | None = None  # of the training inputs, if recorded
    columns: tuple = ()  # the training CSV's feature columns, if it had a header


def _checkpoint_path(path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "model.safetensors"
    if p.suffix.lower() in (".npz", ".csv", ".onnx"):
        raise CheckpointError(f"--model {p}: is a {p.suffix} file; expected a run folder "
                              "holding model.safetensors (gammabeta train --out DIR)")
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint; expected a run folder holding "
                              "model.safetensors (gammabeta train --out DIR) or the file itself")
    return p


_MAX_RANK = 4  # (features,), (C, L), (C, H, W), (C, D, H, W)
_MAX_INPUT = 10**8  # values per sample


def _meta_json(p: Path, key: str, raw) -> object:
    """Decode one metadata value (a JSON string); CheckpointError naming the file if not."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        raise CheckpointError(f"{p}: metadata {key} = {str(raw)[:80]!r} is not valid JSON; "
                              "expected a checkpoint written by gammabeta train") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _meta_input_shape(p: Path, raw) -> tuple[int, ...]:
    """``input_shape``: a list of 1-4 positive ints, at most 10**8 values per sample."""
    v = _meta_json(p, "input_shape", raw)
    if not (isinstance(v, list) and 1 <= len(v) <= _MAX_RANK and all(_is_int(s) for s in v)
            and all(s > 0 for s in v) and math.prod(v) <= _MAX_INPUT):
        raise CheckpointError(f"{p}: metadata input_shape = {str(raw)[:80]!r}; expected a list "
                              f"of 1 to {_MAX_RANK} positive ints with at most {_MAX_INPUT:,} "
                              "values per sample")
    return tuple(v)


def _meta_num_classes(p: Path, raw) -> int:
    """``num_classes``: an int in [2, MAX_CLASSES] (10,000), as training allows."""
    from ..data.limits import MAX_CLASSES

    v = _meta_json(p, "num_classes", raw)
    if not (_is_int(v) and 2 <= v <= MAX_CLASSES):
        raise CheckpointError(f"{p}: metadata num_classes = {str(raw)[:80]!r}; expected an int "
                              f"from 2 to {MAX_CLASSES:,}")
    return v


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
    input_shape = _meta_input_shape(p, meta["input_shape"])
    num_classes = _meta_num_classes(p, meta["num_classes"])
    try:
        cfg = TrainConfig.from_dict(json.loads(meta["config"])).validate()
        from ..models.size import check_fits

        check_fits(cfg.model, input_shape, num_classes, 1, cfg.model_kwargs())
        model = build_model(cfg.model, input_shape, num_classes, rng=np.random.default_rng(0),
                            **cfg.model_kwargs())
    except (ValueError, TypeError, RecursionError) as e:  # ConfigError is a ValueError
        raise CheckpointError(f"{p}: its metadata config cannot rebuild the model ({e})") \
            from None
    try:
        model.load_state_dict(state, strict=True)
    except StateDictError as e:
        raise StateDictError(f"{p}: {e}") from None
    model.eval()
    columns = _meta_json(p, "input_columns", meta["input_columns"]) \
        if "input_columns" in meta else []
    if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
        raise CheckpointError(f"{p}: metadata input_columns = {str(columns)[:80]!r}; expected "
                              "a list of column names")
    return LoadedModel(model, input_shape, num_classes, cfg, p,
                       _meta_range(p, meta.get("input_range")), tuple(columns))


def _meta_range(p: Path, raw) -> tuple[float, float] | None:
    """``input_range``: [min, max] of the training inputs (finite, min <= max), if present."""
    if raw is None:
        return None
    v = _meta_json(p, "input_range", raw)
    if not (isinstance(v, list) and len(v) == 2 and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in v) and v[0] <= v[1]):
        raise CheckpointError(f"{p}: metadata input_range = {str(raw)[:80]!r}; expected "
                              "[min, max] of the training inputs")
    return float(v[0]), float(v[1])


def check_range(x: np.ndarray, lm: LoadedModel, source) -> None:
    """Refuse inputs whose spread differs from the training inputs' by more than 50×: the
    sign of a different scaling (raw 0-255 pixels against a model trained on 0-1, or the
    reverse), which would give confident, wrong predictions."""
    if lm.input_range is None or x.size == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    t_lo, t_hi = lm.input_range
    spread, t_spread = hi - lo, t_hi - t_lo
    ratio = max(spread / t_spread, t_spread / spread) if spread > 0 and t_spread > 0 else 1
    if ratio > 50:
        raise DataError(f"{source}: inputs span [{lo:.4g}, {hi:.4g}] but the model was trained "
                        f"on inputs spanning [{t_lo:.4g}, {t_hi:.4g}] ({ratio:.0f}x apart); "
                        "scale them as the training data was (IDX images are divided by 255, "
                        ".npz and .csv values are used as they are)")


def check_outputs(probs: np.ndarray, model_path) -> None:
    """Refuse non-finite probabilities (weights or inputs that overflow float32)."""
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise NonFiniteError(f"{model_path}: the model's output for sample {i} is not finite "
                             f"({int(bad.sum())} of {len(probs)} samples); its weights or the "
                             "inputs overflow float32")


def _read_npz(path: Path, max_classes: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Inputs ``x`` (else ``x_test``) and, if present, labels ``y`` (``y_test``) of an .npz."""
    from ..data.files import check_labels, read_npz

    arrays = read_npz(path, [(("x",), ("y",)), (("x_test",), ("y_test",))],
                      expected="'x' (labels 'y' optional) or 'x_test' (labels 'y_test' "
                               "optional) holding the inputs")
    xk, yk = ("x", "y") if "x" in arrays else ("x_test", "y_test")
    y = arrays.get(yk)
    if y is not None:
        y = check_labels(y, f"{path}: {yk}", max_classes)
    return arrays[xk], y, xk


def load_inputs(path, input_shape, *, max_classes: int | None = None, columns=(),
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a ``.npz``/``.csv``/IDX file; return ``(x, labels or None)`` shaped for the model.

    ``x`` is float32 ``(N, *input_shape)``. The .npz and .csv readers are the ones
    ``gammabeta train`` uses (:mod:`gammabeta.data.files`): an .npz needs ``x`` (or
    ``x_test``), labels ``y`` (``y_test``) optional; a .csv may have a header row (all
    names) or not (first row all numbers), labels come from a ``label``/``y`` column only.
    Labels must be class indices below ``max_classes`` (default
    :data:`~gammabeta.data.limits.MAX_CLASSES`). Raises :class:`DataError` for unreadable,
    empty or non-finite data and bad labels, and :class:`ShapeError` (file, got shape,
    expected shape) when the samples do not fit ``input_shape``.
    """
    from ..data import read_idx
    from ..data.files import MAX_CLASSES, check_features, read_csv

    max_classes = MAX_CLASSES if max_classes is None else max_classes
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a .npz, .csv or IDX input file")
    if path.exists() and not path.is_file():
        raise DataError(f"{path}: is not a regular file (a device, FIFO or socket); expected "
                        "a .npz, .csv or IDX input file")
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected a .npz, .csv or IDX input file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected a .npz, .csv or IDX input file")
    ext = path.suffix.lower()
    y: np.ndarray | None = None
    yname = "labels"
    if ext == ".npz":
        x, y, xname = _read_npz(path, max_classes)
        yname = {"x": "y", "x_test": "y_test"}[xname]
    elif ext == ".csv":
        table = read_csv(path, header="auto", max_classes=max_classes)
        x, y, xname = table.x, table.y, "features"
        yname = f"column {table.label!r}"
        named = tuple(h for h in table.header or () if h != table.label)
        if columns and named and named != tuple(columns):
            raise DataError(f"{path}: feature columns {list(named)[:8]} differ from the ones "
                            f"the model was trained on, {list(columns)[:8]} (names or order); "
                            "give the columns as in training")
    else:
        x, xname = read_idx(path), "inputs"
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255.0)
    input_shape = tuple(int(s) for s in input_shape)
    want = f"(N, {', '.join(map(str, input_shape))})" + \
        (f" or (N, {math.prod(input_shape)})" if len(input_shape) > 1 else "")
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: {xname} has dtype {x.dtype}; expected numbers")
    if x.ndim >= 1 and len(x) == 0:
        raise DataError(f"{path}: {xname} has shape {x.shape}, so it holds no samples; "
                        "expected at least one")
    if x.ndim < 2 or math.prod(x.shape[1:]) != math.prod(input_shape):
        raise ShapeError(f"{path}: got inputs of shape {x.shape}; the model expects "
                         f"{want} (one sample of shape {input_shape} per row)")
    x = check_features(x, f"{path}: {xname}").reshape((len(x), *input_shape))
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {xname} has {len(x)} samples but {yname} has {len(y)}; "
                        "expected the same number")
    return np.ascontiguousarray(x), y


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
