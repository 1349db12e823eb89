"""SyncBatchNorm: MPI runs against BatchNorm, the size-1 world, conversion, argument checks."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import ConfigError, DTypeError, ShapeError

SCRIPT = Path(__file__).parent / "mpi" / "syncbn_check.py"
ROOT = Path(__file__).resolve().parents[1]


def _mpi():
    """mpi4py.MPI; in CI (``CI`` set) a missing mpi4py fails, locally the test skips."""
    if os.environ.get("CI"):
        from mpi4py import MPI  # noqa: PLC0415

        return MPI
    return pytest.importorskip("mpi4py.MPI")


def _mpiexec() -> Path:
    exe = Path(sys.executable).parent / "mpiexec"
    if not exe.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"mpiexec not found next to {sys.executable} (CI must run MPI tests)")
        pytest.skip(f"no mpiexec next to {sys.executable}")
    return exe


@pytest.mark.parametrize("ranks", [2, 3])
def test_mpi_ranks_match_batchnorm_on_concatenated_batch(ranks):
    cmd = [str(_mpiexec()), "-n", str(ranks), sys.executable, str(SCRIPT)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON line (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(lines[-1])
    bad = [c for c in report["cases"] if not c["ok"]]
    assert proc.returncode == 0 and report["ok"], (bad, proc.stderr[-3000:])
    assert report["ranks"] == ranks and report["global_count_one_raises"]
    assert len(report["cases"]) == 54


def make_pair(cls, c, seed, comm=None, **kw):
    """A BatchNorm and a SyncBatchNorm with the same random γ, β (never ones/zeros)."""
    rng = np.random.default_rng(seed)
    ref = cls(c, gamma_init="normal(mean=1, std=0.5)", beta_init="normal", rng=rng, **kw)
    sync = nn.SyncBatchNorm(c, comm=comm, **kw)
    sync.load_state_dict(ref.state_dict())
    return ref, sync


@pytest.mark.parametrize("shape", [(6, 3), (5, 3, 4), (4, 3, 2, 3)])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("world", ["COMM_WORLD", "COMM_SELF"])
def test_size_one_world_equals_batchnorm(shape, momentum, world):
    mpi = _mpi()
    comm = None if world == "COMM_WORLD" else mpi.COMM_SELF  # None: resolved at first use
    cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    ref, sync = make_pair(cls, shape[1], 0, momentum=momentum, dtype=np.float32)
    sync.comm = comm
    rng = np.random.default_rng(1)
    for _ in range(2):
        x = (rng.standard_normal(shape) * 2 + 1e4).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(sync(x), ref(x))
        np.testing.assert_array_equal(sync.backward(dy), ref.backward(dy))
    assert sync.communicator().Get_size() == 1
    for key, value in ref.state_dict().items():
        np.testing.assert_array_equal(sync.state_dict()[key], value)
    np.testing.assert_array_equal(sync.weight.grad, ref.weight.grad)
    np.testing.assert_array_equal(sync.bias.grad, ref.bias.grad)
    ref.eval(), sync.eval()
    np.testing.assert_array_equal(sync(x), ref(x))
    np.testing.assert_array_equal(sync.backward(dy), ref.backward(dy))


class ThreadComm:
    """An in-process stand-in for an MPI communicator: one thread per rank."""

    def __init__(self, rank, shared):
        self.rank, self.shared = rank, shared

    def Get_size(self):  # noqa: N802 - mpi4py's names
        return len(self.shared["slots"])

    def Get_rank(self):  # noqa: N802
        return self.rank

    def _exchange(self, send):
        slots, barrier = self.shared["slots"], self.shared["barrier"]
        slots[self.rank] = np.array(send, copy=True)
        barrier.wait()
        out = list(slots)
        barrier.wait()
        return out

    def Allgather(self, send, recv):  # noqa: N802
        recv[...] = np.stack(self._exchange(send))

    def Allreduce(self, send, recv):  # noqa: N802 - default op: SUM, in rank order
        parts = self._exchange(send)
        recv[...] = parts[0]
        for p in parts[1:]:
            recv += p


@pytest.mark.parametrize("shape", [(7, 3), (6, 2, 5), (5, 3, 2, 2)])
def test_threaded_ranks_with_0_and_1_samples_match_batchnorm(shape):
    counts = [0, 1, shape[0] - 1]
    shared = {"slots": [None] * 3, "barrier": threading.Barrier(3, timeout=30)}
    cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal(shape) * 0.7 + 1e4 for _ in range(2)]
    dys = [rng.standard_normal(shape) for _ in range(2)]
    ref, _ = make_pair(cls, shape[1], 3, dtype=np.float64)
    out, errors = {}, []

    def rank_main(r):
        try:
            _, sync = make_pair(cls, shape[1], 3, dtype=np.float64, comm=ThreadComm(r, shared))
            part = slice(sum(counts[:r]), sum(counts[:r + 1]))
            steps = zip(xs, dys, strict=True)
            out[r] = [(sync(x[part]), sync.backward(dy[part])) for x, dy in steps]
            out[r].append(sync)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
            shared["barrier"].abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for step, (x, dy) in enumerate(zip(xs, dys, strict=True)):
        y_ref, dx_ref = ref(x), ref.backward(dy)
        y = np.concatenate([out[r][step][0] for r in range(3)])
        dx = np.concatenate([out[r][step][1] for r in range(3)])
        assert out[0][step][0].shape == (0,) + shape[1:]
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12 * np.abs(y_ref).max())
        np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-12 * np.abs(dx_ref).max())
    syncs = [out[r][-1] for r in range(3)]
    for name in ("weight", "bias"):  # local sums that add up to BatchNorm's (2 steps)
        total = sum(getattr(s, name).grad for s in syncs)
        ref_grad = getattr(ref, name).grad
        assert np.abs(total - ref_grad).max() <= 1e-12 * np.abs(ref_grad).max() * 4
    for s in syncs:
        np.testing.assert_allclose(s.running_mean, ref.running_mean, rtol=1e-13)
        np.testing.assert_allclose(s.running_var, ref.running_var, rtol=1e-12)
        assert int(s.num_batches_tracked) == 2


def test_convert_sync_batchnorm_keeps_state_and_converts_types():
    rng = np.random.default_rng(4)
    model = nn.Sequential(
        nn.Linear(4, 6, rng=rng), nn.BatchNorm1d(6, momentum=None, eps=1e-3), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Linear(6, 6, rng=rng), nn.BatchNorm1d(6, affine=False))),
        nn.BatchNorm1d(6, track_running_stats=False))
    model(rng.standard_normal((8, 4)).astype(np.float32))  # move the running statistics
    model[1].eval()
    before = model.state_dict()
    params = [id(p) for p in model.parameters()]
    conv = nn.convert_sync_batchnorm(model)
    assert conv is model
    assert [type(m).__name__ for m in conv.modules()].count("SyncBatchNorm") == 3
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in conv.modules())
    assert list(conv.state_dict()) == list(before)
    for key, value in before.items():
        np.testing.assert_array_equal(conv.state_dict()[key], value)
    assert [id(p) for p in conv.parameters()] == params  # the same Parameter objects
    bn = conv[1]
    assert (bn.momentum, bn.eps, bn.training) == (None, 1e-3, False)
    assert conv[3].block[1].affine is False and conv[4].track_running_stats is False
    root = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(3, dtype=np.float64))
    assert isinstance(root, nn.SyncBatchNorm) and root.weight.dtype == np.float64


def test_import_does_not_import_mpi4py_and_missing_mpi4py_is_a_config_error(monkeypatch):
    code = "import sys, gammabeta.nn; assert 'mpi4py' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `import mpi4py` raises ImportError
    bn = nn.SyncBatchNorm(3)
    with pytest.raises(ConfigError, match=r"pip install 'gammabeta\[mpi\]'"):
        bn(np.ones((4, 3), dtype=np.float32))
    bn.eval()  # eval with running statistics needs no communicator
    assert bn(np.ones((4, 3), dtype=np.float32)).shape == (4, 3)


@pytest.mark.parametrize("kw", [
    dict(num_features=0), dict(num_features=2.0), dict(num_features=True),
    dict(eps=0), dict(eps=float("nan")), dict(momentum=1.5), dict(momentum=-0.1),
    dict(affine="yes"), dict(track_running_stats=1), dict(dtype=np.int32), dict(rng=42),
    dict(gamma_init="nope"),
])
def test_constructor_checks_as_batchnorm(kw):
    args = {"num_features": 3, **kw}
    with pytest.raises(ConfigError) as ref:
        nn.BatchNorm1d(**args)
    with pytest.raises(ConfigError) as got:
        nn.SyncBatchNorm(**args)
    assert str(got.value) == str(ref.value).replace("BatchNorm1d", "SyncBatchNorm")


def test_bad_comm_inputs_and_deepcopy():
    with pytest.raises(ConfigError, match="expected an mpi4py communicator"):
        nn.SyncBatchNorm(3, comm="world")
    comm = ThreadComm(0, {"slots": [None], "barrier": threading.Barrier(1)})
    bn = nn.SyncBatchNorm(3, comm=comm)
    with pytest.raises(ShapeError, match="expected 2-D"):
        bn(np.ones((2, 3, 1, 1, 1), dtype=np.float32))
    with pytest.raises(ShapeError, match="channels"):
        bn(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(DTypeError):
        bn(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ShapeError, match="more than 1 value per channel when training"):
        bn(np.ones((1, 3), dtype=np.float32))
    twin = copy.deepcopy(bn)
    assert twin.comm is comm and twin.weight is not bn.weight
    assert nn.SyncBatchNorm(4).describe() == "SyncBatchNorm(4)"
