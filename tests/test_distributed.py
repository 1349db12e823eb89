"""Data-parallel training under ``mpiexec -n 2`` and ``-n 3``: the same weights as one process,
Ctrl-C and --resume, per-worker BatchNorm, a failing rank, and a study run on MPI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gammabeta.io import load_checkpoint

HERE = Path(__file__).parent


def mpiexec() -> str:
    path = Path(sys.executable).with_name("mpiexec")
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"mpiexec not found next to {sys.executable} (CI must run MPI tests)")
        pytest.skip(f"no mpiexec next to {sys.executable}")
    return str(path)


def gammabeta(*args, ranks: int = 1, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gammabeta.cli", *map(str, args)]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((800, 10)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0)
    path = tmp_path_factory.mktemp("data") / "quad.npz"
    np.savez(path, x=x, y=y)
    return path


def weights(folder) -> dict:
    return load_checkpoint(Path(folder) / "model.safetensors")[0]


def largest_difference(a: dict, b: dict) -> float:
    """Largest |a − b| relative to the largest |a| of the same tensor."""
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k])))
               / max(float(np.max(np.abs(a[k]))), 1e-30) for k in a)


RUN = ["--epochs", "2", "--hidden", "32,32", "--batch-size", "50", "--quiet"]


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    proc = gammabeta("train", "--data", data, *RUN, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return weights(out)


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_follow_the_one_process_run(ranks, data, one_process, tmp_path):
    """SyncBatchNorm, Dropout's global masks and summed gradients: the same run."""
    out = tmp_path / "run"
    proc = gammabeta("train", "--data", data, *RUN, "--out", out, ranks=ranks)
    assert proc.returncode == 0, proc.stderr
    assert f"{ranks} (MPI, SyncBatchNorm)" in proc.stdout
    assert proc.stdout.count("test accuracy") == 1  # rank 0 alone reports and writes
    assert largest_difference(one_process, weights(out)) < 1e-5


def test_per_worker_batchnorm_runs_and_small_shares_are_refused(data, one_process, tmp_path):
    out = tmp_path / "run"
    proc = gammabeta("train", "--data", data, *RUN, "--no-sync-bn", "--out", out, ranks=2)
    assert proc.returncode == 0, proc.stderr
    assert "per-worker BatchNorm" in proc.stdout
    assert largest_difference(one_process, weights(out)) > 1e-4  # other statistics: other run
    proc = gammabeta("train", "--data", data, *RUN[:-3], "--batch-size", "5", "--quiet",
                     "--no-sync-bn", "--out", tmp_path / "r2", ranks=3)
    assert proc.returncode != 0 and "per-worker BatchNorm needs at least 2" in proc.stderr
    assert not (tmp_path / "r2").exists()


def test_ctrl_c_then_resume_ends_bit_identical(data, tmp_path):
    args = ["--data", data, "--epochs", "100", "--hidden", "16", "--batch-size", "40",
            "--quiet", "--checkpoint-every", "1"]
    ref = tmp_path / "ref"
    assert gammabeta("train", *args, "--out", ref, ranks=2).returncode == 0
    out = tmp_path / "run"
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "gammabeta.cli", "train",
           *map(str, args), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not (out / "train_state.safetensors").exists() and time.monotonic() - t0 < 60:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume with: gammabeta train --resume" in err
    done = gammabeta("train", "--resume", out, "--quiet", ranks=2)
    assert done.returncode == 0, done.stderr
    a, b = weights(ref), weights(out)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_failing_rank_stops_the_job_and_keeps_the_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    steps_per_epoch = 800 * 4 // 5 // 50  # the split keeps 640 for training
    cmd = [mpiexec(), "-n", "2", sys.executable, str(HERE / "mpi" / "fail_rank.py"),
           str(steps_per_epoch + 3), "train", "--data", str(data), *RUN, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "[rank 1] No space left on device (simulated on rank 1)" in proc.stderr
    assert "Traceback" not in proc.stderr
    _, meta = load_checkpoint(out / "train_state.safetensors")  # the epoch-1 state, whole
    assert '"epoch": 2' in meta["loop"]
    assert not (out / "model.safetensors").exists()


def test_a_study_run_on_two_ranks(tmp_path):
    from gammabeta.study.runner import run_study
    from gammabeta.study.spec import load_spec

    mpiexec()
    res = run_study(load_spec("sync-bn", "tiny"), tmp_path / "s", workers=1, progress=False)
    rows = res["rows"]
    assert {r["ranks"] for r in rows} == {2}
    assert {r["config"]["sync_bn"] for r in rows} == {False, True}
    assert all(r["bn_gap"]["var"] is not None and r["test_accuracy"] is not None
               for r in rows)
    assert (tmp_path / "s" / "sync_bn.png").exists()


class _FakeComm:
    """Rank ``rank`` of ``size`` for the arithmetic of shares (no messages are sent)."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):  # noqa: N802 - MPI's naming
        return self.rank

    def Get_size(self):  # noqa: N802
        return self.size


@pytest.mark.parametrize("size, batch", [(2, 100), (3, 100), (3, 2), (4, 7)])
def test_shares_cover_every_batch_once_in_order(size, batch, monkeypatch):
    from gammabeta.distributed import DataParallel

    monkeypatch.setattr(DataParallel, "_share_cores", lambda self: 1)
    shares = [DataParallel(_FakeComm(r, size)).share(batch) for r in range(size)]
    assert shares[0][0] == 0 and shares[-1][1] == batch
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:], strict=False))
    sizes = [hi - lo for lo, hi in shares]
    assert max(sizes) - min(sizes) <= 1 and sorted(sizes, reverse=True) == sizes


def test_gradients_are_summed_in_buckets_not_per_parameter():
    if os.environ.get("CI") != "true":
        pytest.importorskip("mpi4py")
    from mpi4py import MPI

    from gammabeta.distributed import DataParallel
    from gammabeta.models import build_model

    model = build_model("mlp", (40,), 10, rng=np.random.default_rng(0), hidden="256,256")
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    par = DataParallel(MPI.COMM_SELF, bucket_bytes=100_000)
    par.allreduce_gradients(model.parameters())
    n_bytes = sum(p.data.nbytes for p in model.parameters())
    assert len(list(model.parameters())) > par.allreduce_calls >= n_bytes // 100_000
    assert all(np.array_equal(p.grad, np.ones_like(p.data)) for p in model.parameters())
