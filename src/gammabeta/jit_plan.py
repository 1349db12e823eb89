"""Whether a training run is long enough to pay for the compiled kernels.

The Numba kernels of the normalization layers are faster than their NumPy twins at every
size, but loading them costs a process about 1.8 s of CPU time once (importing Numba and
its NumPy support, which pulls in SciPy's BLAS, and reading the cached machine code): a
BatchNorm forward+backward on (100, 32, 40) in a fresh process took 2.0–2.1 s with the
kernels and 0.27–0.31 s without, on this project's 2-core machine. They save about 9 ns per
normalized value and step (the MNIST-1D CNN, 480 K values a step over its eight BatchNorm
layers: 16.2 against 20.7 ms a step on one thread). A run that normalizes fewer than
:data:`RUN_MIN_VALUES` values in all (the CNN for 4 epochs: 144 steps, 69 M values) loses
more than it saves, most of all on a busy machine, so it runs the NumPy path throughout.

The decision is a function of the model, the batch and the planned number of steps only
(never of what the process ran before), so a run is the same bit for bit every time, and a
resumed run continues with the decision it started with. ``GAMMABETA_JIT=off`` and
``force`` are obeyed as they are; only ``auto`` is decided here.
"""

from __future__ import annotations

from . import backend, nn

__all__ = ["RUN_MIN_VALUES", "normalized_values", "run_jit_mode"]

# ≈ 1.8 s of loading / 9 ns saved per value: fewer values in a whole run than this, and
# loading Numba costs more than the kernels save
RUN_MIN_VALUES = 2 * 10**8


def _has_kernels(module) -> bool:
    from .nn._bn_base import _BatchNorm
    from .nn.layernorm import _RowNorm

    return isinstance(module, (_BatchNorm, _RowNorm))


def normalized_values(model: nn.Module, xb) -> int:
    """Values the kernel-backed normalization layers of ``model`` see in one step on ``xb``
    (one forward pass in evaluation mode, without kernels or caches; the mode is restored)."""
    seen = [0]

    def hook(m, x, y):
        seen[0] += int(getattr(x, "size", 0))

    handles = [m.register_forward_hook(hook) for m in model.modules() if _has_kernels(m)]
    if not handles:
        return 0
    modes = [(m, m.training) for m in model.modules()]  # each restored as it was
    try:
        model.eval()
        with nn.no_grad(), backend.jit("off"):
            model(xb)
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)
        for h in handles:
            h.remove()
    return seen[0]


def run_jit_mode(model: nn.Module, xb, planned_steps: int) -> str:
    """The JIT mode a run of ``planned_steps`` steps on batches like ``xb`` should use:
    the current mode, except "auto" becomes "off" for a run below :data:`RUN_MIN_VALUES`."""
    mode = backend.jit_mode()
    if mode != "auto":
        return mode
    return "auto" if planned_steps * normalized_values(model, xb) >= RUN_MIN_VALUES else "off"
