"""The PyTorch twin of ``gammabeta train`` (default options, ``--model mlp`` or ``cnn``).

A benchmark reference for ``benchmarks/commands.py``, which times whole processes of both.
It does in ``torch.nn`` what ``gammabeta train --model mlp|cnn`` does with its defaults,
written as a careful PyTorch user would:

- data: MNIST-1D from the ``.npz`` that gammabeta caches (4,000 train / 1,000 test samples of
  length 40); 10% of each class of the training data held out for validation, drawn exactly
  as ``gammabeta.experiment.held_out`` draws it (3,601 train, 399 validation);
- model: ``mlp``: Linear(40, 256) -> BN -> ReLU -> Dropout(0.2), twice (256 wide), then
  Linear(256, 10); ``cnn``: 8 x (Conv1d k3 -> BN -> ReLU) of 32 channels, a 2x max-pool
  after every second conv but the last, then Linear(160, 10). Convolutions and Linear layers
  followed by BatchNorm have no bias. PyTorch's default initialization, ``torch.manual_seed(0)``;
- recipe: AdamW (weight decay 0.05 on weights with ndim >= 2, none on biases, gamma and beta),
  OneCycleLR stepped every batch with ``max_lr`` = lr for each group (mlp: lr 0.05,
  100 epochs; cnn: lr 0.01, 40 epochs, no dropout), batches of 100 in a new order every
  epoch drawn from a seeded generator; as gammabeta's DataLoader, a trailing batch of one
  sample is dropped (BatchNorm needs two), so 3,601 samples give 36 batches;
- every epoch: train, evaluate on the validation split (eval mode), then save a checkpoint
  (model, optimizer, scheduler, generator state, history) atomically (temp file, flush,
  fsync, ``os.replace``, fsync of the folder), as gammabeta saves its training state;
- at the end: the test loss and accuracy, ``metrics.json`` and ``model.pt`` (the final
  state dict), both written atomically, and one summary line.

No plot is drawn: gammabeta also writes ``curves.png`` (matplotlib), and the comparison
charges that to gammabeta. PyTorch keeps its default thread count.

Usage: ``python benchmarks/torch_train.py --model mlp|cnn --out DIR [--epochs N]
[--data FILE.npz]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - PyTorch's customary name

# gammabeta's recipes for MNIST-1D (src/gammabeta/recipes.py) and TrainConfig defaults
RECIPES = {"mlp": {"lr": 0.05, "epochs": 100, "dropout": 0.2},
           "cnn": {"lr": 0.01, "epochs": 40, "dropout": 0.0}}
BATCH_SIZE = 100
WEIGHT_DECAY = 0.05
VAL_FRACTION = 0.1
SEED = 0
EVAL_BATCH = 1000
UMASK = os.umask(0o022)
os.umask(UMASK)


def default_data() -> Path:
    """gammabeta's MNIST-1D cache file (``$GAMMABETA_CACHE`` or ``~/.cache/gammabeta``)."""
    env = os.environ.get("GAMMABETA_CACHE")
    folder = Path(env).expanduser() if env else Path.home() / ".cache" / "gammabeta"
    return folder / "mnist1d_n5000_split0.8_len40_seed42.npz"


def held_out(y: np.ndarray, fraction: float = VAL_FRACTION, seed: int = SEED):
    """Indices ``(train, val)``: ``round(n_c * fraction)`` samples of every class ``c`` in val.

    The same draws as ``gammabeta.experiment.held_out`` (its generator, class order and
    ``choice`` calls), so both frameworks train and validate on the same samples.
    """
    rng = np.random.default_rng([seed, 0x5A1])
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(int(round(len(idx) * fraction)), len(idx) - 1)
        if k > 0:
            val.append(rng.choice(idx, size=k, replace=False))
    val_idx = np.sort(np.concatenate(val))
    keep = np.ones(len(y), dtype=bool)
    keep[val_idx] = False
    return np.flatnonzero(keep), val_idx


def build(model: str, dropout: float) -> nn.Sequential:
    """The default gammabeta ``mlp`` or ``cnn`` for MNIST-1D, in ``torch.nn``."""
    if model == "mlp":
        layers: list[nn.Module] = []
        width = 40
        for h in (256, 256):
            layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        return nn.Sequential(*layers, nn.Linear(width, 10))
    layers = [nn.Unflatten(1, (1, 40))]
    c, length = 1, 40
    for i in range(8):
        layers += [nn.Conv1d(c, 32, 3, padding=1, bias=False), nn.BatchNorm1d(32), nn.ReLU()]
        c = 32
        if (i + 1) % 2 == 0 and i + 1 < 8:
            layers.append(nn.MaxPool1d(2))
            length //= 2
    layers.append(nn.Flatten())
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(c * length, 10))


def param_groups(model: nn.Module) -> list[dict]:
    """Weight decay on weights with ``ndim >= 2``; none on biases, gamma and beta."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def batches(n: int, batch_size: int, generator: torch.Generator):
    """One epoch's index batches in a fresh random order; a trailing batch of one is dropped."""
    order = torch.randperm(n, generator=generator)
    for lo in range(0, n, batch_size):
        idx = order[lo:lo + batch_size]
        if len(idx) > 1:
            yield idx


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Mean cross-entropy and accuracy in eval mode, in batches of 1,000; mode restored."""
    was = model.training
    model.eval()
    logits = torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
    model.train(was)
    return {"loss": F.cross_entropy(logits, y).item(),
            "accuracy": (logits.argmax(1) == y).float().mean().item()}


def atomic_save(path: Path, write) -> None:
    """``write(f)`` into a temp file beside ``path``, flush, fsync, rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~UMASK)  # the mode open() would give, as gammabeta
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load(path: Path):
    """``(x_train, y_train, x_val, y_val, x_test, y_test)`` as tensors."""
    with np.load(path, allow_pickle=False) as z:
        x, y, x_test, y_test = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    tr, va = held_out(y)
    arrays = (x[tr], y[tr], x[va], y[va], x_test, y_test)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def train(model_name: str, out: Path, data: Path, epochs: int | None = None) -> dict:
    """Train the twin, write its files into ``out`` and return the metrics."""
    t0 = time.perf_counter()
    rec = dict(RECIPES[model_name])
    epochs = rec["epochs"] if epochs is None else epochs
    x_tr, y_tr, x_va, y_va, x_te, y_te = load(data)
    torch.manual_seed(SEED)
    model = build(model_name, rec["dropout"])
    opt = torch.optim.AdamW(param_groups(model), lr=rec["lr"])
    n = len(y_tr)
    steps = n // BATCH_SIZE + (1 if n % BATCH_SIZE > 1 else 0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=epochs * steps)
    gen = torch.Generator().manual_seed(SEED)
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    for epoch in range(1, epochs + 1):
        te = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for idx in batches(n, BATCH_SIZE, gen):
            xb, yb = x_tr[idx], y_tr[idx]
            opt.zero_grad()
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"epoch {epoch}: training loss became {value}")
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += value * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
        ev = evaluate(model, x_va, y_va)
        history.append({"epoch": epoch, "train_loss": loss_sum / seen,
                        "train_accuracy": correct / seen, "lr": lr,
                        "val_loss": ev["loss"], "val_accuracy": ev["accuracy"],
                        "seconds": time.perf_counter() - te})
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "generator": gen.get_state(),
                 "epoch": epoch, "history": history}
        atomic_save(out / "train_state.pt", lambda f, s=state: torch.save(s, f))
    test = evaluate(model, x_te, y_te)
    metrics = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
               "seconds": time.perf_counter() - t0, "model": model_name, "epochs": epochs,
               "split": {"train": n, "val": len(y_va), "test": len(y_te)},
               "torch_threads": torch.get_num_threads(), "history": history}
    atomic_save(out / "model.pt", lambda f: torch.save(model.state_dict(), f))
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_save(out / "metrics.json", lambda f: f.write(text.encode()))
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Command line: parse, train, print one summary line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--model", choices=sorted(RECIPES), default="mlp")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the recipe's epochs (mlp 100, cnn 40)")
    p.add_argument("--data", type=Path, default=None,
                   help=f"MNIST-1D .npz (default: {default_data()})")
    a = p.parse_args(argv)
    data = a.data or default_data()
    if not data.is_file():
        print(f"torch_train: {data} not found; run `gammabeta train` once to cache MNIST-1D",
              file=sys.stderr)
        return 2
    if a.epochs is not None and a.epochs < 1:
        p.error("--epochs must be >= 1")
    m = train(a.model, a.out, data, a.epochs)
    print(f"torch {a.model}: {m['epochs']} epochs, test accuracy "
          f"{100 * m['test_accuracy']:.2f}%, test loss {m['test_loss']:.4f}, "
          f"{m['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
