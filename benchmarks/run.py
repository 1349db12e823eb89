"""gammabeta vs PyTorch on the CPU, side by side: ``make bench`` → docs/benchmarks.{md,json}.

Both frameworks run in this one process with the same thread count (``torch.set_num_threads``,
threadpoolctl limits for NumPy's BLAS and OpenMP pools, ``numba.set_num_threads`` when the JIT
path is installed). Each case is timed alternately — gammabeta, PyTorch, PyTorch, gammabeta, …
— after warm-up calls of both, and the median and the interquartile range of the repeats are
reported. Peak memory of the training steps is measured in fresh subprocesses
(``benchmarks/memory.py``). The memory floor of a case is the bytes it must move divided by the
copy bandwidth measured here (a large ``np.copyto``, counting bytes read + bytes written).

``make bench`` runs this with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset (they pin an
older, slower OpenBLAS kernel on this machine's CPUs; tests and CI keep them); the header of
the report says which kernel OpenBLAS chose.

Options: ``--threads N`` (default: all cores), ``--quick`` (fewer repeats, for a smoke run),
``--only SUBSTRING`` (cases whose name contains it; no files written unless all ran),
``--no-commands`` (skip the whole-command benchmarks of ``benchmarks/commands.py``: about 25
minutes of the whole; no files written).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from gammabeta.io import atomic_write_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import cases  # noqa: E402
import commands  # noqa: E402
import flops  # noqa: E402
import notes  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def copy_bandwidth(mb: int = 256, repeats: int = 11) -> tuple[float, float]:
    """Bytes read + written per second by np.copyto of ``mb`` MiB (median, IQR), in GB/s."""
    a = np.ones(mb * 2**20 // 4, dtype=np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        ts.append(time.perf_counter() - t0)
    gbs = 2 * a.nbytes / np.array(ts) / 1e9
    q1, med, q3 = np.percentile(gbs, [25, 50, 75])
    return float(med), float(q3 - q1)


# Idle time before each timed block: thread pools that spin-wait after their work (PyTorch's
# OpenMP threads do, for milliseconds) would otherwise steal a core from the block that follows.
SETTLE_S = 0.02
# Untimed calls right before each timed block: after the idle time the first calls of either
# framework run 2-10x slower for about a millisecond on this VM (cold vCPU; sleeping worker
# threads), and the block should measure back-to-back calls as a training loop makes them.
WARM_S = 0.005


def warm(fn, seconds: float) -> None:
    """Call ``fn`` back to back for ``seconds`` (at least once), untimed."""
    end = time.perf_counter() + seconds
    fn()
    while time.perf_counter() < end:
        fn()


def timed(fn, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def alternate(fns: dict, repeats: int, min_time: float = 0.02) -> dict:
    """Warm up every function, then time them in turn, rotating the order every round.

    Each timed block starts after ``SETTLE_S`` of idle time and ``WARM_S`` of untimed calls
    (see there).

    Each timing covers enough back-to-back calls of that function to last ``min_time`` (the
    count is set per function: one count for all, set by the slowest, left the fast ones a
    single call per timing, which made their rounds swing 2x); returns seconds per call per
    function: median, interquartile range and all rounds.
    """
    names = list(fns)
    for _ in range(2):
        for name in names:
            fns[name]()
    inner = {}
    for name in names:
        t = max(float(np.median([timed(fns[name], 1) for _ in range(3)])), 1e-6)
        inner[name] = max(1, int(np.ceil(min_time / t)))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        gc.collect()
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            time.sleep(SETTLE_S)
            warm(fns[name], WARM_S)
            times[name].append(timed(fns[name], inner[name]))
    out: dict = {"inner": inner, "repeats": repeats}
    for name, ts in times.items():
        q1, med, q3 = np.percentile(ts, [25, 50, 75])
        out[name] = {"median_s": float(med), "iqr_s": float(q3 - q1), "all_s": ts}
    return out


def numpy_only(fn):
    """``fn`` run with the JIT kernels switched off (GAMMABETA_JIT=off): the NumPy path."""
    from gammabeta import backend

    def run():
        with backend.jit("off"):
            fn()

    return run


def memory(threads: int) -> list[dict]:
    rows = []
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    for i in range(len(cases.STEP_CASES)):
        pair = {}
        for fw in ("gammabeta", "torch"):
            res = subprocess.run([sys.executable, str(HERE / "memory.py"), fw, str(i),
                                  str(threads)], capture_output=True, text=True, env=env,
                                 check=True)
            pair[fw] = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append({"case": pair["gammabeta"]["case"],
                     "gb_mb": pair["gammabeta"]["peak_growth_mb"],
                     "torch_mb": pair["torch"]["peak_growth_mb"],
                     "method": pair["gammabeta"]["method"]})
    return rows


def environment(threads: int) -> dict:
    import threadpoolctl
    import torch

    from gammabeta import backend

    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')} kernel, "
            f"{i.get('num_threads')} threads)"
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    return {
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
        "python": platform.python_version(), "numpy": np.__version__,
        "numpy_blas": "; ".join(blas) or "unknown", "torch": torch.__version__,
        "torch_blas": torch_build(torch),
        "gammabeta_kernels": backend.kernel_info(),
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }


def torch_build(torch) -> str:
    """PyTorch's BLAS / oneDNN / CPU capability, from ``torch.__config__.show()``."""
    info = torch.__config__.show()
    parts = []
    for line in info.splitlines():
        line = line.strip(" -")
        if line.startswith(("Intel(R) oneAPI Math Kernel", "Intel(R) MKL-DNN", "CPU capability")):
            parts.append(line.split(" for Intel")[0].split(" (Git")[0])
    blas = [kv.split("=", 1)[1] for kv in info.replace(",", " ").split() if
            kv.startswith("BLAS_INFO=")]
    return "; ".join(([f"BLAS {blas[0]}"] if blas else []) + parts) or "unknown"


def set_threads(threads: int):
    import threadpoolctl
    import torch

    torch.set_num_threads(threads)
    limiter = threadpoolctl.threadpool_limits(threads)
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    return limiter


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-commands", action="store_true",
                    help="skip the whole-command benchmarks (about 25 minutes)")
    args = ap.parse_args(argv)
    _limiter = set_threads(args.threads)  # noqa: F841 - keeps the limits in force
    cases.warm_kernels()
    env = environment(args.threads)
    print(f"# {env['cpu']}, {env['cores']} cores, {args.threads} threads; numpy {env['numpy']} "
          f"({env['numpy_blas']}), torch {env['torch']}; kernels: {env['gammabeta_kernels']}")
    load_before = os.getloadavg()
    bw_before = copy_bandwidth()
    print(f"copy bandwidth {bw_before[0]:.1f} GB/s")
    from gammabeta import backend

    kernels_on = backend.kernels(np, 1 << 30) is not None
    builders = [cases.bn_cases, cases.norm_cases, cases.step_cases, cases.epoch_case]
    rows = []
    for build in builders:
        built = build()
        for case in built if isinstance(built, list) else [built]:
            if args.only not in case["name"]:
                continue
            reps = 5 if args.quick else (11 if case["group"] == "Epoch" else 21)
            fns = {"gb": case["gb"], "torch": case["torch"]}
            if kernels_on:
                fns["gb_numpy"] = numpy_only(case["gb"])
            if "gemms" in case:  # the compute floor: the step's own products, alone
                fns["gemms"] = flops.gemm_runner(case["gemms"])
            res = alternate(fns, reps, min_time=0.2 if case["group"] == "Epoch" else 0.05)
            row = {k: case[k] for k in ("name", "group", "bytes", "bytes_note")}
            if "gemms" in case:  # timed in the same rounds as the step; and each product alone
                floor = res.pop("gemms")
                row.update(flops=flops.flops(case["gemms"]), gemm_floor_s=floor["median_s"],
                           gemm_floor_iqr_s=floor["iqr_s"],
                           gemm_best_s=flops.gemm_seconds(case["gemms"]))
            row.update(res)
            rows.append(row)
            g, t = res["gb"]["median_s"], res["torch"]["median_s"]
            extra = (f"  numpy-only {res['gb_numpy']['median_s'] * 1e3:9.3f} ms"
                     if kernels_on else "")
            print(f"{case['name']:<66} gb {g * 1e3:9.3f} ms  torch {t * 1e3:9.3f} ms  "
                  f"ratio {g / t:5.2f}{extra}", flush=True)
            if "gemms" in case:
                f, b = row["gemm_floor_s"], row["gemm_best_s"]
                print(f"{'':<66} GEMMs alone {f * 1e3:.3f} ms (gb {g / f:.2f}×), each product's "
                      f"best alone {b * 1e3:.3f} ms (gb {g / b:.2f}×)", flush=True)
    bw_after = copy_bandwidth()
    bw = max(bw_before[0], bw_after[0])
    rates = flops.gemm_rates()
    print(f"GEMM 2048³ float32: NumPy {rates['numpy_gflops']:.0f} GFLOP/s, PyTorch "
          f"{rates['torch_gflops']:.0f} GFLOP/s")
    peak = max(rates["numpy_gflops"], rates["torch_gflops"]) * 1e9
    for row in rows:
        if "flops" in row:
            row["peak_floor_s"] = row["flops"] / peak
    for row in rows:
        row["floor_s"] = row["bytes"] / (bw * 1e9)
    mem = [] if (args.no_memory or args.only) else memory(args.threads)
    for m in mem:
        print(f"peak memory {m['case']:<45} gb {m['gb_mb']:7.1f} MB  torch {m['torch_mb']:7.1f}"
              f" MB  ratio {m['gb_mb'] / max(m['torch_mb'], 1e-9):5.2f}")
    whole = None
    if not (args.no_commands or args.only or args.quick):
        whole = commands.standard()
        print(commands.table(whole))
    result = {"commands": whole, "environment": env,
              "copy_bandwidth_gbs": {"before": bw_before, "after": bw_after, "used": bw},
              "cases": rows, "memory": mem, "gemm_rates": rates, "quick": args.quick,
              "kernels": kernels_on,
              "load_average": {"before": load_before, "after": os.getloadavg()},
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if args.only or args.no_memory or args.no_commands:
        print("(partial run: docs/benchmarks.* not written)")
        return 0
    atomic_write_text(ROOT / "docs" / "benchmarks.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(ROOT / "docs" / "benchmarks.md", notes.render(result))
    print("wrote docs/benchmarks.md and docs/benchmarks.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
