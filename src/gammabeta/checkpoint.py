"""Training-state checkpoints: everything needed to resume a run bit-identically.

One safetensors file (written atomically) holds the model's state dict (``model.*``), the
optimizer's per-parameter arrays (``optim.<index>.<name>``) and, as JSON metadata, the
optimizer's scalars and groups, the schedule, the loop position (epoch, batch, step), the
random generator's state and the history so far. Nothing in it is executable.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import CheckpointError, StateDictError
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


def save_training_state(path, model, optimizer, scheduler, loop: dict, config: dict | None = None,
                        data: str | None = None):
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
    if data is not None:
        meta["data"] = data  # a fingerprint of the training data, compared on resume
    return save_checkpoint(path, tensors, meta)


def _check_loop(path, loop) -> None:
    """The loop position must be sane: epoch >= 1, batch and step >= 0 (ints), sums finite,
    random states restorable."""
    if not isinstance(loop, dict):
        raise CheckpointError(f"{path}: loop state is a {type(loop).__name__}; expected a dict")
    for key, low in (("epoch", 1), ("batch", 0), ("step", 0)):
        v = loop.get(key, low)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise CheckpointError(f"{path}: loop {key}={v!r}; expected an int >= {low}")
    sums = loop.get("sums", [0.0, 0, 0, 0])
    if not isinstance(sums, list) or len(sums) != 4 or not _finite_number(sums[0]) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sums[1:]):
        raise CheckpointError(f"{path}: loop sums={sums!r}; expected a finite loss sum and 3 "
                              "ints >= 0 (correct, seen, skipped)")
    if not isinstance(loop.get("history", []), list):
        raise CheckpointError(f"{path}: loop history is a {type(loop['history']).__name__}; "
                              "expected a list of per-epoch records")
    for key in ("rng", "rng_epoch"):
        if loop.get(key) is not None:
            _check_rng_state(path, key, loop[key])
    lr = loop.get("lr_epoch")
    if lr is not None and not _finite_number(lr):
        raise CheckpointError(f"{path}: loop lr_epoch={lr!r}; expected a finite number")


def _finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _check_rng_state(path, key: str, state) -> None:
    """A generator state NumPy can restore (tried on a scratch bit generator)."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    cls = getattr(np.random, name, None) if isinstance(name, str) else None
    try:
        if not (isinstance(cls, type) and issubclass(cls, np.random.BitGenerator)):
            raise ValueError(f"unknown bit generator {name!r}")
        cls().state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise CheckpointError(f"{path}: loop {key} is not a random generator state NumPy can "
                              f"restore ({e})") from None


def _check_optimizer(path, opt, tensors) -> None:
    """Optimizer arrays (moments, ...) finite; scalars and hyper-parameters finite numbers."""
    for key, val in tensors.items():
        if key.startswith("optim.") and val.dtype.kind == "f" and not np.isfinite(val).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(val))[0])
            raise CheckpointError(f"{path}: optimizer state {key!r} holds "
                                  f"{int((~np.isfinite(val)).sum())} non-finite values (first "
                                  f"at index {bad}: {val[bad]}); expected finite numbers")
    if not isinstance(opt, dict) or not isinstance(opt.get("scalars"), dict) \
            or not isinstance(opt.get("param_groups"), list):
        raise CheckpointError(f"{path}: damaged optimizer metadata; expected 'scalars' and "
                              "'param_groups'")
    items = [(f"state {i}", k, v) for i, st in opt["scalars"].items() if isinstance(st, dict)
             for k, v in st.items()]
    items += [(f"group {i}", k, v) for i, g in enumerate(opt["param_groups"])
              if isinstance(g, dict) for k, v in g.items() if k != "params"]
    for where, key, v in items:
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(x, float) and not np.isfinite(x):
                raise CheckpointError(f"{path}: optimizer {where} {key}={v!r}; expected "
                                      "finite numbers")
        if key == "step" and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise CheckpointError(f"{path}: optimizer {where} step={v!r}; expected an int >= 0")


_PROGRESS = ("last_epoch", "_step_count", "_last_lr")  # what a schedule changes as it steps


def _check_consistent(path, loop, opt, sched, optimizer, scheduler, tensors,
                      steps_per_epoch) -> None:
    """The file must describe the run being resumed: the same optimizer settings and schedule
    as a fresh one built from the run's config, and positions that agree with each other
    (batch within the epoch, step = finished epochs × steps per epoch + batch, the schedule
    as far as the loop, learning rates the schedule's own). Edited or damaged files fail
    here instead of training on from a silently shifted state."""
    def bad(what):
        return CheckpointError(f"{path}: damaged training state: {what}")

    epoch, batch, step = loop.get("epoch", 1), loop.get("batch", 0), loop.get("step", 0)
    if steps_per_epoch is not None:
        if batch > steps_per_epoch:
            raise bad(f"loop batch={batch} but an epoch has {steps_per_epoch} steps")
        if step != (epoch - 1) * steps_per_epoch + batch:
            raise bad(f"loop step={step} does not match epoch {epoch}, batch {batch} at "
                      f"{steps_per_epoch} steps per epoch")
    history = loop.get("history", [])
    if not all(isinstance(r, dict) and all(
            isinstance(k, str) and (v is None or _finite_number(v)) for k, v in r.items())
            for r in history):
        raise bad("loop history holds entries that are not per-epoch records of numbers")
    if len(history) != epoch - 1:
        raise bad(f"loop history has {len(history)} epochs but the loop is at epoch {epoch}")
    for key, val in tensors.items():
        if key.endswith("exp_avg_sq") and val.size and float(val.min()) < 0:
            raise bad(f"optimizer state {key!r} holds negative values (a second moment is "
                      ">= 0)")
    if optimizer is not None:
        fresh = optimizer.state_dict()["param_groups"]
        groups = opt["param_groups"]
        if len(groups) != len(fresh):
            raise bad(f"{len(groups)} optimizer parameter groups; the model has {len(fresh)}")
        for i, (g, f) in enumerate(zip(groups, fresh, strict=True)):
            if not isinstance(g, dict) or set(g) != set(f):
                raise bad(f"optimizer group {i} has keys {sorted(g) if isinstance(g, dict) else g}"
                          f"; expected {sorted(f)}")
            for k in f:
                if k in ("lr", "betas"):
                    continue
                if g[k] != f[k]:
                    raise bad(f"optimizer group {i} {k}={g[k]!r}; the run's config gives "
                              f"{f[k]!r}")
            betas = g.get("betas", (0.0, 0.0))
            if not (isinstance(betas, tuple | list) and len(betas) == 2
                    and all(_finite_number(b) and 0 <= b < 1 for b in betas)):
                raise bad(f"optimizer group {i} betas={betas!r}; expected two numbers in [0, 1)")
            want = (sched.get("_last_lr", [None] * len(fresh))[i] if isinstance(sched, dict)
                    else f["lr"])
            if not _finite_number(g["lr"]) or g["lr"] < 0 or (want is not None
                                                              and g["lr"] != want):
                raise bad(f"optimizer group {i} lr={g['lr']!r}; the schedule gives {want!r}")
    if scheduler is not None:
        fresh = scheduler.state_dict()
        if not isinstance(sched, dict) or set(sched) != set(fresh):
            raise bad("the learning-rate schedule's state does not match the run's schedule")
        for k in fresh:
            if k not in _PROGRESS and sched[k] != fresh[k]:
                raise bad(f"schedule {k}={sched[k]!r}; the run's config gives {fresh[k]!r}")
        if sched["last_epoch"] != step or sched["_step_count"] != step + 1:
            raise bad(f"the schedule is at step {sched['last_epoch']!r} but the loop at {step}")
        lrs = sched["_last_lr"]
        if not (isinstance(lrs, list) and len(lrs) == len(fresh["_last_lr"])
                and all(_finite_number(v) and v >= 0 for v in lrs)):
            raise bad(f"schedule learning rates {lrs!r}; expected numbers >= 0")
    elif sched is not None:
        raise bad("the file holds a learning-rate schedule but the run has none")


def _optimizer_state(path, opt, tensors) -> dict:
    """``{parameter index: {name: value}}`` from the JSON scalars and the ``optim.*`` arrays."""
    try:
        state: dict = {int(i): dict(s) for i, s in opt["scalars"].items()}
        for key, val in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = val
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged optimizer state ({e})") from None
    return state


def _snapshot(model, optimizer):
    """A function that puts back the model's values and the optimizer's state as they are now
    (copied directly: no checks, so it works whatever the values)."""
    params = [(p, p.data.copy()) for p in model.parameters()]
    bufs = [(m, k, np.array(b, copy=True)) for m in model.modules()
            for k, b in m._buffers.items() if b is not None]
    opt_state = optimizer.state_dict() if optimizer is not None else None

    def restore() -> None:
        for p, data in params:
            p.data[...] = data
        for m, k, b in bufs:
            m._buffers[k] = b
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
    return restore


def load_training_state(path, model, optimizer, scheduler, *, steps_per_epoch=None,
                        data: str | None = None) -> tuple[dict, dict]:
    """Restore model, optimizer and scheduler in place; return ``(loop, config)``.

    Everything is checked first — loop position (epoch, batch, step: non-negative ints),
    optimizer arrays and scalars finite, model values (see
    :meth:`gammabeta.nn.Module.load_state_dict`) — so a refused file changes nothing; a
    failure while restoring the optimizer or scheduler puts the model and optimizer back.

    Raises
    ------
    CheckpointError
        Not a training-state file, damaged metadata, a bad loop position or a non-finite
        optimizer value (the message names the file and the key).
    StateDictError
        The model part does not fit the model (prefixed with the file name).
    """
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
    if data is not None and meta.get("data") not in (None, data):
        raise CheckpointError(f"{path}: the training data is not the data this run started "
                              f"with (fingerprint {data[:12]}, the run's "
                              f"{str(meta.get('data'))[:12]}); resume needs the same data")
    _check_loop(path, loop)
    _check_optimizer(path, opt, tensors)
    _check_consistent(path, loop, opt, sched, optimizer, scheduler, tensors, steps_per_epoch)
    state = _optimizer_state(path, opt, tensors)
    restore = _snapshot(model, optimizer)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except StateDictError as e:
        raise StateDictError(f"{path}: {e}") from None
    try:
        if optimizer is not None:
            optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
        if scheduler is not None and sched is not None:
            scheduler.load_state_dict(sched)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
        restore()
        raise CheckpointError(f"{path}: damaged training state ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    except BaseException:
        restore()
        raise
    return loop, config
