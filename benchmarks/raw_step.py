"""How close can NumPy get to the compute floor? The 784-256-256-10 BN MLP step as bare NumPy.

The step case ``MLP 784-256-256-10 + BN, batch 128`` of ``make bench`` written as one function
with no modules, no checks and no caches: the same products, BatchNorm in training mode
(batch statistics), ReLU, softmax cross-entropy, and the same fused AdamW update
(:mod:`gammabeta.optim._kernels`). Per line of ``rounds``, it prints the median time of a call
of this bare step, of gammabeta's step and of the fused step of ``fused_step.py`` (everything
but the GEMMs compiled; its flat buffers page-aligned, and from malloc) against the step's
GEMMs run alone, back to back (:func:`flops.gemm_runner`), all timed in 10-call blocks in turn
(:func:`interleaved_ms`); then the floor, gammabeta's step and the fused one in ``make bench``'s
harness (:func:`run.alternate`); then the fixed cost of a step: the same layers 8 wide::

    python benchmarks/raw_step.py [rounds]

What it is for: the issue's target of 1.5× the GEMMs alone for this step; if bare NumPy
cannot reach it on a machine, the layers' overhead is not what stands in the way; the fused
step says what a whole-step compiled design reaches.
"""

from __future__ import annotations

import sys
import time

import cases
import flops
import fused_step
import numpy as np
import run


def bare_step(rng: np.random.Generator, batch: int = 128):
    """The step as one closure over its own arrays (float32, PyTorch's default init scale)."""
    from gammabeta.optim import _kernels

    x = rng.standard_normal((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    rows = np.arange(batch)
    w1, w2, w3 = ((rng.uniform(-1, 1, s) / np.sqrt(s[1])).astype(np.float32)
                  for s in ((256, 784), (256, 256), (10, 256)))
    b3 = np.zeros(10, np.float32)
    g1, g2 = np.ones(256, np.float32), np.ones(256, np.float32)
    be1, be2 = np.zeros(256, np.float32), np.zeros(256, np.float32)
    params = [w1, w2, w3, b3, g1, be1, g2, be2]
    assert all(p.dtype == np.float32 for p in params)
    state = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    f = np.float32  # AdamW, lr 1e-3, weight decay 0.05 on all (a lower bound on the work)
    scalars = (f(1 - 1e-3 * 0.05), f(0), f(0.1), f(0.9), True, f(0.999), f(0.001), f(1),
               f(1e-8), f(1e-3))

    def bn_forward(h, g, b):
        d = h - h.mean(0)
        inv = 1 / np.sqrt((d * d).mean(0) + f(1e-5))
        xh = d * inv
        return xh * g + b, xh, inv

    def bn_backward(dy, xh, inv, g):
        dg, db = (dy * xh).sum(0), dy.sum(0)
        return (g * inv) * (dy - db / batch - xh * (dg / batch)), dg, db

    def step():
        a1, xh1, inv1 = bn_forward(x @ w1.T, g1, be1)
        r1 = np.maximum(a1, 0)
        a2, xh2, inv2 = bn_forward(r1 @ w2.T, g2, be2)
        r2 = np.maximum(a2, 0)
        z = r2 @ w3.T + b3
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[rows, y] -= 1
        p /= batch
        dh2, dg2, db2 = bn_backward((p @ w3) * (r2 > 0), xh2, inv2, g2)
        dh1, dg1, db1 = bn_backward((dh2 @ w2) * (r1 > 0), xh1, inv1, g1)
        grads = [dh1.T @ x, dh2.T @ r1, p.T @ r2, p.sum(0), dg1, db1, dg2, db2]
        for prm, grad, (m, v) in zip(params, grads, state, strict=True):
            _kernels.adam_update(prm.reshape(-1), grad.reshape(-1), m.reshape(-1),
                                 v.reshape(-1), *scalars)

    return step


def median_ms(fn, calls: int = 300) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def interleaved_ms(fns: dict, rounds: int, block: int = 10) -> dict:
    """Per function, the median time of one call (ms) over ``rounds`` rounds in which each
    function runs ``block`` calls back to back, in turn (the order rotating): this VM swings
    between fast and slow phases lasting about a second, and blocks of ~15 ms spread every
    function evenly over them (300 calls of one function, then 300 of the next, did not)."""
    names = list(fns)
    for fn in fns.values():
        for _ in range(10):
            fn()
    times: dict = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(ts)) * 1e3 for name, ts in times.items()}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rounds = int(argv[0]) if argv else 3
    cases.warm_kernels()
    label, name, shape, classes, batch, opts = cases.STEP_CASES[0]
    gb_step, _, _, _, gemms = cases.make_step(name, shape, classes, batch, opts)
    fns = {"GEMMs alone": flops.gemm_runner(gemms),
           "bare NumPy step": bare_step(np.random.default_rng(0), batch),
           "gammabeta step": gb_step,
           "fused step": fused_step.fused_step(batch)[0],
           "fused step, buffers from malloc": fused_step.fused_step(batch, aligned=False)[0]}
    floor = fns["GEMMs alone"]
    print(f"# {label}: per call, the median of 10-call blocks run in turn (100 rounds per "
          "line); GEMMs alone: the step's products back to back (flops.gemm_runner)")
    print(f"# fused step (fused_step.py) against gammabeta's after 3 steps: largest difference "
          f"of a parameter or running statistic {fused_step.check(3):.1e}")
    for _ in range(rounds):
        ms = interleaved_ms(fns, 100)
        f = ms["GEMMs alone"]
        print("   ".join(f"{k} {v:.2f} ms" + ("" if k == "GEMMs alone" else f" ({v / f:.2f}×)")
                         for k, v in ms.items()), flush=True)
    # as make bench times them: 20 ms blocks after an idle pause, in alternating rounds
    res = run.alternate({"floor": floor, "gammabeta": gb_step, "fused": fns["fused step"]},
                        4 * rounds)
    f = res["floor"]["median_s"]
    print("make bench's harness (run.alternate): " + "   ".join(
        f"{k} {res[k]['median_s'] * 1e3:.2f} ms ({res[k]['median_s'] / f:.2f}×)"
        for k in ("floor", "gammabeta", "fused")))
    # the fixed cost of a step: the same layers with almost nothing to compute
    tiny_gb, tiny_torch, *_ = cases.make_step("mlp", (8,), 2, 4, dict(hidden=(8, 8), dropout=0.0))
    us_gb, us_torch = median_ms(tiny_gb, 3000) * 1e3, median_ms(tiny_torch, 3000) * 1e3
    print(f"fixed cost of a step (the same layers, 8-8-8-2, batch 4): gammabeta {us_gb:.0f} µs, "
          f"PyTorch {us_torch:.0f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
