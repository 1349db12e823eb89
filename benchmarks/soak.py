"""Soak: 10,000 training steps of the default MNIST-1D MLP, with the process's memory sampled.

Memory must stay flat: after warm-up the resident set may wobble (allocator noise) but must
not grow with the step count. Writes docs/soak.json and prints a summary.
Run: ``python benchmarks/soak.py [--steps 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from gammabeta.data.loader import DataLoader
from gammabeta.data.registry import load_dataset
from gammabeta.experiment import TrainConfig, make_optimizer, make_scheduler
from gammabeta.io import atomic_write_text
from gammabeta.models import build_model
from gammabeta.nn.losses import CrossEntropyLoss


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--out", default="docs/soak.json")
    a = ap.parse_args()
    cfg = TrainConfig().resolved()
    ds = load_dataset("mnist1d")
    rng = np.random.default_rng(0)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, rng=rng, **cfg.model_kwargs())
    opt = make_optimizer(cfg, model)
    loader = DataLoader(ds.x_train, ds.y_train, batch_size=cfg.batch_size, rng=rng)
    # a schedule as long as the soak (one-cycle refuses to step past its end)
    sched = make_scheduler(TrainConfig(**{**cfg.to_dict(), "epochs": a.steps // len(loader) + 1}),
                           opt, len(loader))
    loss_fn = CrossEntropyLoss()
    samples, step, t0 = [], 0, time.perf_counter()
    while step < a.steps:
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            opt.step()
            sched.step()
            step += 1
            if step % a.every == 0:
                samples.append((step, rss_mb()))
            if step >= a.steps:
                break
    seconds = time.perf_counter() - t0
    steps, rss = np.array(samples).T
    warm = steps >= min(1000, a.steps // 5)
    slope = float(np.polyfit(steps[warm], rss[warm], 1)[0]) * 1000  # MiB per 1,000 steps
    result = {"steps": a.steps, "seconds": seconds, "rss_mb_first": float(rss[warm][0]),
              "rss_mb_last": float(rss[-1]), "rss_mb_max": float(rss.max()),
              "growth_mb_per_1000_steps": slope, "samples": samples,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"Python {platform.python_version()}, NumPy {np.__version__}"}
    atomic_write_text(Path(a.out), json.dumps(result, indent=1) + "\n")
    print(f"{a.steps} steps in {seconds:.1f} s; RSS after warm-up {result['rss_mb_first']:.1f} "
          f"MiB, at the end {result['rss_mb_last']:.1f} MiB, max {result['rss_mb_max']:.1f} MiB;"
          f" trend {slope:+.3f} MiB per 1,000 steps")


if __name__ == "__main__":
    main()
