"""The fused Adam/AdamW update (optim._kernels) gives bit for bit NumPy's in-place update."""

import numpy as np
import pytest

from gammabeta import backend, optim
from gammabeta.nn import Parameter

pytest.importorskip("numba")

CASES = [
    dict(cls=optim.AdamW, kw={}),
    # betas[0] = 0.3: the other branch of torch.lerp
    dict(cls=optim.AdamW, kw=dict(lr=3e-3, weight_decay=0.1, betas=(0.3, 0.99))),
    dict(cls=optim.Adam, kw=dict(weight_decay=0.05)),  # coupled (L2) decay
    dict(cls=optim.Adam, kw=dict(lr=1e-2, eps=1e-3, maximize=True)),
]


def _run(case, dtype, mode, steps=6):
    rng = np.random.default_rng(7)
    params = [Parameter(rng.standard_normal(s).astype(dtype)) for s in ((33, 17), (5,), (1000,))]
    opt = case["cls"](params, **case["kw"])
    with backend.jit(mode):
        for _ in range(steps):
            for p in params:
                p.grad = rng.standard_normal(p.data.shape).astype(dtype) * 3
            opt.step()
    state = [(s["exp_avg"], s["exp_avg_sq"]) for s in (opt.state[p] for p in params)]
    return [p.data for p in params], state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['cls'].__name__}{c['kw']}")
def test_fused_update_is_bit_for_bit_numpys(case, dtype, monkeypatch):
    from gammabeta.optim import _kernels

    calls = []
    real = _kernels.adam_update
    monkeypatch.setattr(_kernels, "adam_update", lambda *a: calls.append(1) or real(*a))
    fused_p, fused_s = _run(case, dtype, "force")
    assert len(calls) == 6 * 3  # every parameter, every step, took the fused path
    calls.clear()
    plain_p, plain_s = _run(case, dtype, "off")
    assert not calls
    for a, b in zip(fused_p, plain_p, strict=True):
        assert a.dtype == dtype and np.array_equal(a, b)
    for (m1, v1), (m2, v2) in zip(fused_s, plain_s, strict=True):
        assert np.array_equal(m1, m2) and np.array_equal(v1, v2)


def test_amsgrad_and_strided_grads_take_the_numpy_path(monkeypatch):
    from gammabeta.optim import _kernels

    monkeypatch.setattr(_kernels, "adam_update", lambda *a: pytest.fail("fused path taken"))
    p = Parameter(np.ones((4, 6), np.float32))
    with backend.jit("force"):
        opt = optim.Adam([p], amsgrad=True)
        p.grad = np.full((4, 6), 0.5, np.float32)
        opt.step()
        q = Parameter(np.ones((4, 6), np.float32))
        q.grad = np.full((6, 4), 0.5, np.float32).T  # not C-contiguous
        optim.AdamW([q]).step()
    assert np.all(p.data < 1) and np.all(q.data < 1)


def test_auto_mode_uses_it_only_once_numba_is_loaded(monkeypatch):
    monkeypatch.setattr(backend, "_kernel_module", None)
    monkeypatch.setattr(backend, "_norm_kernel_module", None)
    with backend.jit("auto"):
        assert backend.optim_kernels(np) is None  # Numba not loaded: not loaded for this
        monkeypatch.setattr(backend, "_kernel_module", object())  # a layer's kernels ran
        assert backend.optim_kernels(np) is not None
    with backend.jit("off"):
        assert backend.optim_kernels(np) is None


def test_parameters_at_different_steps_get_their_own_bias_correction():
    """The scalars are computed once per group and step count: a parameter that skipped
    steps (no gradient) is corrected for its own count, as on the NumPy path."""
    def run(mode):
        rng = np.random.default_rng(3)
        params = [Parameter(rng.standard_normal(40).astype(np.float32)) for _ in range(3)]
        opt = optim.AdamW(params, lr=1e-2)
        with backend.jit(mode):
            for step in range(7):
                for i, p in enumerate(params):  # parameter i has a gradient every (i+1)th step
                    p.grad = rng.standard_normal(40).astype(np.float32) \
                        if step % (i + 1) == 0 else None
                opt.step()
        assert [opt.state[p]["step"] for p in params] == [7, 4, 3]
        return [p.data for p in params]

    for a, b in zip(run("force"), run("off"), strict=True):
        assert np.array_equal(a, b)
