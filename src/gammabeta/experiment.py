"""One training run from a flat, JSON-able config: data → model → optimizer → schedule → fit.

The CLI's ``train`` and the study runner both go through :func:`run`, so a study row and a
command-line run with the same config give the same numbers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import optim
from .checkpoint import load_training_state, save_training_state
from .data.loader import DataLoader
from .data.registry import load_dataset
from .errors import ConfigError
from .models import build_model
from .nn.losses import CrossEntropyLoss
from .train import History, evaluate, fit

__all__ = ["TrainConfig", "RunResult", "run", "make_optimizer", "make_scheduler", "recipe"]

# Recipes: what ``gammabeta train --model NAME`` uses for options left unset, per model and
# input rank (1: vectors such as MNIST-1D, 3: images). Measured on MNIST-1D, 3 seeds: see README.
_RECIPES: dict[tuple[str, int], dict] = {
    # BN MLP 256-256, dropout 0.2, AdamW (wd 0.05 on weights), one-cycle peak 0.05, 100 epochs
    ("mlp", 1): dict(hidden="256,256", dropout=0.2, epochs=100, lr=0.05),
    ("resmlp", 1): dict(hidden="256,256", dropout=0.2, epochs=100, lr=0.05),
    # 8 × (conv k3 → BN → ReLU) of 32 channels, max-pool every 2, AdamW, one-cycle
    ("cnn", 1): dict(epochs=40, lr=0.01, dropout=0.0),
    ("papercnn", 1): dict(epochs=60, lr=0.01, dropout=0.0),
    ("resnet", 1): dict(epochs=40, lr=0.01, dropout=0.0),
    # images: a lighter CNN (pool after every conv) so an epoch of MNIST takes seconds
    ("cnn", 3): dict(epochs=15, lr=0.01, dropout=0.0,
                     model_options=dict(layers=4, pool_every=1)),
    ("resnet", 3): dict(epochs=10, lr=0.01, dropout=0.0),
}
_FALLBACK = dict(hidden="256,256", dropout=0.2, epochs=60, lr=0.01)


def recipe(model: str, input_rank: int) -> dict:
    """The default options of ``model`` for inputs of rank ``input_rank`` (2 counts as 1)."""
    rank = 1 if input_rank <= 2 else 3
    return dict(_RECIPES.get((model, rank), _RECIPES.get((model, 1), _FALLBACK)))


@dataclass
class TrainConfig:
    """Every option of a run; ``None`` means "the model's recipe" (see :func:`recipe`)."""

    data: str = "mnist1d"
    data_dir: str | None = None
    download: bool = False
    model: str = "mlp"
    hidden: str | None = None
    norm: str = "batch"
    act: str = "relu"
    dropout: float | None = None
    weight_init: str = "torch_default"
    bias_init: str = "torch_default"
    gamma_init: str = "ones"
    beta_init: str = "zeros"
    optimizer: str = "adamw"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.05
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    batch_size: int = 100
    epochs: int | None = None
    seed: int = 0
    on_nonfinite: str = "raise"
    clip_grad_norm: float | None = None
    model_options: dict = field(default_factory=dict)

    def resolved(self, input_rank: int = 1) -> TrainConfig:
        """A copy with every ``None`` filled from :func:`recipe` (model options merged)."""
        rec = recipe(self.model, input_rank)
        opts = {**rec.pop("model_options", {}), **self.model_options}
        updates = {k: v for k, v in rec.items() if getattr(self, k, None) is None}
        return dataclasses.replace(self, **updates, model_options=opts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict, refusing unknown keys (a typo must not be silently ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ConfigError(f"unknown training option(s) {bad}; valid: {sorted(names)}")
        return cls(**d)

    def model_kwargs(self) -> dict:
        """Options passed to the model builder."""
        kw = dict(hidden=self.hidden, norm=self.norm, act=self.act, dropout=self.dropout,
                  weight_init=self.weight_init, bias_init=self.bias_init,
                  gamma_init=self.gamma_init, beta_init=self.beta_init)
        return {**{k: v for k, v in kw.items() if v is not None}, **self.model_options}


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

    def metrics(self) -> dict:
        """The JSON written to ``metrics.json``."""
        return {"test_accuracy": self.test_accuracy, "test_loss": self.test_loss,
                "seconds": self.seconds, "config": self.config.to_dict(),
                "history": self.history.as_dict(), "dataset_note": self.dataset_note,
                "note": "val_* columns are the held-out test split, recorded for the curves "
                        "only; no epoch or setting is selected by them"}


def make_optimizer(cfg: TrainConfig, model):
    """AdamW/Adam/SGD over two parameter groups: weight decay skips biases, γ and β."""
    groups = optim.param_groups(model, cfg.weight_decay)
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
        return optim.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
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
        on_model: Callable | None = None) -> RunResult:
    """Train one model as ``cfg`` says and evaluate it on the test split.

    ``on_start(resolved_config, dataset)`` is called once the data is loaded and
    ``on_model(model)`` once the model is built (e.g. to attach diagnostics). With
    ``state_path`` the full training state is saved there (atomically) after every epoch,
    every ``checkpoint_every`` steps and on a requested stop; ``resume=True`` continues from
    it, ending bit-identical to an uninterrupted run.
    """
    t0 = time.perf_counter()
    ds = dataset if dataset is not None else load_dataset(
        cfg.data, data_dir=cfg.data_dir, download=cfg.download, seed=cfg.seed)
    cfg = cfg.resolved(len(ds.input_shape))
    if isinstance(cfg.epochs, bool) or not isinstance(cfg.epochs, int) or cfg.epochs < 1:
        raise ConfigError(f"epochs={cfg.epochs!r}; expected a whole number >= 1")
    if on_start is not None:
        on_start(cfg, ds)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, rng=rng,
                        **cfg.model_kwargs())
    opt = make_optimizer(cfg, model)
    steps = len(DataLoader(ds.x_train, ds.y_train, batch_size=cfg.batch_size, shuffle=False))
    sched = make_scheduler(cfg, opt, steps)
    loop = None
    if resume:
        loop, _ = load_training_state(state_path, model, opt, sched)
    if on_model is not None:
        on_model(model)
    checkpoint = None
    if state_path is not None:
        def checkpoint(state):
            save_training_state(state_path, model, opt, sched, state, cfg.to_dict())
    loss_fn = CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history = fit(model, ds.x_train, ds.y_train, optimizer=opt, epochs=cfg.epochs,
                  batch_size=cfg.batch_size, rng=rng, loss_fn=loss_fn, scheduler=sched,
                  x_val=ds.x_test, y_val=ds.y_test, on_step=on_step, on_epoch=on_epoch,
                  on_nonfinite=cfg.on_nonfinite, clip_grad_norm=cfg.clip_grad_norm,
                  checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=loop,
                  should_stop=should_stop)
    final = evaluate(model, ds.x_test, ds.y_test, loss_fn=CrossEntropyLoss())
    return RunResult(cfg, model, history, final["accuracy"], final["loss"],
                     time.perf_counter() - t0, tuple(ds.input_shape), ds.num_classes, ds.note)
