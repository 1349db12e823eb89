"""Optimizers and LR schedules: PyTorch parity, in-place dtype-preserving updates, state dicts."""

from __future__ import annotations

import numpy as np
import pytest

from gammabeta.errors import ConfigError, DTypeError, ShapeError, StateDictError
from gammabeta.nn.module import Module, Parameter
from gammabeta.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    LinearWarmup,
    OneCycleLR,
    Optimizer,
    StepLR,
    param_groups,
)

from ._torch import require_torch

torch = require_torch()

SHAPES = [(4, 3), (3,), (2, 2, 2)]
TOL = {np.float64: 1e-6, np.float32: 1e-5}


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def _torch_params(params):
    return [torch.tensor(p.data.copy(), requires_grad=True) for p in params]


def _groups(params, spec):
    """spec None: a flat list; otherwise a list of (slice, overrides) pairs."""
    if spec is None:
        return list(params)
    return [{"params": list(params[sl]), **over} for sl, over in spec]


def _assert_rel(got, want, rel):
    scale = max(1.0, float(np.max(np.abs(want))))
    err = float(np.max(np.abs(got - want))) / scale
    assert err <= rel, f"relative error {err:.3g} > {rel:g}"


OPT_CASES = [
    (SGD, "SGD", dict(lr=0.1), None),
    (SGD, "SGD", dict(lr=0.1, momentum=0.9), None),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01), None),
    (SGD, "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), None),
    (SGD, "SGD", dict(lr=0.05, momentum=0.5, maximize=True), None),
    (SGD, "SGD", dict(lr=0.1, momentum=0.9),
     [(slice(0, 2), dict(lr=0.02, weight_decay=0.1)), (slice(2, 3), dict(nesterov=True))]),
    (Adam, "Adam", dict(lr=1e-2), None),
    (Adam, "Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), None),
    (Adam, "Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-2), None),
    (Adam, "Adam", dict(lr=1e-2, betas=(0.3, 0.9)), None),  # lerp weight >= 0.5 branch
    (Adam, "Adam", dict(lr=1e-2),
     [(slice(0, 1), dict(lr=0.05, weight_decay=0.1)), (slice(1, 3), dict(amsgrad=True))]),
    (AdamW, "AdamW", dict(lr=1e-2), None),
    (AdamW, "AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True), None),
    (AdamW, "AdamW", dict(lr=1e-2, weight_decay=0.1),
     [(slice(0, 1), {}), (slice(1, 3), dict(weight_decay=0.0, lr=0.03))]),
]


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,tname,kw,spec", OPT_CASES)
def test_optimizer_matches_torch(cls, tname, kw, spec, dtype):
    params = _params(dtype)
    tparams = _torch_params(params)
    ours = cls(_groups(params, spec), **kw)
    theirs = getattr(torch.optim, tname)(_groups(tparams, spec), **kw)
    rng = np.random.default_rng(1)
    arrays = [p.data for p in params]
    for _ in range(12):
        for p, tp in zip(params, tparams, strict=True):
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
        ours.step()
        theirs.step()
    for p, a, tp in zip(params, arrays, tparams, strict=True):
        assert p.data is a and p.data.dtype == dtype  # in place, dtype kept
        _assert_rel(p.data, tp.detach().numpy(), TOL[dtype])
    for st in ours.state.values():
        for v in st.values():
            assert not isinstance(v, np.ndarray) or v.dtype == dtype


def test_skips_params_without_grad_or_frozen():
    a, b, c = _params(np.float32)
    b.requires_grad = False
    b.grad = np.ones_like(b.data)
    before = [p.data.copy() for p in (a, b, c)]
    c.grad = np.ones_like(c.data)
    opt = Adam([a, b, c], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(a.data, before[0])
    np.testing.assert_array_equal(b.data, before[1])
    assert not np.array_equal(c.data, before[2])
    assert set(opt.state) == {c}


def test_float32_grad_of_other_dtype_keeps_param_dtype():
    (p,) = _params(np.float32)[:1]
    p.grad = np.ones(p.shape, dtype=np.float64)
    SGD([p], lr=np.float64(0.1), momentum=0.9).step()
    assert p.data.dtype == np.float32


def test_zero_grad_and_defaults():
    params = _params(np.float64)
    opt = SGD([{"params": params[:1], "lr": 0.5}, {"params": params[1:]}], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[1]["lr"] == 0.1
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[1]["nesterov"] is False
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


class _Net(Module):
    def __init__(self):
        super().__init__()
        self.weight = Parameter(np.ones((3, 2)))
        self.bias = Parameter(np.ones(3))
        self.gamma = Parameter(np.ones(3))
        self.beta = Parameter(np.ones(3))


def test_param_groups_helper_skips_biases_and_batchnorm_affine():
    net = _Net()
    groups = param_groups(net, weight_decay=0.5)
    assert groups[0]["params"] == [net.weight] and groups[0]["weight_decay"] == 0.5
    assert groups[1]["params"] == [net.bias, net.gamma, net.beta]
    assert groups[1]["weight_decay"] == 0.0
    opt = SGD(groups, lr=0.1)
    for p in net.parameters():
        p.grad = np.zeros_like(p.data)
    opt.step()
    np.testing.assert_allclose(net.weight.data, 1 - 0.1 * 0.5)
    for p in (net.bias, net.gamma, net.beta):
        np.testing.assert_array_equal(p.data, 1.0)
    by_name = param_groups(net, 0.1, no_decay=["weight"])
    assert by_name[0]["params"] == []
    custom = param_groups(net.named_parameters(), 0.1, no_decay=lambda n, p: n == "gamma")
    assert custom[1]["params"] == [net.gamma]


# ----- schedules ---------------------------------------------------------------------------
def _pair(ours_cls, tname, kw):
    params = _params(np.float64)
    tparams = _torch_params(params)
    groups = [(slice(0, 1), dict(lr=0.1)), (slice(1, 3), dict(lr=0.02))]
    ours = ours_cls(_groups(params, groups), **kw)
    theirs = getattr(torch.optim, tname)(_groups(tparams, groups), **kw)
    return ours, theirs


def _momentum(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def _compare_schedules(ours, theirs, steps, with_momentum=False):
    for _ in range(steps):
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12,
                                   atol=1e-15)
        np.testing.assert_allclose([g["lr"] for g in ours.optimizer.param_groups],
                                   theirs.get_last_lr(), rtol=1e-12, atol=1e-15)
        if with_momentum:
            np.testing.assert_allclose(_momentum(ours.optimizer), _momentum(theirs.optimizer),
                                       rtol=1e-12)
        theirs.optimizer.step()
        ours.step()
        theirs.step()


@pytest.mark.torch
@pytest.mark.parametrize("ours_cls,tname,kw,steps", [
    (StepLR, "StepLR", dict(step_size=3, gamma=0.5), 20),
    (CosineAnnealingLR, "CosineAnnealingLR", dict(T_max=10, eta_min=1e-3), 25),
    (CosineAnnealingLR, "CosineAnnealingLR", dict(T_max=7), 10),
])
def test_schedule_matches_torch(ours_cls, tname, kw, steps):
    (opt, topt) = _pair(SGD, "SGD", dict(lr=0.1, momentum=0.9))
    _compare_schedules(ours_cls(opt, **kw), getattr(torch.optim.lr_scheduler, tname)(topt, **kw),
                       steps)


@pytest.mark.torch
def test_linear_warmup_matches_torch_linear_lr():
    opt, topt = _pair(Adam, "Adam", {})
    ours = LinearWarmup(opt, warmup_steps=5, start_factor=0.1)
    theirs = torch.optim.lr_scheduler.LinearLR(topt, start_factor=0.1, end_factor=1.0,
                                               total_iters=5)
    _compare_schedules(ours, theirs, 12)
    assert ours.get_last_lr() == [0.1, 0.02]


@pytest.mark.torch
@pytest.mark.parametrize("cls,tname", [(SGD, "SGD"), (Adam, "Adam"), (AdamW, "AdamW")])
@pytest.mark.parametrize("kw", [
    dict(max_lr=0.5, total_steps=40),
    dict(max_lr=[0.5, 0.1], epochs=4, steps_per_epoch=10, anneal_strategy="linear"),
    dict(max_lr=0.5, total_steps=37, three_phase=True, pct_start=0.25, div_factor=10.0,
         final_div_factor=100.0, base_momentum=[0.8, 0.7], max_momentum=0.9),
    dict(max_lr=0.5, total_steps=20, cycle_momentum=False),
])
def test_one_cycle_matches_torch(cls, tname, kw):
    extra = dict(momentum=0.9) if cls is SGD else {}
    opt, topt = _pair(cls, tname, extra)
    ours = OneCycleLR(opt, **kw)
    theirs = torch.optim.lr_scheduler.OneCycleLR(topt, **kw)
    _compare_schedules(ours, theirs, theirs.total_steps, with_momentum=True)
    with pytest.raises(ValueError):
        theirs.step()
    with pytest.raises(ConfigError, match=rf"step {ours.total_steps + 1} times.*total steps is"):
        ours.step()


# ----- state dicts -------------------------------------------------------------------------
def _plain(obj):
    if isinstance(obj, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    return obj is None or isinstance(obj, (bool, int, float, str, np.ndarray))


@pytest.mark.parametrize("make", [
    lambda ps: (SGD(ps, lr=0.1, momentum=0.9, nesterov=True), lambda o: StepLR(o, 3, 0.5)),
    lambda ps: (Adam(ps, lr=0.01, amsgrad=True), lambda o: OneCycleLR(o, 0.05, total_steps=10)),
    lambda ps: (AdamW(ps, lr=0.01), lambda o: CosineAnnealingLR(o, T_max=8)),
    lambda ps: (SGD(ps, lr=0.1, momentum=0.9), lambda o: OneCycleLR(o, 0.5, total_steps=10)),
    lambda ps: (Adam(ps, lr=0.01, weight_decay=0.1), lambda o: LinearWarmup(o, 4, 0.25)),
])
def test_state_dict_round_trip_is_bit_identical(make):
    rng = np.random.default_rng(3)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(10)]

    def run(opt, sched, params, gs):
        for step_grads in gs:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.copy()
            opt.step()
            sched.step()

    params = _params(np.float32)
    opt, make_sched = make(params)
    sched = make_sched(opt)
    run(opt, sched, params, grads[:5])
    saved_params = [p.data.copy() for p in params]
    opt_sd, sched_sd = opt.state_dict(), sched.state_dict()
    assert _plain(opt_sd) and _plain(sched_sd)
    run(opt, sched, params, grads[5:])

    params2 = [Parameter(d.copy()) for d in saved_params]
    opt2, make_sched2 = make(params2)
    sched2 = make_sched2(opt2)
    opt2.load_state_dict(opt_sd)
    sched2.load_state_dict(sched_sd)
    run(opt2, sched2, params2, grads[5:])
    for p, p2 in zip(params, params2, strict=True):
        np.testing.assert_array_equal(p.data, p2.data)
        assert p2.data.dtype == np.float32
    assert opt.state_dict()["param_groups"] == opt2.state_dict()["param_groups"]


def test_state_dict_is_a_copy_and_indexes_params():
    params = _params(np.float64)
    opt = Adam(params, lr=0.1)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.step()
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2] and sd["param_groups"][0]["params"] == [0, 1, 2]
    assert sd["state"][0]["step"] == 1
    sd["state"][0]["exp_avg"][...] = 123.0
    assert not (opt.state[params[0]]["exp_avg"] == 123.0).any()


# ----- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("build,exc,words", [
    (lambda ps: SGD(ps, lr=-0.1), ConfigError, ["SGD", "lr=-0.1"]),
    (lambda ps: SGD(ps, momentum=-1), ConfigError, ["SGD", "momentum=-1"]),
    (lambda ps: SGD(ps, weight_decay=-1e-4), ConfigError, ["SGD", "weight_decay=-0.0001"]),
    (lambda ps: SGD(ps, nesterov=True), ConfigError, ["nesterov", "momentum > 0"]),
    (lambda ps: SGD(ps, momentum=0.9, dampening=0.1, nesterov=True), ConfigError,
     ["nesterov", "dampening=0.1"]),
    (lambda ps: SGD(ps, lr="fast"), ConfigError, ["SGD", "lr='fast'"]),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), ConfigError, ["Adam", "betas[0]=1.0", "[0, 1)"]),
    (lambda ps: AdamW(ps, betas=(0.9, -0.1)), ConfigError, ["AdamW", "betas[1]=-0.1"]),
    (lambda ps: Adam(ps, betas=0.9), ConfigError, ["Adam", "betas=0.9"]),
    (lambda ps: Adam(ps, eps=-1e-8), ConfigError, ["Adam", "eps=-1e-08"]),
    (lambda ps: Adam([{"params": ps, "lr": -1.0}]), ConfigError, ["Adam", "lr=-1.0"]),
    (lambda ps: SGD([]), ConfigError, ["empty parameter list"]),
    (lambda ps: SGD(ps[0]), ConfigError, ["single Parameter"]),
    (lambda ps: SGD([ps[0].data]), ConfigError, ["expected gammabeta.nn.Parameter", "ndarray"]),
    (lambda ps: SGD([ps[0], ps[0]]), ConfigError, ["more than once"]),
    (lambda ps: SGD([Parameter(np.arange(3))]), DTypeError, ["int64", "floating"]),
    (lambda ps: param_groups(_Net(), -0.1), ConfigError, ["weight_decay=-0.1"]),
])
def test_optimizer_errors(build, exc, words):
    with pytest.raises(exc) as info:
        build(_params(np.float64))
    for w in words:
        assert w in str(info.value)


def test_grad_shape_mismatch():
    p = Parameter(np.zeros((2, 3)))
    p.grad = np.zeros((3, 2))
    with pytest.raises(ShapeError, match=r"\(3, 2\).*\(2, 3\)"):
        SGD([p], lr=0.1).step()


def test_load_state_dict_errors():
    params = _params(np.float64)
    sd = SGD(params, lr=0.1).state_dict()
    with pytest.raises(StateDictError, match="1 parameter groups.*has 2"):
        SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(StateDictError, match="3 parameters in the state and 2"):
        SGD(params[:2], lr=0.1).load_state_dict(sd)
    with pytest.raises(StateDictError, match="'state' and 'param_groups'"):
        SGD(params, lr=0.1).load_state_dict({"state": {}})
    opt = SGD(params, lr=0.1, momentum=0.9)
    bad = opt.state_dict()
    bad["state"] = {0: {"momentum_buffer": np.zeros((5, 5))}}
    with pytest.raises(StateDictError, match=r"shape \(5, 5\).*shape \(4, 3\)"):
        opt.load_state_dict(bad)


class _NoMomentum(Optimizer):
    def __init__(self, params):
        super().__init__(params, dict(lr=0.1))


@pytest.mark.parametrize("build,words", [
    (lambda o: StepLR(o, step_size=0), ["StepLR", "step_size=0"]),
    (lambda o: CosineAnnealingLR(o, T_max=0), ["CosineAnnealingLR", "T_max=0"]),
    (lambda o: LinearWarmup(o, warmup_steps=-1), ["LinearWarmup", "warmup_steps=-1"]),
    (lambda o: LinearWarmup(o, 5, start_factor=2.0), ["start_factor=2.0", "[0, 1]"]),
    (lambda o: OneCycleLR(o, 0.1), ["total_steps OR (epochs AND steps_per_epoch)"]),
    (lambda o: OneCycleLR(o, 0.1, total_steps=0), ["total_steps=0"]),
    (lambda o: OneCycleLR(o, 0.1, epochs=2, steps_per_epoch=-3), ["steps_per_epoch=-3"]),
    (lambda o: OneCycleLR(o, 0.1, 10, pct_start=1.5), ["pct_start=1.5"]),
    (lambda o: OneCycleLR(o, 0.1, 10, anneal_strategy="exp"), ["anneal_strategy", "'exp'"]),
    (lambda o: OneCycleLR(o, [0.1, 0.2], 10), ["max_lr has 2 values", "(1)"]),
    (lambda o: OneCycleLR(_NoMomentum(o.param_groups[0]["params"]), 0.1, 10),
     ["_NoMomentum", "cycle_momentum=False"]),
    (lambda o: StepLR([1, 2], 3), ["expected a gammabeta Optimizer", "list"]),
    (lambda o: StepLR(o, 3, last_epoch=4), ["initial_lr", "last_epoch=4"]),
])
def test_schedule_errors(build, words):
    opt = SGD(_params(np.float64), lr=0.1, momentum=0.9)
    with pytest.raises(ConfigError) as info:
        build(opt)
    for w in words:
        assert w in str(info.value)


def test_one_cycle_error_leaves_state_unchanged():
    opt = SGD(_params(np.float64), lr=0.1, momentum=0.9)
    sched = OneCycleLR(opt, 0.1, total_steps=3)
    for _ in range(3):
        sched.step()
    last = sched.get_last_lr()
    with pytest.raises(ConfigError, match="tried to step 4 times"):
        sched.step()
    assert sched.last_epoch == 3 and sched.get_last_lr() == last
