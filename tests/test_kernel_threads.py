"""The compiled BatchNorm path on several threads, on misaligned inputs, and its output reuse.

Arrays this small normally run on one thread; here ``PARALLEL_MIN`` and ``CHUNK_MIN`` are
lowered so that every shape is split into chunks run by the caller and the worker threads,
and each result is compared with the NumPy path (which has no threads, no alignment tricks
and no buffer reuse) and with the float64 formulas.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta import backend

from .test_kernels import run_bn
from .test_numerics import reference

pytestmark = pytest.mark.skipif(backend.kernels(np, 10**9) is None,
                                reason="numba is not installed: only the NumPy path exists")


@pytest.fixture
def threaded(monkeypatch):
    """Split every pass over 2 threads, in chunks of a few samples."""
    import numba

    from gammabeta.nn import _threads

    monkeypatch.setattr(_threads, "PARALLEL_MIN", 1)
    monkeypatch.setattr(_threads, "CHUNK_MIN", 8)
    prev = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield
    numba.set_num_threads(prev)


def misaligned(a, elements: int):
    """A C-contiguous copy of ``a`` starting ``elements`` values past a 64-byte boundary."""
    buf = np.empty(a.size + 64, dtype=a.dtype)
    start = (-buf.ctypes.data % 64) // a.itemsize + elements
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    return out


SHAPES = [(7, 5), (64, 33), (100, 32, 10), (9, 3, 70), (4, 3, 9, 11), (33, 16, 8, 8),
          (2, 4, 1000), (3, 2)]


def assert_paths_agree(ref, got, bound):
    """Each output of ``got`` within ``bound`` of ``ref``'s, relative to its natural scale:
    y and the running statistics to their largest value, dx to |dy|·|γ|/σ (dx cancels for
    small N), dγ and dβ to Σ|dy| (their sums cancel)."""
    x, dy, bn, *_ = ref
    x3 = x.reshape(x.shape[0], x.shape[1], -1).astype(np.float64)
    sd = np.sqrt(x3.var(axis=(0, 2)) + bn.eps) if bn.training else np.sqrt(3.0 + bn.eps)
    g = np.abs(bn.weight.data.astype(np.float64))
    grad_scale = np.abs(dy.astype(np.float64)).sum()
    scales = [None, np.abs(dy).max() * g.max() / np.min(sd), grad_scale, grad_scale, None,
              None]
    for u, v, scale in zip(outputs(ref), outputs(got), scales, strict=True):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        scale = max(np.abs(u).max(), 1e-30) if scale is None else scale
        assert np.abs(u - v).max() <= bound * scale


def outputs(res):
    _, _, bn, y, dx = res
    return y, dx, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_threaded_kernels_match_the_numpy_path(threaded, shape, dtype, training):
    bound = 2e-6 if dtype == np.float32 else 1e-13
    assert_paths_agree(run_bn(shape, "off", 3.0, training, dtype),
                       run_bn(shape, "force", 3.0, training, dtype), bound)


@pytest.mark.parametrize("shape", [(64, 33), (100, 32, 10), (33, 16, 8, 8)])
def test_threaded_kernels_meet_the_float64_bounds_at_a_large_offset(threaded, shape):
    x, dy, bn, y, dx = run_bn(shape, "force", offset=1e4)
    x3, dy3 = x.reshape(shape[0], shape[1], -1), dy.reshape(shape[0], shape[1], -1)
    g, b = bn.weight.data.astype(np.float64), bn.bias.data.astype(np.float64)
    yr, dxr, dgr, dbr, _, rvr, sd = reference(x3.astype(np.float64), dy3.astype(np.float64),
                                              g, b, bn.eps, bn.momentum)
    assert np.abs(y.reshape(yr.shape) - yr).max() <= 2e-6 * np.abs(yr).max()
    scale = np.abs(dy).max() * np.abs(g).max() / sd.min()
    assert np.abs(dx.reshape(dxr.shape) - dxr).max() <= 2e-6 * scale
    assert np.abs(bn.weight.grad - dgr).max() <= 2e-6 * np.abs(dy).sum()
    assert np.abs(bn.running_var - rvr).max() <= 2e-6 * np.abs(rvr).max()


@pytest.mark.parametrize("shape", [(7, 5), (64, 33), (100, 32, 10), (9, 3, 70), (3, 2),
                                   (16, 1)])
@pytest.mark.parametrize("shift", [1, 3, 7, 15])
@pytest.mark.parametrize("threads", [False, True])
def test_kernels_on_inputs_that_do_not_start_on_a_cache_line(request, shape, shift, threads):
    if threads:
        request.getfixturevalue("threaded")
    rng = np.random.default_rng(shift)
    x = (1 + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    ref = run_bn(shape, "off", x=x, dy=dy)
    got = run_bn(shape, "force", x=misaligned(x, shift), dy=misaligned(dy, 16 - shift))
    assert_paths_agree(ref, got, 2e-6)


def test_an_output_still_referenced_is_never_reused():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(64)
    x1, x2 = rng.standard_normal((2, 512, 64), dtype=np.float32)
    with backend.jit("force"):
        y1 = bn(x1)
        kept = y1.copy()
        view = y1[3:5]
        del y1
        y2 = bn(x2)  # y1's buffer is still referenced by `view`
        assert not np.shares_memory(view, y2)
        np.testing.assert_array_equal(view, kept[3:5])
        dx1 = bn.backward(np.ones_like(x2))
        dx_kept = dx1.copy()
        bn(x1)
        dx2 = bn.backward(np.full_like(x1, 2.0))
        assert not np.shares_memory(dx1, dx2)
        np.testing.assert_array_equal(dx1, dx_kept)


def test_a_dropped_output_is_reused():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(64)
    x = rng.standard_normal((512, 64), dtype=np.float32)
    with backend.jit("force"):
        expected = bn(x).copy()
        first = id(bn._spare["y"])
        y = bn(x)
        assert id(bn._spare["y"]) == first  # the previous output was dropped: its buffer
        np.testing.assert_array_equal(y, expected)


def test_two_python_threads_calling_layers_at_once(threaded):
    """Only one pass owns the worker pool at a time; the other runs on its own thread."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((64, 40, 12), dtype=np.float32) for _ in range(2)]
    layers = [nn.BatchNorm1d(40, gamma_init="normal", rng=np.random.default_rng(i))
              for i in range(2)]
    with backend.jit("off"):
        expected = [[layer(x).copy() for _ in range(20)]
                    for layer, x in zip(layers, xs, strict=True)]
    for layer in layers:
        layer.reset_running_stats()
    got = [None, None]
    errors = []

    def work(i):
        try:
            got[i] = [layers[i](xs[i]).copy() for _ in range(20)]
        except BaseException as exc:  # reported below
            errors.append(exc)

    # the JIT mode is process-wide: set it here, once (entering backend.jit in each thread
    # would race: the last thread out could restore the other's "force")
    before = backend.jit_mode()
    with backend.jit("force"):
        workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
    assert backend.jit_mode() == before
    assert not errors
    for exp, res in zip(expected, got, strict=True):
        for e, r in zip(exp, res, strict=True):
            assert np.abs(e - r).max() <= 2e-6 * np.abs(e).max()


@pytest.mark.parametrize("shape", [(64, 48), (40, 16, 5), (9, 3, 70), (6, 7)])
@pytest.mark.parametrize("threads", [False, True])
def test_results_do_not_depend_on_where_the_input_sits(request, shape, threads):
    """Bit for bit: the aligned-load split of each row keeps every sum's order, so a rerun
    with the same values (a resumed run, say) gives the same numbers wherever the arrays are."""
    if threads:
        request.getfixturevalue("threaded")
    rng = np.random.default_rng(7)
    x = (5 + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    runs = [outputs(run_bn(shape, "force", x=misaligned(x, s), dy=misaligned(dy, s)))
            for s in (0, 1, 4, 13)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_worker_threads(threaded):
    """Threads do not survive a fork: the child must start its own pool, not wait on the
    parent's (a study runner forks worker processes)."""
    import multiprocessing as mp

    shape = (48, 20, 9)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    _, _, _, y_parent, _ = run_bn(shape, "force", x=x)  # the parent's pool is running now
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_forward, args=(shape, x, queue))
    child.start()
    y_child = queue.get(timeout=120)
    child.join(30)
    assert child.exitcode == 0
    np.testing.assert_array_equal(y_child, y_parent)


def _child_forward(shape, x, queue):
    from gammabeta.nn import _threads

    _threads.PARALLEL_MIN, _threads.CHUNK_MIN = 1, 8
    queue.put(run_bn(shape, "force", x=x)[3])
