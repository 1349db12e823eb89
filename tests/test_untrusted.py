"""Untrusted files: property-based tests over every loader (IDX, npz, CSV, safetensors).

Whatever the bytes, a loader returns a value or raises a gammabeta error naming the file;
it never crashes with another exception, never hangs and never allocates more than the file
justifies. The same targets are fuzzed with atheris (fuzz/, test_fuzz_target_runs_clean).
"""

from __future__ import annotations

import gzip
import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gammabeta.data.files import load_file
from gammabeta.data.idx import read_idx
from gammabeta.errors import CheckpointError, DataError, GammabetaError
from gammabeta.io import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))
from targets import run_target  # noqa: E402

FAST = settings(max_examples=150, deadline=2000,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def corpus(name: str) -> bytes:
    return (ROOT / "fuzz" / "corpus" / f"seed-{name}").read_bytes()[1:]


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for kind, pos, val in ops:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] = val
        elif kind == 1:
            del b[i:]
        else:
            b[i:i] = bytes([val]) * (val % 17)
    return bytes(b)


OPS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)),
               max_size=6)


@pytest.mark.parametrize("name", ["idx", "idx.gz", "npz", "csv", "safetensors"])
@FAST
@given(ops=OPS)
def test_mutated_valid_files_give_value_or_gammabeta_error(name, ops):
    run_target(name, mutate(corpus(name), ops))


@pytest.mark.parametrize("name", ["idx", "idx.gz", "npz", "csv", "safetensors"])
@FAST
@given(data=st.binary(max_size=300))
def test_random_bytes_give_value_or_gammabeta_error(name, data):
    run_target(name, data)


@FAST
@given(dims=st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=4),
       code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
       body=st.binary(max_size=64))
def test_idx_headers_that_claim_more_than_the_file_are_refused_before_allocating(
        tmp_path, dims, code, body):
    path = tmp_path / "claim.idx"
    path.write_bytes(bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
                     + body)
    tracemalloc.start()
    try:
        read_idx(path)
    except DataError as e:
        assert "claim.idx" in str(e)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 1_000_000  # a few hundred bytes of file never cost a megabyte


def test_gzip_bomb_style_claim_is_refused(tmp_path):
    path = tmp_path / "big-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31 - 1, 28, 28)
    path.write_bytes(gzip.compress(header + b"\0" * 1000))
    tracemalloc.start()
    with pytest.raises(DataError, match=r"big-idx3-ubyte.gz"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000


def test_object_npz_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="evil.npz"):
        load_file(path)
    assert not marker.exists()


def test_safetensors_with_lying_offsets(tmp_path):
    header = b'{"w":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}'
    path = tmp_path / "lie.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CheckpointError, match="lie.safetensors"):
        load_checkpoint(path)


def test_every_gammabeta_error_is_a_builtin_error_type_too():
    for cls in (DataError, CheckpointError):
        assert issubclass(cls, GammabetaError) and issubclass(cls, ValueError)
