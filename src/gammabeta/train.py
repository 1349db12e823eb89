"""Training and evaluation loops: ``fit`` returns a :class:`History`; nothing here prints.

Progress is reported through callbacks (``on_step``, ``on_epoch``), so the CLI can draw a
progress bar and the study runner can stay silent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import nn
from .autothreads import ThreadTuner
from .backend import jit
from .data.loader import DataLoader
from .errors import ConfigError, NonFiniteError, TrainingInterrupted
from .jit_plan import run_jit_mode
from .nn.losses import CrossEntropyLoss
from .nn.mode import batch_shard
from .nn.sequential import backward_params_only
from .optim.clip import clip_grad_norm_

__all__ = ["History", "fit", "evaluate", "predict_logits", "train_epoch"]


@dataclass
class History:
    """Per-epoch records: epoch, train/val loss and accuracy, learning rate, seconds."""

    records: list[dict] = field(default_factory=list)
    threads: dict = field(default_factory=dict)  # steps run at each thread count (tuned)
    jit: str = "auto"  # the kernel mode the run used (gammabeta.jit_plan.run_jit_mode)

    def append(self, record: dict) -> None:
        self.records.append(dict(record))

    def column(self, key: str) -> list:
        """All values of ``key`` in epoch order (None where an epoch lacks it)."""
        return [r.get(key) for r in self.records]

    def as_dict(self) -> dict[str, list]:
        """Columns: ``{"epoch": [...], "train_loss": [...], ...}`` (JSON-ready)."""
        keys: list[str] = []
        for r in self.records:
            keys += [k for k in r if k not in keys]
        return {k: self.column(k) for k in keys}

    def __len__(self) -> int:
        return len(self.records)


def predict_logits(model: nn.Module, x, batch_size: int = 1000) -> np.ndarray:
    """Eval-mode outputs for ``x`` in batches, without caches; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with nn.no_grad():
            outs = [model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0,))


def evaluate(model: nn.Module, x, y, batch_size: int = 1000, loss_fn=None) -> dict:
    """``{"loss": mean loss, "accuracy": fraction correct}`` of the model in eval mode."""
    loss_fn = loss_fn or CrossEntropyLoss()
    logits = predict_logits(model, x, batch_size)
    loss = float(loss_fn(logits, y))
    acc = float(np.mean(np.argmax(logits, axis=1) == y))
    return {"loss": loss, "accuracy": acc}


def _first_nonfinite_layer(model: nn.Module, xb) -> str:
    """Name where non-finite values first appear: the input batch itself, or (rerunning the
    forward pass without caches) the first layer whose output is not finite. Buffers and
    random states are restored afterwards."""
    if not np.isfinite(xb).all():
        row = int(np.argwhere(~np.isfinite(xb))[0][0])
        return f"the input batch (its sample {row} is not finite)"
    buffers = [(m, k, np.array(b, copy=True)) for m in model.modules()
               for k, b in m._buffers.items() if b is not None]
    rngs = {id(m.rng): (m.rng, m.rng.bit_generator.state) for m in model.modules()
            if isinstance(getattr(m, "rng", None), np.random.Generator)}
    found: list[str] = []

    def hook(name):
        def check(module, x, y):
            if not found and not np.isfinite(y).all():
                found.append(f"{name} ({module.describe()})")
        return check

    handles = [m.register_forward_hook(hook(name or "model"))
               for name, m in model.named_modules() if not m._modules]
    try:
        with nn.no_grad():
            model(xb)
    except NonFiniteError:
        pass
    finally:
        for h in handles:
            h.remove()
        for m, k, b in buffers:
            m._buffers[k] = b
        for g, st in rngs.values():
            g.bit_generator.state = st
    return found[0] if found else "the loss"


def _first_nonfinite_grad(model: nn.Module) -> str | None:
    """Name of the first parameter whose gradient holds NaN or inf, else None (one sum per
    gradient, checked every step; the names are built only when one is bad)."""
    for m in model.modules():
        for key, p in m._parameters.items():
            if p is not None and p.grad is not None and not math.isfinite(p.grad.sum()):
                return _qualified_name(model, m, key)
    return None


def _qualified_name(model: nn.Module, module: nn.Module, key: str) -> str:
    """``module``'s ``key`` (a parameter or buffer) by its dotted name within ``model``."""
    prefix = next(name for name, m in model.named_modules() if m is module)
    return f"{prefix}.{key}" if prefix else key


def _first_nonfinite_buffer(model: nn.Module, xb) -> str | None:
    """A phrase naming the first floating buffer (running statistic) holding NaN or inf, with
    the batch's largest magnitude, else None. Cheap: one float64 sum per (small) buffer."""
    for m in model.modules():
        for key, b in m._buffers.items():
            if b is None:
                continue
            b = np.asarray(b)
            if b.dtype.kind != "f" or math.isfinite(b.sum(dtype=np.float64)):
                continue
            bad = b[~np.isfinite(b)]
            if not bad.size:  # (a float64 sum can overflow only for float64 buffers ~1e308)
                continue
            big = float(np.max(np.abs(xb))) if np.size(xb) else 0.0
            cause = ("scale the data" if big > 1e15 else
                     "the weights before it grew too large: lower the learning rate or clip "
                     "gradients (--clip-grad-norm)")
            return (f"{_qualified_name(model, m, key)!r} became non-finite ({bad.flat[0]}); "
                    f"the values reaching it are too large for {b.dtype} statistics (max |x| "
                    f"in the input batch = {big:.3g}): {cause}")
    return None


def _global_sums(sums, parallel) -> list:
    """Loss·n, correct, seen, skipped summed over the ranks (skipped: every rank skips the
    same steps, so rank 0's count)."""
    if parallel is None:
        return list(sums)
    total = parallel.reduce(sums[:3])
    return [float(total[0]), int(round(total[1])), int(round(total[2])), sums[3]]


def _forward_backward(model, loss_fn, xb, yb, total: int, parallel):
    """One step's forward, loss and backward on this process's rows.

    Returns ``(loss, logits, problem)``: the mean loss over the global batch, this share's
    logits, and None or a phrase naming the first non-finite loss, gradient or buffer — the
    same on every rank, which then all take the same branch. With ``parallel`` the output
    gradient is scaled by ``n / total`` and the gradients summed over the ranks.
    """
    logits = model(xb)
    n = len(yb)
    try:
        loss = float(loss_fn(logits, yb)) if n else 0.0
    except NonFiniteError:
        loss = float("nan")
    shown, finite = loss, bool(np.isfinite(loss))
    if parallel is not None:
        bad, loss_n = parallel.reduce([0.0 if finite else 1.0, loss * n if finite else 0.0])
        finite, shown = bad == 0, (loss_n / total if bad == 0 else float("nan"))
    if not finite:
        where = _first_nonfinite_layer(model, xb)  # every rank reruns: collectives match
        problem = (f"non-finite loss ({loss}); first non-finite output in {where}"
                   if not np.isfinite(loss) else None)
        return shown, logits, parallel.first(problem) if parallel is not None else problem
    dy = loss_fn.backward() if n else np.zeros_like(logits)
    if parallel is not None:
        dy = dy * dy.dtype.type(n / total)
    backward_params_only(model, dy)  # no dx of the data: PyTorch's saving
    if parallel is not None:
        parallel.allreduce_gradients(model.parameters())
    bad = _first_nonfinite_grad(model)
    problem = (f"non-finite gradient, first in parameter {bad!r}" if bad is not None
               else _first_nonfinite_buffer(model, xb))
    if parallel is not None:  # per-worker BatchNorm buffers can differ between ranks
        problem = parallel.first(problem)
    return shown, logits, problem


class _Loop:
    """Position and random state of a run, JSON-ready for a training-state checkpoint."""

    def __init__(self, rng, resume: dict | None):
        r = resume or {}
        self.epoch, self.batch, self.step = r.get("epoch", 1), r.get("batch", 0), r.get("step", 0)
        self.sums = list(r.get("sums", [0.0, 0, 0, 0]))  # loss·n, correct, seen, skipped
        self.rng_epoch, self.lr_epoch = r.get("rng_epoch"), r.get("lr_epoch")
        self.history = History([dict(x) for x in r.get("history", [])])
        if "rng" in r:
            rng.bit_generator.state = r["rng"]
        self.rng = rng

    def as_dict(self, sums=None) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                "sums": list(self.sums if sums is None else sums),
                "rng_epoch": self.rng_epoch, "lr_epoch": self.lr_epoch,
                "rng": self.rng.bit_generator.state, "history": self.history.records}


def train_epoch(model, loader, optimizer, loss_fn, scheduler=None, on_step=None,
                step0: int = 0, epoch: int = 0) -> dict:
    """One plain pass over ``loader`` (the building block for custom loops such as studies).

    Returns the mean train loss and accuracy seen during the pass and the new step count;
    a non-finite loss raises :class:`NonFiniteError` naming the epoch and step.
    """
    model.train()
    total_loss, correct, seen, step = 0.0, 0, 0, step0
    for xb, yb in loader:
        optimizer.zero_grad()
        logits = model(xb)
        loss = float(loss_fn(logits, yb))
        if not np.isfinite(loss):
            raise NonFiniteError(f"training loss became {loss} at epoch {epoch}, step {step}")
        backward_params_only(model, loss_fn.backward())
        optimizer.step()
        bad = _first_nonfinite_buffer(model, xb)
        if bad is not None:
            raise NonFiniteError(f"epoch {epoch}, step {step + 1}: {bad}")
        if scheduler is not None:
            scheduler.step()
        step += 1
        total_loss += loss * len(yb)
        correct += int(np.sum(np.argmax(logits, axis=1) == yb))
        seen += len(yb)
        if on_step is not None:
            on_step(step, loss)
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "steps": step}


def fit(model: nn.Module, x_train, y_train, *, optimizer, epochs: int, batch_size: int,
        rng: np.random.Generator, loss_fn=None, scheduler=None, x_val=None, y_val=None,
        on_step: Callable | None = None, on_epoch: Callable | None = None,
        eval_batch_size: int = 1000, on_nonfinite: str = "raise",
        clip_grad_norm: float | None = None, checkpoint: Callable | None = None,
        checkpoint_every: int | None = None, resume: dict | None = None,
        should_stop: Callable | None = None, parallel=None) -> History:
    """Train for ``epochs`` and return the per-epoch :class:`History`.

    ``scheduler.step()`` follows every optimizer step. Batches come from a seeded
    :class:`DataLoader` that never yields a trailing batch of one.

    Robustness options: ``on_nonfinite="raise"`` stops at the first NaN/inf loss, activation,
    gradient or running statistic (a float buffer, e.g. a BatchNorm ``running_var``
    overflowing float32) with a message naming the epoch, step and first layer, parameter
    or buffer where it appeared; ``"skip-step"`` discards that step (no parameter update,
    running statistics restored) and counts it.
    ``clip_grad_norm`` clips the global gradient norm. ``checkpoint(loop_state)`` is called
    after every epoch, every ``checkpoint_every`` steps and before a requested stop
    (``should_stop()`` true after a step raises :class:`TrainingInterrupted`); ``resume`` is
    such a loop state, from which the run continues bit-identically.

    ``parallel`` (a :class:`gammabeta.distributed.DataParallel`) trains data-parallel: this
    process takes its share of every global batch of ``batch_size`` and gradients are summed
    over the ranks (see :mod:`gammabeta.distributed.parallel`); every rank calls ``fit`` with
    the same arguments, and ``checkpoint`` is called on every rank (write on rank 0 only).

    With ``GAMMABETA_JIT=auto`` a run too short for the compiled kernels to repay loading
    them runs the NumPy path throughout (:mod:`gammabeta.jit_plan`, decided from the model,
    the batch and ``epochs`` only, by one forward pass on the first batch in evaluation mode
    without gradients); ``History.jit`` records the mode the run used.
    """
    if on_nonfinite not in ("raise", "skip-step"):
        raise ConfigError(f"on_nonfinite={on_nonfinite!r}; expected 'raise' or 'skip-step'")
    loss_fn = loss_fn or CrossEntropyLoss()
    loader = DataLoader(x_train, y_train, batch_size=batch_size, shuffle=True, rng=rng)
    loop = _Loop(rng, resume)
    if parallel is not None and not parallel.is_root:
        loop.sums = [0.0, 0, 0, 0]  # a saved state holds the sums of every rank: counted once
    skip = on_nonfinite == "skip-step"
    tuner = ThreadTuner.from_env() if parallel is None else None  # (workers fix their own)
    # a short run stays on the NumPy path: loading the kernels would cost more than they save
    loop.history.jit = run_jit_mode(model, x_train[:batch_size], epochs * len(loader))
    try:
        with jit(loop.history.jit):
            _epochs(model, loss_fn, loader, loop, optimizer, epochs, rng, scheduler, x_val,
                    y_val, on_step, on_epoch, eval_batch_size, skip, clip_grad_norm,
                    checkpoint, checkpoint_every, should_stop, parallel, tuner)
    finally:
        if tuner is not None:
            tuner.close()
            loop.history.threads = tuner.summary()
    return loop.history


def _epochs(model, loss_fn, loader, loop, optimizer, epochs, rng, scheduler, x_val, y_val,
            on_step, on_epoch, eval_batch_size, skip, clip_grad_norm, checkpoint,
            checkpoint_every, should_stop, parallel, tuner) -> None:
    """The loop of :func:`fit` (``tuner``: a :class:`ThreadTuner` told of each step)."""
    while loop.epoch <= epochs:
        t0 = time.perf_counter()
        now = rng.bit_generator.state
        if loop.batch == 0:  # remember what the epoch started with (resume may come mid-epoch)
            loop.rng_epoch, now = now, None
            loop.lr_epoch = optimizer.param_groups[0]["lr"]
        rng.bit_generator.state = loop.rng_epoch
        order = loader.order()  # the epoch's permutation, redrawn identically on resume
        if now is not None:
            rng.bit_generator.state = now
        model.train()
        for xb, yb in loader.batches(order, start=loop.batch):
            if tuner is not None:
                tuner.tick()
            total = len(yb)
            lo, hi = parallel.share(total) if parallel is not None else (0, total)
            xb, yb = xb[lo:hi], yb[lo:hi]
            saved = [(m, k, b.copy()) for m in model.modules() for k, b in m._buffers.items()
                     if b is not None] if skip else None
            optimizer.zero_grad()
            with batch_shard(lo, hi, total):
                loss, logits, problem = _forward_backward(model, loss_fn, xb, yb, total,
                                                          parallel)
            hint = "" if problem and "became non-finite" in problem else (
                "; lower the learning rate, clip gradients (--clip-grad-norm), or check the "
                "data")
            if problem is not None:
                if loop.step == 0 and "became non-finite" not in problem:
                    hint = ("; this is the first step, before any update: check the "
                            "initialization (weight, γ and β inits) and the data")
                if not skip:
                    raise NonFiniteError(f"epoch {loop.epoch}, step {loop.step + 1}: {problem}"
                                         + hint)
                for m, k, b in saved:
                    m._buffers[k] = b
                optimizer.zero_grad()
                loop.sums[3] += 1
            else:
                if clip_grad_norm:
                    clip_grad_norm_(model.parameters(), clip_grad_norm)
                optimizer.step()
                n = len(yb)
                loop.sums[0] += loss * n  # this rank's share (summed over ranks when shown)
                loop.sums[1] += int(np.sum(np.argmax(logits, axis=1) == yb))
                loop.sums[2] += n
            if scheduler is not None:
                scheduler.step()
            loop.batch += 1
            loop.step += 1
            if on_step is not None:
                on_step(loop.step, loss)
            if checkpoint is not None and checkpoint_every and loop.step % checkpoint_every == 0:
                checkpoint(loop.as_dict(_global_sums(loop.sums, parallel)))
            stop = should_stop is not None and should_stop()
            if parallel is not None:
                stop = parallel.any(stop)
            if stop:
                if checkpoint is not None:
                    checkpoint(loop.as_dict(_global_sums(loop.sums, parallel)))
                raise TrainingInterrupted(
                    f"stopped at epoch {loop.epoch}, step {loop.step}", loop.epoch, loop.step)
        if tuner is not None:
            tuner.rest()
        if parallel is not None:  # the epoch's figures over every rank's share
            loop.sums = _global_sums(loop.sums, parallel)
            parallel.broadcast_buffers(model)  # evaluate and save rank 0's statistics
        if loop.sums[3] and not loop.sums[2]:
            raise NonFiniteError(f"epoch {loop.epoch}: all {loop.sums[3]} steps were skipped "
                                 "(non-finite values at every step); nothing was learned: "
                                 "lower the learning rate or check the data")
        seen = max(loop.sums[2], 1)
        record = {"epoch": loop.epoch, "train_loss": loop.sums[0] / seen,
                  "train_accuracy": loop.sums[1] / seen, "lr": loop.lr_epoch}
        if skip:
            record["skipped_steps"] = loop.sums[3]
        if x_val is not None:
            try:
                ev = evaluate(model, x_val, y_val, eval_batch_size, loss_fn)
            except NonFiniteError as e:
                raise NonFiniteError(f"epoch {loop.epoch}, evaluating on the held-out split "
                                     f"after the epoch: {e}; lower the learning rate or clip "
                                     "gradients (--clip-grad-norm)") from None
            record.update(val_loss=ev["loss"], val_accuracy=ev["accuracy"])
        record["seconds"] = time.perf_counter() - t0
        loop.history.append(record)
        loop.epoch, loop.batch, loop.sums = loop.epoch + 1, 0, [0.0, 0, 0, 0]
        if checkpoint is not None:
            checkpoint(loop.as_dict())
        if on_epoch is not None:
            on_epoch(record)
