"""GhostBatchNorm1d/2d: one virtual batch is BatchNorm, several are BatchNorm on each chunk in
turn (outputs, gradients, running statistics), gradient checks, evaluation, misuse."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import ConfigError, ShapeError
from gammabeta.nn.ghostbatchnorm import GhostBatchNorm1d, GhostBatchNorm2d

from .gradcheck import check_module_grads

INIT = dict(gamma_init="normal(mean=1, std=0.5)", beta_init="normal")


def pair(shape, vbs, dtype=np.float32, **kw):
    """(ghost, BatchNorm) with the same random γ/β."""
    two_d = len(shape) == 4
    ghost = (GhostBatchNorm2d if two_d else GhostBatchNorm1d)(
        shape[1], vbs, rng=np.random.default_rng(0), dtype=dtype, **INIT, **kw)
    bn = (nn.BatchNorm2d if two_d else nn.BatchNorm1d)(
        shape[1], rng=np.random.default_rng(0), dtype=dtype, **INIT, **kw)
    return ghost, bn


def data(shape, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return ((rng.standard_normal(shape) * 2 + 0.5).astype(dtype),
            rng.standard_normal(shape).astype(dtype))


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.parametrize("shape", [(8, 3), (8, 3, 5), (8, 2, 3, 3)])
@pytest.mark.parametrize("vbs", [8, 9, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_virtual_batch_is_batchnorm_exactly(shape, vbs, dtype):
    ghost, bn = pair(shape, vbs, dtype)
    for seed in range(3):
        x, dy = data(shape, seed, dtype)
        np.testing.assert_array_equal(ghost(x), bn(x))
        np.testing.assert_array_equal(ghost.backward(dy), bn.backward(dy))
    np.testing.assert_array_equal(ghost.weight.grad, bn.weight.grad)
    np.testing.assert_array_equal(ghost.bias.grad, bn.bias.grad)
    assert_same_state(ghost, bn)
    assert int(ghost.num_batches_tracked) == 3


CHUNKED = [((10, 3), 4, [(0, 4), (4, 8), (8, 10)]),
           ((9, 3), 4, [(0, 4), (4, 9)]),          # a last single sample joins the chunk before
           ((9, 3, 2), 4, [(0, 4), (4, 8), (8, 9)]),  # ... unless it has 2 values per channel
           ((7, 2, 2, 3), 3, [(0, 3), (3, 6), (6, 7)]),
           ((6, 2, 1, 1), 5, [(0, 6)]),
           ((5, 2, 3, 3), 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])]


@pytest.mark.parametrize("shape,vbs,spans", CHUNKED)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_equals_batchnorm_run_on_each_chunk(shape, vbs, spans, momentum):
    ghost, bn = pair(shape, vbs, np.float64, momentum=momentum)
    assert ghost.virtual_batches(shape[0], int(np.prod(shape[2:]))) == spans
    for seed in range(2):
        x, dy = data(shape, seed, np.float64)
        y, dx = ghost(x), ghost.backward(dy)
        for a, b in spans:  # the reference: BatchNorm on each chunk, forward then backward
            np.testing.assert_array_equal(y[a:b], bn(x[a:b]))
            np.testing.assert_array_equal(dx[a:b], bn.backward(dy[a:b]))
    np.testing.assert_array_equal(ghost.weight.grad, bn.weight.grad)
    np.testing.assert_array_equal(ghost.bias.grad, bn.bias.grad)
    assert_same_state(ghost, bn)
    assert int(ghost.num_batches_tracked) == 2 * len(spans)


def test_chunks_on_the_kernel_path():
    """Chunks large enough for the compiled kernels (when Numba is there): still BatchNorm's."""
    shape = (64, 16, 64)  # chunks of 32 samples: 32768 values, BatchNorm's kernel threshold
    ghost, bn = pair(shape, 32)
    x, dy = data(shape, 3)
    y, dx = ghost(x), ghost.backward(dy)
    keep = y.copy()
    for a, b in [(0, 32), (32, 64)]:
        np.testing.assert_array_equal(y[a:b], bn(x[a:b]))
        np.testing.assert_array_equal(dx[a:b], bn.backward(dy[a:b]))
    np.testing.assert_array_equal(y, keep)  # nothing overwrote the output we hold
    assert_same_state(ghost, bn)


@pytest.mark.parametrize("shape,vbs", [((7, 3), 3), ((7, 3, 2), 3), ((5, 2, 2, 2), 2),
                                       ((6, 4), 4)])
def test_gradcheck_random_gamma_beta_uneven_chunks(shape, vbs):
    rng = np.random.default_rng(1)
    ghost = (GhostBatchNorm2d if len(shape) == 4 else GhostBatchNorm1d)(
        shape[1], vbs, rng=rng, **INIT)
    assert len(ghost.virtual_batches(shape[0], int(np.prod(shape[2:])))) > 1
    check_module_grads(ghost, rng.standard_normal(shape) * 2 + 1)


def test_gradients_differ_from_whole_batch_batchnorm():
    """The test above would pass for plain BatchNorm too: check the chunking is real."""
    ghost, bn = pair((8, 3), 4, np.float64)
    x, dy = data((8, 3), 4, np.float64)
    assert not np.allclose(ghost(x), bn(x))
    assert not np.allclose(ghost.backward(dy), bn.backward(dy))
    y = ghost(x)
    np.testing.assert_allclose(y[:4].mean(0), ghost.bias.data, atol=1e-12)  # β per chunk
    np.testing.assert_allclose(y[4:].mean(0), ghost.bias.data, atol=1e-12)


def test_evaluation_is_batchnorm_and_no_running_stats_keeps_chunking():
    ghost, bn = pair((12, 3), 4, np.float64)
    for seed in range(2):
        x, _ = data((12, 3), seed, np.float64)
        ghost(x)
    bn.load_state_dict(ghost.state_dict())
    ghost.eval()
    bn.eval()
    x, dy = data((12, 3), 9, np.float64)
    np.testing.assert_array_equal(ghost(x), bn(x))
    np.testing.assert_array_equal(ghost.backward(dy), bn.backward(dy))
    assert int(ghost.num_batches_tracked) == 6
    free, ref = pair((12, 3), 4, np.float64, track_running_stats=False)
    free.eval()  # batch statistics in every mode: still per virtual batch
    y = free(x)
    for a in (0, 4, 8):
        np.testing.assert_array_equal(y[a:a + 4], ref(x[a:a + 4]))


def test_no_grad_keeps_no_cache():
    ghost, _ = pair((8, 3), 2)
    x, dy = data((8, 3), 0)
    with nn.no_grad():
        ghost(x)
    with pytest.raises(RuntimeError, match="no cached forward pass"):
        ghost.backward(dy)


@pytest.mark.parametrize("vbs", [0, -3, 2.0, True, None, "32"])
def test_bad_virtual_batch_size(vbs):
    with pytest.raises(ConfigError, match="GhostBatchNorm1d: virtual_batch_size="):
        GhostBatchNorm1d(3, vbs)


def test_bad_inputs():
    with pytest.raises(ShapeError, match=r"virtual_batch_size=1 leaves 1 value per channel"):
        GhostBatchNorm1d(3, 1)(np.ones((4, 3), dtype=np.float32))
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        GhostBatchNorm1d(3, 4)(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ShapeError, match="expected 4-D"):
        GhostBatchNorm2d(3, 4)(np.ones((4, 3), dtype=np.float32))
    ghost = GhostBatchNorm1d(3, 2)
    ghost(np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32))
    with pytest.raises(ShapeError, match=r"dy of shape \(6, 2\), expected \(6, 3\)"):
        ghost.backward(np.ones((6, 2), dtype=np.float32))


def test_repr_and_float16():
    assert repr(GhostBatchNorm1d(3)) == "GhostBatchNorm1d(3, virtual_batch_size=128)"
    assert repr(GhostBatchNorm2d(3, 16, momentum=None, affine=False)) == \
        "GhostBatchNorm2d(3, virtual_batch_size=16, momentum=None, affine=False)"
    ghost = GhostBatchNorm1d(3, 4)
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float16)
    y = ghost(x)
    assert y.dtype == np.float16 and ghost.backward(np.ones_like(y)).dtype == np.float16
