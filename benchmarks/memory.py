"""Peak memory of a training step, one framework per fresh process (``run.py`` starts them).

Method, the same for both frameworks: the process starts with ``MALLOC_MMAP_THRESHOLD_=65536``
(set by ``run.py``), so every buffer of 64 KiB or more is its own mapping and goes back to the
system when freed (RSS then follows the live arrays and tensors, not what the allocator
keeps). Build the model, optimizer and batch and run 2 warm-up steps (optimizer state exists,
every lazy initialization and JIT load has happened); drop what a step leaves behind (gradients
set to None in both; gammabeta's per-layer backward caches, which it keeps until the next
forward, are cleared; PyTorch frees its graph in backward), collect garbage, reset the kernel's
peak-RSS mark (``/proc/self/clear_refs`` ← 5) and read the current RSS; run 5 steps and read the
peak (``VmHWM``). The figure is that peak − the RSS before the steps: the memory a step needs
on top of model, optimizer state and data (activations and saved tensors, gradients,
temporaries). Where clear_refs cannot be written, ``ru_maxrss`` growth is used instead (said in
the output).

Usage: ``python benchmarks/memory.py {gammabeta|torch} CASE_INDEX THREADS``; prints JSON.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(framework: str, index: int, threads: int, steps: int = 5) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cases
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    label, name, shape, classes, batch, opts = cases.STEP_CASES[index]
    fg, ft, _, _, models = cases.make_step(name, shape, classes, batch, opts, with_models=True)
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        step = ft
    else:
        step = fg
    # make_step builds both; drop the other framework's step and its arrays
    del fg, ft
    for _ in range(2):
        step()
    model, twin, loss_fn = models
    if framework == "torch":
        twin.zero_grad(set_to_none=True)
    else:
        model.zero_grad(set_to_none=True)
        for m in model.modules():
            m._cache = None
        loss_fn._cache = None
    del models, model, twin, loss_fn
    gc.collect()
    exact = _reset_peak()
    base_kb = _status_kb("VmRSS")
    base_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(steps):
        step()
    if exact:
        peak_kb = _status_kb("VmHWM")
        method = "VmHWM after clear_refs"
    else:  # pragma: no cover - kernels without clear_refs
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        base_kb = base_max
        method = "ru_maxrss growth"
    return {"case": label, "framework": framework, "peak_growth_mb": (peak_kb - base_kb) / 1024,
            "rss_before_mb": base_kb / 1024, "method": method, "steps": steps}


if __name__ == "__main__":
    fw, idx, nthreads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(measure(fw, idx, nthreads)))
