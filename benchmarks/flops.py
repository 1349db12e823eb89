"""The compute floor of a training step: its matrix products' FLOPs at this machine's GEMM rate.

A training step of an MLP or a CNN is bound by its matrix products (Linear layers; convolutions
as im2col GEMMs). Each such layer runs one GEMM in forward and two in backward (dW, and dx
except for the first layer, whose input is data): 2·m·k·n FLOPs each. Two floors are reported:

* *at peak*: the step's FLOPs at the best single-precision GEMM rate measured on this machine
  (a 2048³ product, NumPy's BLAS and PyTorch side by side);
* *at its shapes*: the time NumPy's BLAS takes for the step's own products, run alone back to
  back (small products run below the peak rate: this is the floor a NumPy step can reach).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["gemm_rates", "layer_gemms", "step_gemms", "gemm_seconds", "gemm_runner"]


def _best(fn, repeats: int = 7, min_time: float = 0.05) -> float:
    """Best time per call over ``repeats`` blocks of back-to-back calls lasting ≥ min_time."""
    fn()
    inner, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time:
            break
        inner *= 2
    best = t / inner
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def gemm_rates(n: int = 2048) -> dict:
    """GFLOP/s of an ``n × n × n`` float32 product: NumPy's BLAS and PyTorch (best of 7)."""
    import torch

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flops = 2.0 * n ** 3
    return {"shape": [n, n, n], "numpy_gflops": flops / _best(lambda: a @ b) / 1e9,
            "torch_gflops": flops / _best(lambda: ta @ tb) / 1e9}


def layer_gemms(model, xb) -> list[tuple[object, list[tuple[int, int, int]]]]:
    """``(layer, its GEMMs)`` for every Linear/Conv layer of ``model`` on ``xb``, in the order
    they run: the forward product, dW, and dx (not for the first layer, whose input is data)."""
    import gammabeta.nn as gnn

    found = []

    def hook(m, x, y):
        if isinstance(m, gnn.Linear):
            rows = x.size // m.in_features
            found.append((m, [(rows, m.in_features, m.out_features),  # y = x Wᵀ
                              (m.out_features, rows, m.in_features),  # dW = dyᵀ x
                              (rows, m.out_features, m.in_features)]))  # dx = dy W
        else:  # a convolution as im2col: per group (O/G, C/G·k) @ (C/G·k, N·positions)
            g = m.groups
            o, ck = m.out_channels // g, m.in_channels // g * int(np.prod(m.kernel_size))
            pos = y.size // m.out_channels
            found.append((m, [(o, ck, pos)] * g + [(o, pos, ck)] * g + [(ck, o, pos)] * g))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (gnn.Linear, gnn.Conv1d, gnn.Conv2d))]
    try:
        with gnn.no_grad():
            model.train()
            model(xb)
    finally:
        for h in handles:
            h.remove()
    out = []
    for i, (m, layer) in enumerate(found):
        per = len(layer) // 3
        out.append((m, layer[:2 * per] if i == 0 else layer))
    return out


def step_gemms(model, xb) -> list[tuple[int, int, int]]:
    """The ``(m, k, n)`` of every GEMM one training step of ``model`` on ``xb`` runs
    (:func:`layer_gemms`, flattened)."""
    return [mkn for _, gemms in layer_gemms(model, xb) for mkn in gemms]


def gemm_runner(gemms):
    """A function that runs these float32 products back to back, as one step would (operands
    drawn once): ``make bench`` times it in the same alternating rounds as the step itself,
    so a minute in which the machine is slower slows the floor and the step alike."""
    rng = np.random.default_rng(0)
    ops = [(rng.standard_normal((m, k), dtype=np.float32),
            rng.standard_normal((k, n), dtype=np.float32)) for m, k, n in gemms]

    def run():
        for a, b in ops:
            a @ b

    return run


def gemm_seconds(gemms) -> float:
    """Seconds NumPy's BLAS takes for these float32 products, each timed alone (best of 7)."""
    rng = np.random.default_rng(0)
    total = 0.0
    for m, k, n in gemms:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        total += _best(lambda a=a, b=b: a @ b, repeats=5, min_time=0.02)
    return total


def flops(gemms) -> float:
    return float(sum(2.0 * m * k * n for m, k, n in gemms))
