"""Checkpoints: safetensors round trip, atomic writes, refusal of pickles and broken files."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import CheckpointError, OutputError
from gammabeta.io import atomic_write_bytes, load_checkpoint, save_checkpoint

from ._torch import require_torch


def small_model():
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Linear(5, 4, rng=rng), nn.BatchNorm1d(4), nn.ReLU(),
                         nn.Linear(4, 3, rng=rng))


def test_round_trip_keeps_every_value_and_metadata(tmp_path):
    m = small_model()
    m(np.random.default_rng(1).standard_normal((8, 5)).astype(np.float32))  # move BN stats
    path = save_checkpoint(tmp_path / "m.safetensors", m.state_dict(), {"config": {"a": 1}})
    sd, meta = load_checkpoint(path)
    assert json.loads(meta["config"]) == {"a": 1}
    for k, v in m.state_dict().items():
        assert np.array_equal(sd[k], v) and sd[k].dtype == v.dtype
    assert int(sd["1.num_batches_tracked"]) == 1
    other = small_model()
    other.load_state_dict(sd)


def test_checkpoint_loads_into_torch_with_strict_keys(tmp_path):
    torch = require_torch()
    from safetensors.torch import load_file

    m = small_model()
    path = save_checkpoint(tmp_path / "m.safetensors", m.state_dict())
    ref = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                              torch.nn.Linear(4, 3))
    ref.load_state_dict(load_file(str(path)), strict=True)
    ref.eval()
    m.eval()
    x = np.random.default_rng(2).standard_normal((6, 5)).astype(np.float32)
    out = ref(torch.from_numpy(x)).detach().numpy()
    assert np.abs(m(x) - out).max() <= 1e-5 * np.abs(out).max()


def test_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Evil(), protocol=4))
    with pytest.raises(CheckpointError, match="looks like a pickle.*never loads pickles"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_safetensors_whose_header_length_starts_like_a_pickle_loads(tmp_path, protocol):
    """A header of 0x0280 (or 0x0580) bytes makes a safetensors file start with 80 02 (80 05),
    a pickle's protocol opcode: it is still a safetensors file and must load."""
    w = np.arange(3, dtype=np.float32)
    body = {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
            "__metadata__": {"note": "x"}}
    size = 0x80 | (protocol << 8)
    text = json.dumps(body).encode()
    header = text + b" " * (size - len(text))
    path = tmp_path / "m.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + w.tobytes())
    assert path.read_bytes()[:2] == bytes([0x80, protocol])
    tensors, meta = load_checkpoint(path)
    assert np.array_equal(tensors["w"], w) and meta == {"note": "x"}


def test_truncated_and_garbage_files(tmp_path):
    good = save_checkpoint(tmp_path / "g.safetensors", small_model().state_dict()).read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good[:-10])  # header intact, tensor data cut short
    with pytest.raises(CheckpointError, match="cut.safetensors: not a valid safetensors"):
        load_checkpoint(cut)
    half = tmp_path / "half.safetensors"
    half.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="half.safetensors: the safetensors header claims"):
        load_checkpoint(half)
    hdr = tmp_path / "hdr.safetensors"
    hdr.write_bytes(good[:20])
    with pytest.raises(CheckpointError, match="header claims .* bytes.*truncated"):
        load_checkpoint(hdr)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="3 bytes, too short"):
        load_checkpoint(tiny)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt

    from gammabeta.io import atomic_write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, boom)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_folder_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write .*ro/x.bin"):
            atomic_write_bytes(ro / "x.bin", b"data")
    finally:
        ro.chmod(0o700)


def test_output_path_under_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write .*file/sub/x.bin"):
        atomic_write_bytes(blocker / "sub" / "x.bin", b"data")
