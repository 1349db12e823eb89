"""Training-state checkpoints: everything needed to resume a run bit-identically.

One safetensors file (written atomically) holds the model's state dict (``model.*``), the
optimizer's per-parameter arrays (``optim.<index>.<name>``) and, as JSON metadata, the
optimizer's scalars and groups, the schedule, the loop position (epoch, batch, step), the
random generator's state and the history so far. Nothing in it is executable.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import CheckpointError
from .io import load_checkpoint, save_checkpoint

__all__ = ["save_training_state", "load_training_state", "FORMAT"]

FORMAT = "gammabeta-training-state-1"


def _encode(obj):
    """JSON-ready copy of ``obj``; tuples are tagged so they come back as tuples."""
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        raise CheckpointError("internal: arrays belong in tensors, not in JSON metadata")
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v) for v in obj["__tuple__"])
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def save_training_state(path, model, optimizer, scheduler, loop: dict, config: dict | None = None):
    """Write model, optimizer, scheduler and loop state (incl. RNG) to ``path`` atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    osd = optimizer.state_dict()
    scalars = {}
    for idx, st in osd["state"].items():
        scalars[str(idx)] = {}
        for key, val in st.items():
            if isinstance(val, np.ndarray):
                tensors[f"optim.{idx}.{key}"] = val
            else:
                scalars[str(idx)][key] = val
    meta = {
        "format": FORMAT,
        "optimizer": json.dumps(_encode({"param_groups": osd["param_groups"],
                                         "scalars": scalars})),
        "scheduler": json.dumps(_encode(scheduler.state_dict() if scheduler else None)),
        "loop": json.dumps(_encode(loop)),
        "config": json.dumps(_encode(config or {})),
    }
    return save_checkpoint(path, tensors, meta)


def load_training_state(path, model, optimizer, scheduler) -> tuple[dict, dict]:
    """Restore model, optimizer and scheduler in place; return ``(loop, config)``."""
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gammabeta training-state file (format "
                              f"{meta.get('format')!r}, expected {FORMAT!r})")
    try:
        opt = _decode(json.loads(meta["optimizer"]))
        sched = _decode(json.loads(meta["scheduler"]))
        loop = _decode(json.loads(meta["loop"]))
        config = _decode(json.loads(meta["config"]))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged training-state metadata ({e})") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {int(i): dict(s) for i, s in opt["scalars"].items()}
    for key, val in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = val
    optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
    if scheduler is not None and sched is not None:
        scheduler.load_state_dict(sched)
    return loop, config
