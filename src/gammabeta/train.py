"""Training and evaluation loops: ``fit`` returns a :class:`History`; nothing here prints.

Progress is reported through callbacks (``on_step``, ``on_epoch``), so the CLI can draw a
progress bar and the study runner can stay silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import nn
from .data.loader import DataLoader
from .errors import NonFiniteError
from .nn.losses import CrossEntropyLoss

__all__ = ["History", "fit", "evaluate", "predict_logits", "train_epoch"]


@dataclass
class History:
    """Per-epoch records: epoch, train/val loss and accuracy, learning rate, seconds."""

    records: list[dict] = field(default_factory=list)

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


def train_epoch(model, loader, optimizer, loss_fn, scheduler=None, on_step=None,
                step0: int = 0, epoch: int = 0) -> dict:
    """One pass over ``loader``; returns mean train loss and accuracy (as seen during training)."""
    model.train()
    total_loss, correct, seen, step = 0.0, 0, 0, step0
    for xb, yb in loader:
        optimizer.zero_grad()
        logits = model(xb)
        loss = float(loss_fn(logits, yb))
        if not np.isfinite(loss):
            raise NonFiniteError(
                f"training loss became {loss} at epoch {epoch}, step {step}; lower the "
                "learning rate, or check the data and the initialization")
        model.backward(loss_fn.backward())
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        step += 1
        n = len(yb)
        total_loss += loss * n
        correct += int(np.sum(np.argmax(logits, axis=1) == yb))
        seen += n
        if on_step is not None:
            on_step(step, loss)
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "steps": step}


def fit(model: nn.Module, x_train, y_train, *, optimizer, epochs: int, batch_size: int,
        rng: np.random.Generator, loss_fn=None, scheduler=None, x_val=None, y_val=None,
        on_step: Callable | None = None, on_epoch: Callable | None = None,
        eval_batch_size: int = 1000) -> History:
    """Train for ``epochs`` and return the per-epoch :class:`History`.

    ``scheduler.step()`` is called after every optimizer step (one-cycle, warmup and cosine
    schedules here are defined per step). Batches come from a seeded :class:`DataLoader` that
    never yields a trailing batch of one (BatchNorm cannot train on it).
    ``on_step(step, loss)`` and ``on_epoch(record)`` receive progress; return value ignored.
    """
    loss_fn = loss_fn or CrossEntropyLoss()
    loader = DataLoader(x_train, y_train, batch_size=batch_size, shuffle=True, rng=rng)
    history = History()
    step = 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        rec = train_epoch(model, loader, optimizer, loss_fn, scheduler, on_step, step, epoch)
        step = rec.pop("steps")
        record = {"epoch": epoch, **rec, "lr": lr}
        if x_val is not None:
            ev = evaluate(model, x_val, y_val, eval_batch_size, loss_fn)
            record.update(val_loss=ev["loss"], val_accuracy=ev["accuracy"])
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history
