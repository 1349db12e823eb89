"""SyncBatchNorm over MPI ranks against BatchNorm on the concatenated batch in one process.

Run as ``mpiexec -n 2|3 python tests/mpi/syncbn_check.py``. Every rank draws the same global
batch (seeded), takes its share (uneven ones include a rank with 0 and one with 1 sample),
and runs two training steps of SyncBatchNorm; every rank also runs BatchNorm1d/2d on the whole
batch as the reference. Compared: y and dx (this rank's slice), dγ and dβ (local gradients
summed over ranks with an Allreduce), running_mean, running_var, num_batches_tracked. Rank 0
prints one JSON line with the largest relative errors per case; the exit status is 1 on any
failure (and a crash on any rank aborts all of them rather than hang).
"""

from __future__ import annotations

import json
import sys
import traceback

import numpy as np
from mpi4py import MPI

import gammabeta.nn as nn
from gammabeta.errors import ShapeError

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
TOL = {np.float64: 1e-12, np.float32: 1e-5}
SHAPES = {"NC": (7, 3), "NCL": (6, 4, 5), "NCHW": (5, 3, 4, 3)}


def shares(n: int, uneven: bool) -> list[int]:
    """Samples per rank: uneven = 0, 1, then the rest spread (2 ranks: 1, n − 1)."""
    if not uneven:
        return [len(a) for a in np.array_split(np.arange(n), SIZE)]
    head = [1] if SIZE == 2 else [0, 1]
    rest = [len(a) for a in np.array_split(np.arange(n - sum(head)), SIZE - len(head))]
    return head + rest


def rel(num: float, ref) -> float:
    """A local error numerator, maxed over ranks, over the reference's largest magnitude."""
    num = COMM.allreduce(float(num), op=MPI.MAX)
    return num / max(float(np.abs(np.asarray(ref, dtype=np.float64)).max()), 1e-300)


def diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max()) if a.size else 0.0


def run_case(layout, dtype, offset, momentum, uneven, seed, **kw):
    shape = SHAPES[layout]
    n, c = shape[0], shape[1]
    cls = nn.BatchNorm2d if layout == "NCHW" else nn.BatchNorm1d
    rng = np.random.default_rng(seed)
    init = {} if kw.get("affine") is False else dict(
        gamma_init="normal(mean=1, std=0.5)", beta_init="normal", rng=rng)
    ref = cls(c, momentum=momentum, dtype=dtype, **init, **kw)
    sync = nn.SyncBatchNorm(c, momentum=momentum, dtype=dtype, comm=COMM, **kw)
    sync.load_state_dict(ref.state_dict())
    if kw.get("track_running_stats") is False:
        ref.eval(), sync.eval()  # batch statistics (and communication) in eval too
    counts = shares(n, uneven)
    lo = sum(counts[:RANK])
    part = slice(lo, lo + counts[RANK])
    err = dict.fromkeys(["y", "dx", "dgamma", "dbeta", "running_mean", "running_var"], 0.0)
    count_ok = True
    for _ in range(2):
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3.0, (1, c) + (1,) * (len(shape) - 2))
             + offset).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        ref.zero_grad(), sync.zero_grad()
        y_ref, y = ref(x), sync(x[part])
        dx_ref, dx = ref.backward(dy), sync.backward(dy[part])
        assert y.shape == x[part].shape and dx.shape == x[part].shape
        assert y.dtype == dtype and dx.dtype == dtype
        err["y"] = max(err["y"], rel(diff(y, y_ref[part]), y_ref))
        err["dx"] = max(err["dx"], rel(diff(dx, dx_ref[part]), dx_ref))
        if sync.affine:
            for key, p, q in (("dgamma", sync.weight, ref.weight), ("dbeta", sync.bias, ref.bias)):
                total = np.empty(c)
                COMM.Allreduce(p.grad.astype(np.float64), total)
                err[key] = max(err[key], rel(diff(total, q.grad), q.grad))
        if sync.track_running_stats:
            for key in ("running_mean", "running_var"):
                a, b = getattr(sync, key), getattr(ref, key)
                err[key] = max(err[key], rel(diff(a, b), b))
            count_ok &= int(sync.num_batches_tracked) == int(ref.num_batches_tracked)
    count_ok = COMM.allreduce(count_ok, op=MPI.LAND)
    ok = count_ok and all(v <= TOL[dtype] for v in err.values())
    name = (f"{layout} {np.dtype(dtype).name} offset={offset:g} momentum={momentum} "
            f"{'uneven' if uneven else 'even'} {counts}")
    name += "".join(f" {k}={v}" for k, v in kw.items())
    return dict(case=name, ok=bool(ok), count_ok=bool(count_ok),
                **{k: float(f"{v:.3g}") for k, v in err.items()})


def global_count_one() -> bool:
    """One value per channel over all ranks: ShapeError on every rank, nobody hangs."""
    sync = nn.SyncBatchNorm(3, comm=COMM)
    x = np.ones((1 if RANK == 0 else 0, 3), dtype=np.float32)
    try:
        sync(x)
        raised = False
    except ShapeError as e:
        raised = "expected more than 1 value per channel when training" in str(e)
    return bool(COMM.allreduce(raised, op=MPI.LAND))


def main() -> int:
    results, seed = [], 0
    for layout in SHAPES:
        for dtype in (np.float64, np.float32):
            for offset in (0.0, 1e4):
                for momentum in (0.1, None):
                    for uneven in (True, False):
                        seed += 1
                        results.append(run_case(layout, dtype, offset, momentum, uneven, seed))
    for kw in (dict(affine=False), dict(track_running_stats=False)):
        for layout in SHAPES:
            seed += 1
            results.append(run_case(layout, np.float64, 1e4, 0.1, True, seed, **kw))
    count_one = global_count_one()
    ok = count_one and all(r["ok"] for r in results)
    if RANK == 0:
        keys = ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var")
        worst = {dt: {k: max(r[k] for r in results if f" {dt} " in r["case"]) for k in keys}
                 for dt in ("float64", "float32")}
        print(json.dumps(dict(ranks=SIZE, ok=ok, global_count_one_raises=count_one,
                              worst=worst, cases=results)), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        status = main()
    except Exception:  # one rank failing alone would leave the others in a collective
        traceback.print_exc()
        sys.stdout.flush(), sys.stderr.flush()
        COMM.Abort(2)
    sys.exit(status)
