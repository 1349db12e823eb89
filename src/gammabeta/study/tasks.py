"""One study run: train a model as a :class:`~gammabeta.experiment.TrainConfig` says, with hooks.

:func:`execute` takes a job (a JSON-able dict: ``key``, ``config``, ``options``, ``axes``,
``seed``) and returns a JSON-able row. It follows :func:`gammabeta.experiment.run` step by step
(same generator, same draws in the same order), so with default options a row's
``test_accuracy`` equals that of ``experiment.run`` on the same config. The task options
(:mod:`.options`) add what the built-in studies need: test accuracy every few steps, an L1
penalty on γ, pruning by |γ| with fine-tuning, training only some parameters (γ and β, or as
many randomly chosen weights), zero-γ residual blocks, and per-layer diagnostics.

Every run executes with BLAS (threadpoolctl) and Numba limited to one thread, so a row does not
depend on which executor (in-process, process pool, Dask) ran it; runs in one process are
serialized by a lock because ``nn.no_grad`` is process-global.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import threading
import time

import numpy as np

from .. import nn
from ..config import LIMITS, check_option
from ..data.loader import DataLoader
from ..data.registry import load_dataset
from ..errors import ConfigError, NonFiniteError
from ..experiment import TrainConfig, held_out, make_optimizer, make_scheduler
from ..models import build_model
from ..models.size import check_fits
from ..nn.batchnorm import _BatchNorm
from ..nn.losses import CrossEntropyLoss
from ..train import History, evaluate, fit
from .options import OPTIONS

__all__ = ["execute", "run_job"]

class _Stop(Exception):
    """Raised from ``on_step`` to end training after ``steps`` steps."""

_RUN_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_thread():
    """BLAS (through threadpoolctl) and Numba's parallel kernels limited to one thread.

    Parallel workers then do not oversubscribe the cores, and a run's numbers do not depend on
    the executor or the machine's core count.
    """
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=1))
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            pass
        if importlib.util.find_spec("numba") is not None:
            import numba

            prev = numba.get_num_threads()
            numba.set_num_threads(1)
            stack.callback(numba.set_num_threads, prev)
        yield


@functools.lru_cache(maxsize=4)
def _dataset(data, data_dir, download, seed, max_train, max_test):
    ds = load_dataset(data, data_dir=data_dir, download=download, seed=seed)
    if max_train or max_test:
        mt, ms = max_train or len(ds.y_train), max_test or len(ds.y_test)
        ds = dataclasses.replace(ds, x_train=ds.x_train[:mt], y_train=ds.y_train[:mt],
                                 x_test=ds.x_test[:ms], y_test=ds.y_test[:ms])
    return ds


def _batchnorms(model) -> list:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.affine]


class _Stepper:
    """Stands in for the optimizer in ``train_epoch``: L1 on γ, gradient masks, then step.

    Masked entries get zero gradient and are restored after the step (so decoupled weight
    decay cannot move them either).
    """

    def __init__(self, opt, l1: float = 0.0, gammas=(), masks=()):
        self.opt, self.l1, self.gammas, self.masks = opt, float(l1), list(gammas), list(masks)

    @property
    def param_groups(self):
        return self.opt.param_groups

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        if self.l1:
            for p in self.gammas:
                if p.grad is not None:
                    p.grad += self.l1 * np.sign(p.data)
        frozen = []
        for p, m in self.masks:
            if p.grad is not None:
                p.grad *= m
            frozen.append((p, ~m, p.data[~m].copy()))
        self.opt.step()
        for p, keep, values in frozen:
            p.data[keep] = values


def _restrict(model, mode: str, rng: np.random.Generator) -> tuple[int, list]:
    """Freeze parameters for ``trainable`` = bn / random; return (trainable count, masks)."""
    bn_params = {id(p) for m in _batchnorms(model) for p in (m.weight, m.bias)}
    params = list(model.parameters())
    n_bn = sum(p.size for p in params if id(p) in bn_params)
    if mode == "all":
        return sum(p.size for p in params), []
    if mode == "bn":
        if n_bn == 0:
            raise ConfigError("trainable='bn': the model has no BatchNorm parameters")
        for p in params:
            p.requires_grad = id(p) in bn_params
        return n_bn, []
    if mode != "random":
        raise ConfigError(f"trainable={mode!r}; expected all, bn or random")
    others = [p for p in params if id(p) not in bn_params]
    total = sum(p.size for p in others)
    chosen = np.zeros(total, dtype=bool)
    chosen[rng.choice(total, size=min(n_bn, total), replace=False)] = True
    masks, start = [], 0
    for p in params:
        if id(p) in bn_params:
            p.requires_grad = False
            continue
        m = chosen[start:start + p.size].reshape(p.shape)
        start += p.size
        if m.any():
            masks.append((p, m))
        else:
            p.requires_grad = False
    return int(chosen.sum()), masks


def _prune(model, ds, fractions, finetune_epochs, lr, batch_size, seed) -> list[dict]:
    """Accuracy after zeroing γ and β of the smallest-|γ| channels (global threshold)."""
    bns = _batchnorms(model)
    if not bns:
        raise ConfigError("prune: the model has no BatchNorm layers")
    state = model.state_dict()
    mags = np.concatenate([np.abs(m.weight.data).ravel() for m in bns])
    order = np.argsort(mags, kind="stable")
    sizes = np.cumsum([0] + [m.weight.size for m in bns])
    out = []
    for i, frac in enumerate(fractions):
        k = int(round(float(frac) * len(mags)))
        pruned = np.zeros(len(mags), dtype=bool)
        pruned[order[:k]] = True
        masks = []
        for m, lo, hi in zip(bns, sizes[:-1], sizes[1:], strict=True):
            cut = pruned[lo:hi]
            m.weight.data[cut] = 0
            m.bias.data[cut] = 0
            masks += [(m.weight, ~cut), (m.bias, ~cut)]
        rec = {"fraction": float(frac), "channels": int(k),
               "accuracy": evaluate(model, ds.x_test, ds.y_test)["accuracy"]}
        if finetune_epochs:
            from ..optim import AdamW, param_groups

            rng = np.random.default_rng([seed, 2, i])
            opt = _Stepper(AdamW(param_groups(model, 0.0), lr=lr), masks=masks)
            try:
                fit(model, ds.x_train, ds.y_train, optimizer=opt, epochs=finetune_epochs,
                    batch_size=batch_size, rng=rng)
                rec["finetuned_accuracy"] = evaluate(model, ds.x_test, ds.y_test)["accuracy"]
            except NonFiniteError:
                rec["finetuned_accuracy"] = None
        out.append(rec)
        model.load_state_dict(state)
    return out


def run_job(job: dict, parallel=None) -> dict:
    """Run one job (see the module docstring) and return its result row (JSON-able); with
    ``parallel`` (a DataParallel) every rank calls this alike."""
    t0 = time.perf_counter()
    opts = {k: v[0] for k, v in OPTIONS.items()}
    unknown = sorted(set(job.get("options", {})) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown task option(s) {unknown}; valid: {sorted(OPTIONS)}")
    opts.update(job.get("options", {}))
    for k, v in job.get("options", {}).items():
        check_option(k, v, OPTIONS[k][1])
    cfg = TrainConfig.from_dict(job["config"])
    cfg.validate()  # checked, but recorded as given (the run key hashes the given values)
    ds = _dataset(cfg.data, cfg.data_dir, cfg.download, cfg.seed, opts["max_train"],
                  opts["max_test"])
    cfg = cfg.resolved(len(ds.input_shape))
    if cfg.val_fraction:  # held out when a study asks (runner.STUDY_DEFAULTS: 0); the
        # curves stay on the test split
        x_tr, y_tr = held_out(cfg, ds)[:2]
        ds = dataclasses.replace(ds, x_train=x_tr, y_train=y_tr)
    check_fits(cfg.model, ds.input_shape, ds.num_classes, cfg.batch_size, cfg.model_kwargs())
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, rng=rng,
                        **cfg.model_kwargs())
    if parallel is not None:
        from ..experiment import check_shares

        check_shares(cfg, parallel, len(ds.y_train))
        if cfg.sync_bn and cfg.norm == "batch":
            model = nn.convert_sync_batchnorm(model, parallel.comm)
        parallel.broadcast_model(model)
    if opts["zero_last_gamma"] and nn.zero_init_residual_(model) == 0:
        raise ConfigError(f"zero_last_gamma: model {cfg.model!r} has no residual block with BN")
    if opts["weight_scale"] != 1:
        weights = [p for p in model.parameters() if p.data.ndim >= 2]
        if opts["weight_scale_layers"] not in ("all", "hidden"):
            raise ConfigError(f"weight_scale_layers={opts['weight_scale_layers']!r}; expected "
                              "all or hidden")
        for p in weights[:-1] if opts["weight_scale_layers"] == "hidden" else weights:
            p.data *= np.asarray(opts["weight_scale"], dtype=p.data.dtype)
    if opts["bn_momentum"] != 0.1:
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.momentum = float(opts["bn_momentum"])
    n_train, masks = _restrict(model, opts["trainable"], np.random.default_rng([cfg.seed, 1]))
    spe = len(DataLoader(ds.x_train, ds.y_train, batch_size=cfg.batch_size, shuffle=False))
    if opts["steps"]:
        epochs = -(-opts["steps"] // spe)
        if epochs > LIMITS["epochs"]:
            raise ConfigError(f"steps={opts['steps']:,} is {epochs:,} epochs of {spe} steps; "
                              f"expected at most {LIMITS['epochs']:,} epochs")
        cfg = dataclasses.replace(cfg, epochs=epochs)
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, spe)
    gammas = [m.weight for m in _batchnorms(model)] if opts["l1_gamma"] else []
    stepper = _Stepper(opt, opts["l1_gamma"], gammas, masks)
    diag = None
    if opts["track"]:
        from ..diagnostics import Diagnostics, activation_inputs

        if opts["track"] != "last_activation_input":
            raise ConfigError(f"track={opts['track']!r}; expected '' or 'last_activation_input'")
        diag = Diagnostics(model, layers=activation_inputs(model)[-1:], units=[0])
    curve: dict[str, list] = {"step": [], "test_accuracy": [], "test_loss": [], "train_loss": []}
    losses: list[float] = []
    history, state = History(), {"step": 0}

    def point(step):
        ev = evaluate(model, ds.x_test, ds.y_test)
        curve["step"].append(step)
        curve["test_accuracy"].append(ev["accuracy"])
        curve["test_loss"].append(ev["loss"])
        curve["train_loss"].append(float(np.mean(losses)) if losses else None)
        losses.clear()
        if diag is not None:
            diag.record_step(step)

    def on_step(step, loss):
        state["step"] = step
        losses.append(loss)
        if opts["eval_every"] and step % opts["eval_every"] == 0:
            point(step)
        if opts["steps"] and step >= opts["steps"]:
            raise _Stop

    def on_epoch(record):
        history.append(record)
        if not opts["eval_every"]:
            point(state["step"])

    diverged, error = False, None
    try:
        point(0)
        fit(model, ds.x_train, ds.y_train, optimizer=stepper, epochs=cfg.epochs,
            batch_size=cfg.batch_size, rng=rng,
            loss_fn=CrossEntropyLoss(label_smoothing=cfg.label_smoothing), scheduler=sched,
            on_step=on_step, on_epoch=on_epoch, parallel=parallel,
            **{k: getattr(cfg, k) for k in ("on_nonfinite", "clip_grad_norm") if hasattr(cfg, k)})
    except _Stop:
        pass
    except NonFiniteError as e:
        diverged, error = True, str(e)
    if not diverged and curve["step"][-1] != state["step"]:
        try:
            point(state["step"])
        except NonFiniteError as e:
            diverged, error = True, str(e)
    row = {"key": job["key"], "study": job.get("study", ""), "seed": cfg.seed,
           "num_classes": ds.num_classes, "test_size": len(ds.y_test),
           "axes": dict(job.get("axes", {})), "config": cfg.to_dict(), "options": opts,
           "diverged": diverged, "steps": state["step"], "steps_per_epoch": spe,
           "trainable_params": n_train,
           "total_params": model.num_parameters(), "curve": curve, "history": history.as_dict()}
    final = None
    if not diverged:
        try:
            final = evaluate(model, ds.x_test, ds.y_test, loss_fn=CrossEntropyLoss())
        except NonFiniteError as e:
            diverged, error = True, str(e)
            row["diverged"] = True
    if diverged:
        row.update(test_accuracy=None, test_loss=None, error=error)
    else:
        row.update(test_accuracy=final["accuracy"], test_loss=final["loss"])
        if opts["prune"]:
            row["prune"] = _prune(model, ds, opts["prune"], opts["finetune_epochs"],
                                  opts["finetune_lr"], cfg.batch_size, cfg.seed)
    if opts["bn_gap"] and not diverged:
        from .measures import bn_gap

        row["bn_gap"] = bn_gap(model, ds.x_train)
    if opts["precise_bn"] and not diverged:
        from .measures import precise_bn

        row.update(precise_bn(model, ds, opts["precise_bn"], cfg.batch_size, cfg.seed))
    if opts["record_gamma"]:
        row["gamma"] = [float(f"{g:.5g}") for m in _batchnorms(model) for g in m.weight.data]
    if diag is not None:
        row["diagnostics"] = diag.to_dict()
        diag.remove()
    from .. import backend

    row["jit"] = backend.jit_mode() if hasattr(backend, "jit_mode") else "off"
    row["seconds"] = time.perf_counter() - t0
    return _jsonable(row)


def _jsonable(obj):
    """Replace NaN/inf by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def execute(job: dict) -> dict:
    """:func:`run_job` with one BLAS/Numba thread, one run at a time per process (picklable);
    a job with the task option ``ranks`` > 1 runs under ``mpiexec -n ranks``
    (:mod:`gammabeta.distributed.job`)."""
    if job.get("options", {}).get("ranks", 1) > 1:
        from ..distributed.job import run_under_mpiexec

        return run_under_mpiexec(job)
    with _RUN_LOCK, _one_thread():
        return run_job(job)
