"""Tests of gammabeta.data: datasets, user files, IDX files, MNIST loading and the DataLoader."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gammabeta.data import (
    DataLoader,
    Dataset,
    load_dataset,
    load_digits,
    load_file,
    load_mnist1d,
    split,
)
from gammabeta.errors import ConfigError, DataError

from .test_idx import _fake_split

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
