"""Per-step cost of data parallelism, run under ``mpiexec -n R`` by benchmarks/distributed.py.

Times, on every rank with its share of a global batch of the default MNIST-1D MLP
(256-256, BatchNorm, dropout 0.2, AdamW): one whole data-parallel step (SyncBatchNorm, the
output gradient scaled, gradients summed over the ranks), the same step's arithmetic alone
(plain BatchNorm on the local share, no communication), and the gradient Allreduce alone.
Rank 0 prints one JSON line: medians in seconds.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from mpi4py import MPI

from gammabeta import nn, optim
from gammabeta.distributed import DataParallel
from gammabeta.models import build_model
from gammabeta.nn.mode import batch_shard


def median_time(fn, repeats: int = 200, warm: int = 20) -> float:
    for _ in range(warm):
        fn()
    out = []
    for _ in range(repeats):
        MPI.COMM_WORLD.Barrier()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def main() -> int:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    par = DataParallel()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 40)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    lo, hi = par.share(batch)
    xs, ys = x[lo:hi], y[lo:hi]

    def make(sync: bool):
        model = build_model("mlp", (40,), 10, rng=np.random.default_rng(0), hidden="256,256")
        if sync:
            model = nn.convert_sync_batchnorm(model, par.comm)
        return model, optim.AdamW(optim.param_groups(model, 0.05), lr=1e-3)

    loss_fn = nn.CrossEntropyLoss()
    dp_model, dp_opt = make(True)
    local_model, local_opt = make(False)

    def dp_step():
        dp_opt.zero_grad()
        with batch_shard(lo, hi, batch):
            loss_fn(dp_model(xs), ys)
            dp_model.backward(loss_fn.backward() * np.float32((hi - lo) / batch))
        par.allreduce_gradients(dp_model.parameters())
        dp_opt.step()

    def local_step():
        local_opt.zero_grad()
        loss_fn(local_model(xs), ys)
        local_model.backward(loss_fn.backward())
        local_opt.step()

    def allreduce():
        par.allreduce_gradients(dp_model.parameters())

    res = {"ranks": par.size, "global_batch": batch, "dp_step_s": median_time(dp_step),
           "local_step_s": median_time(local_step), "allreduce_s": median_time(allreduce),
           "parameters": sum(p.data.size for p in dp_model.parameters())}
    if par.is_root:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
