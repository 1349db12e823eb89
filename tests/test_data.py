"""Tests of gammabeta.data: datasets, user files, IDX files, MNIST loading and the DataLoader."""

from __future__ import annotations

import functools
import gzip
import hashlib
import random
import struct
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import gammabeta.data.idx as idx_mod
from gammabeta.data import (
    DataLoader,
    Dataset,
    load_dataset,
    load_digits,
    load_file,
    load_mnist,
    load_mnist1d,
    read_idx,
    split,
    write_idx,
)
from gammabeta.errors import ConfigError, DataError

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _ds(**over):
    """A small valid Dataset with fields overridden."""
    rng = np.random.default_rng(0)
    fields = dict(name="toy", x_train=rng.normal(size=(6, 3)).astype(np.float32),
                  y_train=np.array([0, 1, 2, 0, 1, 2]), x_test=np.ones((2, 3), np.float32),
                  y_test=np.array([1, 2]), num_classes=3)
    return Dataset(**{**fields, **over})


def test_dataset_validate_ok_and_input_shape():
    ds = _ds()
    assert ds.validate() is ds
    assert ds.input_shape == (3,)


@pytest.mark.parametrize(("over", "match"), [
        ({"y_train": np.array([0, 1, 2, 0, 1])}, "x_train has 6 samples but y_train has 5"),
        ({"y_test": np.array([1, 3])}, r"labels in \[1, 3\]; expected integers in \[0, 3\)"),
        ({"y_test": np.array([-1, 0])}, r"labels in \[-1, 0\]"),
        ({"x_test": np.array([[0, np.nan, 0], [0, 0, 0]], np.float32)}, "NaN/inf"),
        ({"x_train": np.zeros((6, 3), np.int64)}, "expected a float dtype"),
        ({"y_train": np.zeros(6, np.float32)}, "expected integers"),
        ({"x_test": np.zeros((2, 4), np.float32)}, "expected the same"),
        ({"num_classes": 0}, "num_classes must be a positive int"),
])
def test_dataset_validate_errors(over, match):
    with pytest.raises(DataError, match=match):
        _ds(**over).validate()


def test_split_is_seeded_permutation():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    a = split(x, y, 0.3, np.random.default_rng(5))
    b = split(x, y, 0.3, np.random.default_rng(5))
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    x_tr, y_tr, x_te, y_te = a
    assert len(y_te) == 3 and len(y_tr) == 7
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(10))
    assert np.array_equal(x_tr[:, 0], 2 * y_tr)  # rows stay paired with their labels
    with pytest.raises(ConfigError, match="test_fraction must be in"):
        split(x, y, 1.0, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="default_rng"):
        split(x, y, 0.5, 0)


def test_mnist1d_shapes_cache_and_global_state(tmp_path, monkeypatch):
    import mnist1d.data as m1d

    calls = []
    real = m1d.make_dataset
    monkeypatch.setattr(m1d, "make_dataset", lambda args: calls.append(args) or real(args))
    np.random.seed(123)  # noqa: NPY002 - the caller's global state that must survive
    random.seed(7)
    np_before, py_before = np.random.get_state(), random.getstate()  # noqa: NPY002

    ds = load_mnist1d(cache_dir=tmp_path)
    np_after = np.random.get_state()  # noqa: NPY002
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before
    assert ds.name == "mnist1d" and ds.num_classes == 10
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert set(np.unique(ds.y_train).tolist()) == set(range(10))
    assert "cached at" in ds.note and len(calls) == 1

    again = load_mnist1d(cache_dir=tmp_path)
    assert len(calls) == 1, "second call must load from the cache, not regenerate"
    assert "loaded from cache" in again.note
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(ds, key), getattr(again, key))


def test_mnist1d_corrupt_cache_is_regenerated(tmp_path):
    small = dict(cache_dir=tmp_path, num_samples=100, train_split=0.8, length=20, seed=3)
    first = load_mnist1d(**small)
    assert first.x_train.shape == (80, 20) and first.x_test.shape == (20, 20)
    (cache_file,) = tmp_path.glob("mnist1d_*.npz")
    assert "n100" in cache_file.name and "len20" in cache_file.name and "seed3" in cache_file.name
    cache_file.write_bytes(b"PK\x03\x04 this is not a zip archive")
    second = load_mnist1d(**small)
    assert "unreadable" in second.note and "regenerated" in second.note
    assert np.array_equal(first.x_train, second.x_train)
    assert "loaded from cache" in load_mnist1d(**small).note  # the rewrite is good again
    with pytest.raises(ConfigError, match="train_split must be in"):
        load_mnist1d(train_split=1.5)
    with pytest.raises(ConfigError, match="num_samples must be an int >= 10"):
        load_mnist1d(num_samples=5)


def test_digits_shape_range_and_seed():
    ds = load_digits()
    assert ds.name == "digits" and ds.num_classes == 10
    assert ds.x_train.shape == (1438, 64) and ds.x_test.shape == (359, 64)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert np.array_equal(load_digits().y_test, ds.y_test)
    assert not np.array_equal(load_digits(seed=1).y_test, ds.y_test)


def test_npz_xy_is_split(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.arange(40, dtype=np.float64).reshape(20, 2), y=np.arange(20) % 4)
    ds = load_file(p, test_fraction=0.25, seed=1)
    assert ds.x_train.shape == (15, 2) and ds.x_test.shape == (5, 2)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.num_classes == 4 and ds.name == "d.npz"
    assert np.array_equal(ds.x_train[:, 0], 2 * (ds.x_train[:, 0] // 2))


def test_npz_four_keys(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x_train=np.ones((4, 2, 2)), y_train=[0, 1, 0, 1],
             x_test=np.zeros((2, 2, 2)), y_test=[5, 0])
    ds = load_file(p)
    assert ds.input_shape == (2, 2) and ds.num_classes == 6
    assert np.array_equal(ds.y_test, [5, 0])


@pytest.mark.parametrize(("text", "label_col"), [
     ("a,label,b\n1,0,2\n3,1,4\n5,2,6\n7,1,8\n", "label"),
     ("a,b,y\n1,2,0\n3,4,1\n5,6,2\n7,8,1\n", "y"),
     ("a,b,target\n1,2,0\n3,4,1\n5,6,2\n7,8,1\n", "target")])
def test_csv_label_column(tmp_path, text, label_col):
    p = tmp_path / "d.csv"
    p.write_text(text)
    ds = load_file(p, test_fraction=0.25)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    assert x.shape == (4, 2) and ds.num_classes == 3
    assert sorted(zip(x[:, 0].tolist(), y.tolist(), strict=True)) == [
        (1, 0), (3, 1), (5, 2), (7, 1)]
    assert repr(label_col) in ds.note


@pytest.mark.parametrize(("name", "content", "match"), [
        ("d.csv", "", "file is empty"),
        ("d.npz", "", "file is empty"),
        ("d.txt", "a,y\n1,0\n", r"unknown extension '\.txt'; expected \.npz or \.csv"),
        ("d.csv", "a,y\n", "no data rows"),
        ("d.csv", "a,y\n1,0\n2,x1\n", r"line 3, column 'y': 'x1' is not a number"),
        ("d.csv", "a,y\n1,0\nfoo,1\n", r"line 3, column 'a': 'foo' is not a number"),
        ("d.csv", "a,y\n1,0\n2,1.5\n", r"line 3, column 'y': label '1\.5' is not a non-neg"),
        ("d.csv", "a,label,b\n1,-1,0\n", r"line 2, column 'label': label '-1' is not a non-neg"),
        ("d.csv", "a,y\n1,0\nnan,1\n", r"line 3, column 'a': 'nan' is not finite"),
        ("d.csv", "a,y\n1,0\n2\n", "line 3 has 1 fields; expected 2"),
        ("d.csv", "1,0\n2,1\n", "looks like data, not a header"),
        ("d.npz", "not a zip", "not a readable .npz"),
])
def test_file_errors(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        load_file(p)
    assert name in str(info.value)


@pytest.mark.parametrize(("arrays", "match"), [
        ({"data": np.ones((3, 2)), "target": np.zeros(3)},
         r"found keys \['data', 'target'\]; expected either \['x', 'y'\]"),
        ({"x": np.ones((3, 2)), "y": np.zeros(4, np.int64)}, "x has 3 samples but y has 4"),
        ({"x": np.ones((3, 2)), "y": np.array([0, 1, 2.5])}, r"y\[2\] = 2\.5 is not an integer"),
        ({"x": np.ones((3, 2)), "y": np.array([0, -2, 1])}, r"y\[1\] = -2 is negative"),
        ({"x": np.array([[1.0, np.inf], [0, 0], [0, 0]]), "y": np.zeros(3, np.int64)},
         r"1 NaN/inf values \(first at index \(0, 1\)\)"),
        ({"x": np.array([["a", "b"]] * 3), "y": np.zeros(3, np.int64)}, "expected numeric"),
        ({"x": np.ones(3), "y": np.zeros(3, np.int64)}, r"shape \(3,\); expected \(N, features"),
        ({"x_train": np.ones((3, 2)), "y_train": np.zeros(3, np.int64)},
         r"expected either \['x', 'y'\] or \['x_train', 'y_train', 'x_test', 'y_test'\]"),
])
def test_npz_errors(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=match) as info:
        load_file(p)
    assert "bad.npz" in str(info.value)


class _Evil:
    """Unpickling this would create the file named in ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_npz_with_pickle_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.npz"
    np.savez(p, x=np.array([_Evil(str(marker))] * 2, dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match="holds Python objects"):
        load_file(p)
    assert not marker.exists()


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
    with pytest.raises(DataError, match=r"does not exist; looked for train-images-idx3-ubyte"
                       r".*t10k-labels-idx1-ubyte.*--download"):
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


def test_loader_lengths_and_trailing_single_dropped():
    x, y = np.arange(10, dtype=np.float32)[:, None], np.arange(10)
    dl = DataLoader(x, y, batch_size=3, shuffle=False)
    assert len(dl) == 3 and [len(b) for _, b in dl] == [3, 3, 3]  # the lone 10th is dropped
    dl11 = DataLoader(np.zeros((11, 2)), np.arange(11), batch_size=3, shuffle=False)
    assert len(dl11) == 4 and [len(b) for _, b in dl11] == [3, 3, 3, 2]
    dl11d = DataLoader(np.zeros((11, 2)), np.arange(11), batch_size=3, shuffle=False,
                       drop_last=True)
    assert len(dl11d) == 3 and [len(b) for _, b in dl11d] == [3, 3, 3]
    assert [b.tolist() for _, b in dl] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_loader_shuffle_is_deterministic_and_reshuffles():
    x, y = np.arange(20, dtype=np.float32)[:, None], np.arange(20)

    def epochs(seed):
        dl = DataLoader(x, y, batch_size=6, rng=np.random.default_rng(seed))
        return [[yb.tolist() for _, yb in dl] for _ in range(2)]

    a, b = epochs(7), epochs(7)
    assert a == b and a[0] != a[1] and a != epochs(8)
    dl = DataLoader(x, y, batch_size=6, rng=np.random.default_rng(0))
    for xb, yb in dl:
        assert np.array_equal(xb[:, 0], yb)  # x and y stay paired
    assert sorted(sum(a[0], [])) == list(range(20))


def test_loader_errors():
    x, y = np.zeros((5, 2)), np.zeros(5)
    with pytest.raises(ConfigError, match=r"shuffle=True needs rng.*default_rng\(seed\)"):
        DataLoader(x, y)
    with pytest.raises(ConfigError, match="rng must be a numpy.random.Generator"):
        DataLoader(x, y, rng=np.random.RandomState(0))  # noqa: NPY002
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        DataLoader(x, y, batch_size=0, shuffle=False)
    with pytest.raises(DataError, match="x has 5 samples but y has 4"):
        DataLoader(x, y[:4], shuffle=False)
    with pytest.raises(DataError, match="give no batches"):
        DataLoader(x[:1], y[:1], batch_size=4, shuffle=False)


def test_load_dataset_dispatch(tmp_path, monkeypatch):
    import gammabeta.data.registry as reg

    seen = {}
    monkeypatch.setattr(reg, "load_mnist1d", lambda cache_dir: seen.setdefault("c", cache_dir))
    assert load_dataset("mnist1d", cache_dir=tmp_path) == tmp_path
    assert load_dataset("digits", seed=3).name == "digits"
    _fake_split(tmp_path, "test", 12)
    assert load_dataset("Fashion_MNIST", data_dir=tmp_path).name == "fashion-mnist"
    assert load_dataset("mnist", data_dir=tmp_path).name == "mnist"
    p = tmp_path / "d.npz"
    np.savez(p, x=np.ones((4, 2)), y=[0, 1, 0, 1])
    assert load_dataset(str(p)).name == "d.npz"
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'; expected one of mnist1d"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "missing.csv")
