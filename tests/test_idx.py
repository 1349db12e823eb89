"""IDX files and MNIST / Fashion-MNIST loading: round trips, bad files, downloads."""

from __future__ import annotations

import functools
import gzip
import hashlib
import struct
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import gammabeta.data.idx as idx_mod
from gammabeta.data import (
    load_mnist,
    read_idx,
    write_idx,
)
from gammabeta.errors import ConfigError, DataError

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = (np.random.default_rng(0).normal(size=(3, 4, 5)) * 50).astype(dtype)
    p = write_idx(tmp_path / f"a.idx{suffix}", a)
    raw = gzip.decompress(p.read_bytes()) if suffix else p.read_bytes()
    assert raw[:4] == bytes([0, 0, raw[2], 3]) and struct.unpack(">3I", raw[4:16]) == (3, 4, 5)
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative and np.array_equal(a, b)
    assert not list(tmp_path.glob(".*.tmp"))


def _raw_idx(code, dims, data):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(("content", "match"), [
        (b"\x01\x02\x08\x01\x00\x00\x00\x01\x05", "bad magic number 0x01020801"),
        (_raw_idx(0x0A, (2,), b"\x00\x00"), "unsupported IDX dtype code 0x0A"),
        (_raw_idx(0x08, (2, 3), b"\x00" * 5), "truncated IDX data"),
        (_raw_idx(0x0C, (2,), b"\x00" * 9), "trailing data"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated IDX header"),
])
def test_idx_errors(tmp_path, gz, content, match):
    p = tmp_path / ("f.gz" if gz else "f")
    p.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match=match) as info:
        read_idx(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_huge_claim_refused_quickly(tmp_path, gz):
    content = _raw_idx(0x0E, (65536, 65536), b"\x00" * 1000)  # claims 2**32 float64s
    p = tmp_path / ("huge.gz" if gz else "huge")
    p.write_bytes(gzip.compress(content) if gz else content)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="truncated IDX data: dims .* need 34,359,738,368 bytes"):
        read_idx(p)
    assert time.perf_counter() - t0 < 1.0


def test_idx_gzip_corruption(tmp_path):
    p = write_idx(tmp_path / "a.gz", np.arange(100, dtype=np.uint8))
    good = p.read_bytes()
    p.write_bytes(good[:-8] + bytes([good[-8] ^ 0xFF]) + good[-7:])  # bad CRC
    with pytest.raises(DataError, match="corrupt gzip stream"):
        read_idx(p)
    p.write_bytes(good[: len(good) // 2])  # cut short
    with pytest.raises(DataError, match="corrupt gzip stream"):
        read_idx(p)


def test_write_idx_refuses_unsupported_dtype(tmp_path):
    with pytest.raises(DataError, match="cannot write dtype bool"):
        write_idx(tmp_path / "b", np.zeros(3, bool))


def _fake_split(folder, part, n, gz=False, seed=0):
    """Write n random 28x28 images and labels with the standard names; return them."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    lbl = (np.arange(n) % 10).astype(np.uint8)
    ext = ".gz" if gz else ""
    write_idx(folder / (STEMS[part][0] + ext), img)
    write_idx(folder / (STEMS[part][1] + ext), lbl)
    return img, lbl


def test_load_mnist_both_splits(tmp_path):
    img, lbl = _fake_split(tmp_path, "train", 30)
    _fake_split(tmp_path, "test", 12, gz=True, seed=1)
    ds = load_mnist(tmp_path, verify=False)
    assert ds.name == "mnist" and ds.num_classes == 10
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (12, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert np.allclose(ds.x_train[:, 0] * 255, img) and np.array_equal(ds.y_train, lbl)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_load_mnist_only_test_split_note(tmp_path):
    _fake_split(tmp_path, "test", 12)
    ds = load_mnist(tmp_path, seed=0)
    assert ds.x_train.shape == (10, 1, 28, 28) and ds.x_test.shape == (2, 1, 28, 28)
    assert "only the 12-image test split was found" in ds.note
    assert "split 10/2 with seed 0" in ds.note and str(tmp_path) in ds.note
    assert np.array_equal(load_mnist(tmp_path, seed=0).y_test, ds.y_test)


def test_load_mnist_standard_gz_names_are_verified(tmp_path):
    _fake_split(tmp_path, "test", 5, gz=True)
    with pytest.raises(DataError, match="does not match the published MNIST checksum "
                       "9fb629c4189551a2d022fa330f9573f3"):
        load_mnist(tmp_path)
    assert load_mnist(tmp_path, verify=False).x_test.shape == (1, 1, 28, 28)


def test_load_mnist_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; expected t10k-images-idx3-ubyte and "
                       r"t10k-labels-idx1-ubyte .*train-images-idx3-ubyte.*--data-dir DIR.*"
                       r"--download, download=True"):
        load_mnist(tmp_path / "nowhere", cache_dir=tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="found t10k-images-idx3-ubyte but not t10k-labels"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="3 labels but t10k-images-idx3-ubyte has 2 images"):
        load_mnist(tmp_path)
    with pytest.raises(ConfigError, match="unknown kind 'kmnist'"):
        load_mnist(tmp_path, kind="kmnist")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """Serve tmp_path/srv over http on 127.0.0.1 in a thread; yield (root, base_url)."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    root = tmp_path / "srv"
    root.mkdir()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_checksum_mismatch_leaves_nothing(tmp_path, http_server):
    root, url = http_server
    _fake_split(root, "train", 20, gz=True)
    _fake_split(root, "test", 10, gz=True)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz from .*MD5 [0-9a-f]{32} "
                       "does not match the published checksum f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_mnist(download=True, cache_dir=cache, mirrors=[url])
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_download_verified_then_cached(tmp_path, http_server, monkeypatch):
    root, url = http_server
    _fake_split(root, "train", 20, gz=True)
    _fake_split(root, "test", 10, gz=True)
    for f in root.iterdir():  # pretend our fake files are the published ones
        monkeypatch.setitem(idx_mod.MD5["fashion"], f.name, hashlib.md5(f.read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    bad = url + "missing/"  # a 404 mirror first: the next mirror must be tried
    ds = load_mnist(kind="fashion-mnist", download=True, cache_dir=cache, mirrors=[bad, url])
    assert ds.name == "fashion-mnist" and ds.x_train.shape == (20, 1, 28, 28)
    assert "downloaded 4 files" in ds.note
    assert sorted(p.name for p in (cache / "fashion-mnist").iterdir()) == sorted(
        s + ".gz" for pair in STEMS.values() for s in pair)
    for f in root.iterdir():
        f.unlink()  # the server is now empty: the next load must come from the cache
    again = load_mnist(kind="fashion", cache_dir=cache)
    assert np.array_equal(again.x_test, ds.x_test)


def test_download_from_file_url_without_verify(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _fake_split(src, "train", 20, gz=True)
    _fake_split(src, "test", 10, gz=True)
    ds = load_mnist(download=True, cache_dir=tmp_path / "c", mirrors=src.as_uri(), verify=False)
    assert ds.x_test.shape == (10, 1, 28, 28)
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz"):
        load_mnist(download=True, cache_dir=tmp_path / "d", mirrors=[(tmp_path / "x").as_uri()])
