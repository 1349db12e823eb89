"""One training run from a flat, JSON-able config: data → model → optimizer → schedule → fit.

The CLI's ``train`` and the study runner both go through :func:`run`, so a study row and a
command-line run with the same config give the same numbers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import optim
from .backend import jit
from .checkpoint import load_training_state, save_training_state
from .config import TrainConfig, recipe
from .data.dataset import validation_split
from .data.loader import DataLoader
from .data.registry import load_dataset
from .errors import ConfigError, DataError, NonFiniteError
from .models import build_model
from .models.size import check_fits
from .nn.losses import CrossEntropyLoss
from .train import History, evaluate, fit

__all__ = ["TrainConfig", "RunResult", "run", "make_optimizer", "make_scheduler", "recipe"]

@dataclass
class RunResult:
    """What a run produced: the trained model, its history and final test metrics."""

    config: TrainConfig
    model: object
    history: History
    test_accuracy: float
    test_loss: float
    seconds: float
    input_shape: tuple = ()
    num_classes: int = 0
    dataset_note: str = ""
    input_range: tuple = ()  # (min, max) of the training inputs, for predict's scale check
    columns: tuple = ()  # the CSV's feature columns, for predict's column check
    split: dict = field(default_factory=dict)  # samples in train / val / test

    @property
    def val_accuracy(self) -> float | None:
        """The validation accuracy after the last epoch (``None`` without a validation split)."""
        last = self.history.records[-1] if self.history.records else {}
        return last.get("val_accuracy")

    def metrics(self) -> dict:
        """The JSON written to ``metrics.json``."""
        return {"test_accuracy": self.test_accuracy, "test_loss": self.test_loss,
                "seconds": self.seconds, "config": self.config.to_dict(),
                "history": self.history.as_dict(), "dataset_note": self.dataset_note,
                "split": self.split, "val_accuracy": self.val_accuracy,
                "threads": self.history.threads or None,
                "jit": self.history.jit,  # the kernel mode run ("off": too short for them to pay)
                "note": "val_* figures are measured on the validation split (val_fraction of "
                        "each class of the training data, held out from training); test_* "
                        "is measured once, after the last epoch"}


def check_shares(cfg: TrainConfig, parallel, n_train: int) -> None:
    """Per-worker BatchNorm needs at least 2 samples of every batch on every rank (Batch Renorm
    and Ghost BN too: only ``norm="batch"`` becomes SyncBatchNorm)."""
    if cfg.norm not in ("batch", "renorm", "ghost") or (cfg.sync_bn and cfg.norm == "batch"):
        return
    last = n_train % cfg.batch_size or cfg.batch_size
    smallest = min(parallel.min_share(cfg.batch_size), parallel.min_share(last))
    if smallest < 2:
        raise ConfigError(f"--no-sync-bn on {parallel.size} ranks: a batch of "
                          f"{min(cfg.batch_size, last)} gives a rank {smallest} sample(s), and "
                          "per-worker BatchNorm needs at least 2; use a larger --batch-size, "
                          "fewer ranks, or --sync-bn")


def held_out(cfg: TrainConfig, ds) -> tuple:
    """``(x_train, y_train, x_val, y_val)``: ``cfg.val_fraction`` of each class of the
    training data held out for validation (drawn with its own generator, seeded by
    ``cfg.seed``, so the training draws are those of a run without it); ``None`` for the
    validation arrays when ``val_fraction`` is 0."""
    if not cfg.val_fraction:
        return ds.x_train, ds.y_train, None, None
    try:
        tr, va = validation_split(ds.y_train, cfg.val_fraction,
                                  np.random.default_rng([cfg.seed, 0x5A1]))
    except DataError as e:
        raise ConfigError(f"val_fraction={cfg.val_fraction:g}: {e}") from None
    return ds.x_train[tr], ds.y_train[tr], ds.x_train[va], ds.y_train[va]


def fingerprint(ds) -> str:
    """SHA-256 of a dataset's arrays (train and test, values and shapes): what ``--resume``
    compares, so a run never continues on other data (a relative path read from elsewhere,
    a file changed in place)."""
    h = hashlib.sha256()
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def make_optimizer(cfg: TrainConfig, model):
    """AdamW/Adam/SGD over two parameter groups: weight decay skips biases, γ and β; with
    ``gamma_lr_scale`` != 1 the normalization layers' γ form a third group whose learning
    rate is ``lr · gamma_lr_scale`` (every schedule scales it alike)."""
    groups = optim.param_groups(model, cfg.weight_decay)
    if cfg.gamma_lr_scale != 1:
        from .models.norms import norm_gammas

        gammas = {id(p) for p in norm_gammas(model)}
        rest = [p for p in groups[1]["params"] if id(p) not in gammas]
        groups = [groups[0], {**groups[1], "params": rest},
                  {"params": [p for p in groups[1]["params"] if id(p) in gammas],
                   "weight_decay": 0.0, "lr": cfg.lr * cfg.gamma_lr_scale}]
        groups = [g for g in groups if g["params"]]
    name = cfg.optimizer.lower()
    if name == "adamw":
        return optim.AdamW(groups, lr=cfg.lr)
    if name == "adam":
        return optim.Adam(groups, lr=cfg.lr)
    if name == "sgd":
        return optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; expected adamw, adam or sgd")


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """The per-step learning-rate schedule named by ``cfg.schedule``."""
    total = max(1, cfg.epochs * steps_per_epoch)
    name = cfg.schedule.lower()
    if name == "onecycle":
        return optim.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                total_steps=total)
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=total)
    if name == "step":
        return optim.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if name in ("constant", "none"):
        return None
    raise ConfigError(f"unknown schedule {cfg.schedule!r}; expected onecycle, cosine, step "
                      "or constant")


def run(cfg: TrainConfig, on_step: Callable | None = None, on_epoch: Callable | None = None,
        dataset=None, on_start: Callable | None = None, state_path=None, resume: bool = False,
        checkpoint_every: int | None = None, should_stop: Callable | None = None,
        on_model: Callable | None = None, parallel=None) -> RunResult:
    """Train one model as ``cfg`` says and evaluate it on the test split.

    ``on_start(resolved_config, dataset)`` is called once the data is loaded and
    ``on_model(model)`` once the model is built (e.g. to attach diagnostics). With
    ``state_path`` the full training state is saved there (atomically) after every epoch,
    every ``checkpoint_every`` steps and on a requested stop; ``resume=True`` continues from
    it, ending bit-identical to an uninterrupted run. ``parallel`` (a
    :class:`gammabeta.distributed.DataParallel`; every rank calls ``run`` alike) trains
    data-parallel: BatchNorm becomes SyncBatchNorm when ``cfg.sync_bn``, rank 0's initial
    weights are broadcast, and only rank 0 writes the training state.
    """
    t0 = time.perf_counter()
    cfg = cfg.validate()  # every option, before any data is read or memory allocated
    ds = dataset if dataset is not None else load_dataset(
        cfg.data, data_dir=cfg.data_dir, download=cfg.download, seed=cfg.seed)
    for part in ("train", "test"):  # a Dataset built by hand skips the loaders' checks
        if len(getattr(ds, f"y_{part}")) == 0:
            raise DataError(f"dataset {ds.name!r}: the {part} split is empty; expected at "
                            "least 1 sample")
    if len(np.unique(ds.y_train)) < 2:
        raise DataError(f"dataset {ds.name!r}: y_train holds only class "
                        f"{int(ds.y_train[0])}; a classifier needs at least 2 classes")
    if len(ds.input_shape) > 3:
        raise DataError(f"{cfg.data}: samples of shape {tuple(ds.input_shape)}; gammabeta's "
                        "models take (N, features), (N, C, L) or (N, C, H, W) inputs")
    cfg = cfg.resolved(len(ds.input_shape)).validate()
    x_train, y_train, x_val, y_val = held_out(cfg, ds)
    check_fits(cfg.model, ds.input_shape, ds.num_classes, min(cfg.batch_size, len(y_train)),
               cfg.model_kwargs())
    if on_start is not None:
        on_start(cfg, ds)
    if parallel is not None:
        check_shares(cfg, parallel, len(y_train))
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, rng=rng,
                        **cfg.model_kwargs())
    if parallel is not None:
        if cfg.sync_bn and cfg.norm == "batch":
            from .nn import convert_sync_batchnorm

            model = convert_sync_batchnorm(model, parallel.comm)
        parallel.broadcast_model(model)
    opt = make_optimizer(cfg, model)
    steps = len(DataLoader(x_train, y_train, batch_size=cfg.batch_size, shuffle=False))
    sched = make_scheduler(cfg, opt, steps)
    loop = None
    data = fingerprint(ds) if state_path is not None else None
    if resume:
        loop, _ = load_training_state(state_path, model, opt, sched, steps_per_epoch=steps,
                                      data=data)
    if on_model is not None:
        on_model(model)
    checkpoint = None
    if state_path is not None:
        def checkpoint(state):  # called on every rank; rank 0 writes
            if parallel is None or parallel.is_root:
                save_training_state(state_path, model, opt, sched, state, cfg.to_dict(), data)
    loss_fn = CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history = fit(model, x_train, y_train, optimizer=opt, epochs=cfg.epochs,
                  batch_size=cfg.batch_size, rng=rng, loss_fn=loss_fn, scheduler=sched,
                  x_val=x_val, y_val=y_val, on_step=on_step, on_epoch=on_epoch,
                  on_nonfinite=cfg.on_nonfinite, clip_grad_norm=cfg.clip_grad_norm,
                  checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=loop,
                  should_stop=should_stop, parallel=parallel)
    try:
        with jit(history.jit):  # the test set in the same kernel mode as the run
            final = evaluate(model, ds.x_test, ds.y_test, loss_fn=CrossEntropyLoss())
    except NonFiniteError as e:
        raise NonFiniteError(f"the final evaluation on the test split: {e}") from None
    return RunResult(cfg, model, history, final["accuracy"], final["loss"],
                     time.perf_counter() - t0, tuple(ds.input_shape), ds.num_classes, ds.note,
                     (float(ds.x_train.min()), float(ds.x_train.max())),
                     tuple(getattr(ds, "columns", ())),
                     {"train": len(y_train), "val": 0 if y_val is None else len(y_val),
                      "test": len(ds.y_test)})
