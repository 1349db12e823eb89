"""Benchmark cases: each returns a gammabeta callable, a PyTorch callable and a floor byte count.

A case is a dict ``{"name", "group", "gb", "torch", "bytes", "bytes_note"}``: ``gb`` and
``torch`` run the same work once (same shapes, same weights, same data) and ``bytes`` is the
memory traffic the work cannot avoid (see ``bytes_note``), from which ``run.py`` computes the
memory-floor time with the copy bandwidth measured in the same run.
"""

from __future__ import annotations

import copy

import flops
import numpy as np

import gammabeta.nn as gnn
from gammabeta import optim
from gammabeta.models import build_model
from gammabeta.nn.losses import CrossEntropyLoss
from gammabeta.nn.sequential import backward_params_only

BN_SHAPES = [("BatchNorm1d", (256, 1024)), ("BatchNorm1d", (4096, 1024)),
             ("BatchNorm2d", (64, 64, 32, 32)), ("BatchNorm2d", (128, 256, 8, 8))]
BN_MODES = [("forward (train)", 2), ("forward (eval)", 2), ("forward+backward", 5)]

# (case name, model builder name, input shape, classes, batch, builder options)
STEP_CASES = [
    ("MLP 784-256-256-10 + BN, batch 128", "mlp", (784,), 10, 128,
     dict(hidden=(256, 256), dropout=0.0)),
    ("MLP 784-1024-1024-10 + BN, batch 256", "mlp", (784,), 10, 256,
     dict(hidden=(1024, 1024), dropout=0.0)),
    ("MNIST-1D CNN (default `cnn`), batch 100", "cnn", (40,), 10, 100, {}),
]


def warm_kernels():
    """Compile or load every JIT kernel before anything is timed."""
    from gammabeta import backend

    backend.warm_kernels()


# ----- PyTorch twins ---------------------------------------------------------------------------
def torch_twin(model):
    """The equivalent ``torch.nn.Sequential`` with the same parameters and buffers."""
    import torch

    tn = torch.nn

    def convert(m):
        name = type(m).__name__
        if name == "Sequential":
            return tn.Sequential(*[convert(c) for c in m])
        if name == "Linear":
            return tn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        if name in ("Conv1d", "Conv2d"):
            return getattr(tn, name)(m.in_channels, m.out_channels, m.kernel_size,
                                     stride=m.stride, padding=m.padding, dilation=m.dilation,
                                     groups=m.groups, bias=m.bias is not None)
        if name in ("BatchNorm1d", "BatchNorm2d"):
            return getattr(tn, name)(m.num_features, eps=m.eps, momentum=m.momentum,
                                     affine=m.affine,
                                     track_running_stats=m.track_running_stats)
        if name in ("MaxPool1d", "MaxPool2d"):
            return getattr(tn, name)(m.kernel_size, m.stride, m.padding)
        if name == "Dropout":
            return tn.Dropout(m.p)
        if name == "Flatten":
            return tn.Flatten(m.start_dim, m.end_dim)
        if name == "Unflatten":
            return tn.Unflatten(m.dim, m.unflattened_size)
        if name == "ReLU":
            return tn.ReLU()
        raise NotImplementedError(f"no PyTorch twin for {name}")

    twin = convert(model)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(sd, strict=True)
    return twin


def torch_param_groups(twin, weight_decay):
    """PyTorch twin of :func:`gammabeta.optim.param_groups` (decay on ndim >= 2 only)."""
    decay = [p for p in twin.parameters() if p.ndim >= 2]
    keep = [p for p in twin.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": keep, "weight_decay": 0.0}]



def _norm_case(name, group, mode, passes, layer, tl, x, dy) -> dict:
    """One timed case of a normalization layer and its torch twin: ``forward (train)``,
    ``forward (eval)`` (no grad) or ``forward+backward``; bytes = passes × the input's."""
    import torch

    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
    if mode == "forward (train)":
        def fg():
            layer(x)

        def ft():
            tl(tx)
    elif mode == "forward (eval)":
        layer.eval()
        tl.eval()

        def fg():
            with gnn.no_grad():
                layer(x)

        def ft():
            with torch.no_grad():
                tl(tx)
    else:
        txg = tx.clone().requires_grad_(True)

        def fg():
            layer.zero_grad()
            layer(x)
            layer.backward(dy)

        def ft():
            tl.zero_grad()
            txg.grad = None
            tl(txg).backward(tdy)
    size = x.nbytes
    note = ("read x, write y" if passes == 2 else
            "fwd: read x, write y; bwd: read x, read dy, write dx")
    return dict(name=name, group=group, gb=fg, torch=ft, bytes=passes * size,
                bytes_note=f"{passes} × {size / 1e6:.1f} MB ({note})")


# ----- BatchNorm cases -------------------------------------------------------------------------
def bn_cases():
    import torch

    out = []
    for kind, shape in BN_SHAPES:
        rng = np.random.default_rng(0)
        c = shape[1]
        x = (rng.standard_normal(shape, dtype=np.float32) * 2 + 1)
        dy = rng.standard_normal(shape, dtype=np.float32)
        for mode, passes in BN_MODES:
            bn = getattr(gnn, kind)(c, gamma_init="normal(mean=1, std=0.2)", beta_init="normal",
                                    rng=np.random.default_rng(1))
            tb = getattr(torch.nn, kind)(c)
            with torch.no_grad():
                tb.weight.copy_(torch.from_numpy(bn.weight.data))
                tb.bias.copy_(torch.from_numpy(bn.bias.data))
            out.append(_norm_case(f"{kind} {shape} {mode}", "BatchNorm", mode, passes, bn, tb,
                                  x, dy))
    return out


# ----- LayerNorm, GroupNorm, InstanceNorm cases -------------------------------------------------
# (label, layer constructor arguments, input shape)
NORM_SHAPES = [("LayerNorm(1024)", ("LayerNorm", (1024,)), (256, 1024)),
               ("LayerNorm(1024)", ("LayerNorm", (1024,)), (4096, 1024)),
               ("LayerNorm(256)", ("LayerNorm", (256,)), (64, 128, 256)),
               ("GroupNorm(32, 256)", ("GroupNorm", (32, 256)), (64, 256, 16, 16)),
               ("GroupNorm(32, 64)", ("GroupNorm", (32, 64)), (128, 64, 32, 32)),
               ("InstanceNorm2d(256, affine=True)", ("InstanceNorm2d", (256,)),
                (64, 256, 16, 16))]
NORM_MODES = [("forward+backward", 5), ("forward (eval)", 2)]


def _norm_pair(kind: str, args: tuple):
    """The gammabeta layer (random γ and β) and its PyTorch twin with the same values."""
    import torch

    from gammabeta.nn.groupnorm import GroupNorm
    from gammabeta.nn.instancenorm import InstanceNorm2d
    from gammabeta.nn.layernorm import LayerNorm

    init = dict(weight_init="normal(mean=1, std=0.2)", bias_init="normal",
                rng=np.random.default_rng(1))
    if kind == "InstanceNorm2d":
        ours, theirs = InstanceNorm2d(*args, affine=True, **init), torch.nn.InstanceNorm2d(
            *args, affine=True)
    else:
        ours = {"LayerNorm": LayerNorm, "GroupNorm": GroupNorm}[kind](*args, **init)
        theirs = getattr(torch.nn, kind)(*args)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    return ours, theirs


def norm_cases():
    """LayerNorm, GroupNorm and InstanceNorm2d: forward+backward in training mode, and the
    forward in evaluation mode (no gradient), against PyTorch's layers."""
    out = []
    for label, (kind, args), shape in NORM_SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
        dy = rng.standard_normal(shape, dtype=np.float32)
        for mode, passes in NORM_MODES:
            layer, tl = _norm_pair(kind, args)
            out.append(_norm_case(f"{label} {shape} {mode}", "LayerNorm/GroupNorm", mode, passes,
                                  layer, tl, x, dy))
    return out


# ----- training steps --------------------------------------------------------------------------
def _leaf_activation_bytes(model, xb) -> int:
    """Bytes of every new array a leaf layer outputs in one forward (views excluded)."""
    total = [0]
    handles = []

    def hook(m, x, y):
        if not np.shares_memory(x, y):
            total[0] += y.nbytes

    for m in model.modules():
        if not m._modules:
            handles.append(m.register_forward_hook(hook))
    with gnn.no_grad():
        model.train()
        model(xb)
    for h in handles:
        h.remove()
    return total[0]


def make_step(name, input_shape, classes, batch, options, seed=0, with_models=False):
    """Both frameworks' training step for one model: forward, loss, backward, AdamW step."""
    import torch

    rng = np.random.default_rng(seed)
    model = build_model(name, input_shape, classes, rng=rng, **options)
    twin = torch_twin(model)
    xb = rng.standard_normal((batch, *input_shape), dtype=np.float32)
    yb = rng.integers(0, classes, batch)
    opt = optim.AdamW(optim.param_groups(model, 0.05), lr=1e-3)
    topt = torch.optim.AdamW(torch_param_groups(twin, 0.05), lr=1e-3)
    loss_fn = CrossEntropyLoss()
    tloss = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(xb), torch.from_numpy(yb)
    # state for the floor count, taken before any step changes the BN statistics
    act = _leaf_activation_bytes(model, xb)
    gemms = flops.step_gemms(copy.deepcopy(model), xb)
    nparam = sum(p.data.nbytes for p in model.parameters())

    def fg():  # as the training loop runs it: no gradient of the input (nor in PyTorch)
        opt.zero_grad()
        loss_fn(model(xb), yb)
        backward_params_only(model, loss_fn.backward())
        opt.step()

    def ft():
        topt.zero_grad()
        tloss(twin(tx), ty).backward()
        topt.step()

    nbytes = 5 * act + 10 * nparam + xb.nbytes
    note = (f"5 × activations {act / 1e6:.2f} MB + 10 × parameters {nparam / 1e6:.2f} MB + "
            f"input {xb.nbytes / 1e6:.2f} MB")
    if with_models:
        return fg, ft, nbytes, note, (model, twin, loss_fn)
    return fg, ft, nbytes, note, gemms


def step_cases():
    out = []
    for label, name, shape, classes, batch, opts in STEP_CASES:
        fg, ft, nbytes, note, gemms = make_step(name, shape, classes, batch, opts)
        out.append(dict(name=f"train step: {label}", group="Training step", gb=fg, torch=ft,
                        bytes=nbytes, bytes_note=note, gemms=gemms))
    return out


# ----- a full default `gammabeta train` epoch --------------------------------------------------
def epoch_case():
    """One epoch of the default ``gammabeta train`` (mlp on MNIST-1D) + test evaluation."""
    import torch

    from gammabeta.data.loader import DataLoader
    from gammabeta.data.registry import load_dataset
    from gammabeta.experiment import TrainConfig, make_optimizer, make_scheduler
    from gammabeta.train import evaluate, train_epoch

    ds = load_dataset("mnist1d")
    cfg = TrainConfig().resolved(len(ds.input_shape))
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, rng=rng,
                        **cfg.model_kwargs())
    twin = torch_twin(model)
    loader = DataLoader(ds.x_train, ds.y_train, batch_size=cfg.batch_size, shuffle=True,
                        rng=rng)
    steps = len(loader)
    epochs = 200  # room for warm-up and repeats: a schedule never runs past its end
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(dataclass_replace(cfg, epochs=epochs), opt, steps)
    loss_fn = CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    topt = torch.optim.AdamW(torch_param_groups(twin, cfg.weight_decay), lr=cfg.lr)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=cfg.lr,
                                                 total_steps=epochs * steps)
    tloss = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    tloader = DataLoader(ds.x_train, ds.y_train, batch_size=cfg.batch_size, shuffle=True,
                         rng=np.random.default_rng(cfg.seed))

    def fg():
        train_epoch(model, loader, opt, loss_fn, sched)
        evaluate(model, ds.x_test, ds.y_test)

    def ft():
        twin.train()
        total, correct = 0.0, 0
        for xb, yb in tloader:
            x, y = torch.from_numpy(xb), torch.from_numpy(yb)
            topt.zero_grad()
            logits = twin(x)
            loss = tloss(logits, y)
            loss.backward()
            topt.step()
            tsched.step()
            total += float(loss) * len(yb)
            correct += int((logits.argmax(1) == y).sum())
        twin.eval()
        with torch.no_grad():
            xt, yt = torch.from_numpy(ds.x_test), torch.from_numpy(ds.y_test)
            outs = torch.cat([twin(xt[i:i + 1000]) for i in range(0, len(xt), 1000)])
            float(torch.nn.functional.cross_entropy(outs, yt))
            float((outs.argmax(1) == yt).float().mean())

    act = _leaf_activation_bytes(model, ds.x_train[:cfg.batch_size]) * steps
    nparam = sum(p.data.nbytes for p in model.parameters())
    nbytes = 5 * act + 10 * nparam * steps + ds.x_train.nbytes + 2 * ds.x_test.nbytes
    note = (f"{steps} steps × (5 × activations + 10 × parameters) + train set + 2 × test set "
            f"= {nbytes / 1e6:.1f} MB")
    label = (f"epoch: default `gammabeta train` (mlp {cfg.hidden}, dropout {cfg.dropout}, "
             f"batch {cfg.batch_size}, {steps} steps + test eval)")
    return dict(name=label, group="Epoch", gb=fg, torch=ft, bytes=nbytes, bytes_note=note)


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
