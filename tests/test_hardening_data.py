"""Data validation where data enters: one .npz/.csv reader shared by ``train`` and ``predict``.

Every refusal is a gammabeta error (DataError / ShapeError / CheckpointError) naming the file
and the bad value; sizes a header declares are checked before anything is allocated.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

import gammabeta.data.limits as limits
from gammabeta.data import Dataset, load_file, write_idx
from gammabeta.data.files import MAX_CLASSES, check_labels, read_csv, read_npz
from gammabeta.data.idx import read_idx
from gammabeta.deploy import load_inputs, load_model
from gammabeta.errors import CheckpointError, DataError, ShapeError
from gammabeta.io import save_checkpoint


def _npy(shape, descr="<f8", body=b""):
    """The bytes of a .npy file whose header declares ``shape``, followed by ``body``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + body


def _zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _xy(n=6, f=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, f)).astype(np.float32), np.arange(n) % k


# --- .npz: declared sizes, zip bombs, missing keys ----------------------------------------

@pytest.mark.parametrize("loader", ["train", "predict"])
def test_npz_declaring_1e14_elements_is_refused_before_allocating(tmp_path, loader):
    path = _zip(tmp_path / "claim.npz", {"x.npy": _npy((10**14, 40), body=b"\0" * 64),
                                          "y.npy": _npy((2,), "<i8", b"\0" * 16)})
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as e:
            load_file(path) if loader == "train" else load_inputs(path, (40,))
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    msg = str(e.value)
    assert "claim.npz" in msg and "'x'" in msg and "100000000000000" in msg
    assert peak < 5_000_000


def test_npz_member_lying_about_its_expanded_size_is_refused(tmp_path):
    path = _zip(tmp_path / "bomb.npz", {"x.npy": _npy((4, 40), body=b"\0" * 1280)})
    raw = bytearray(path.read_bytes())
    cd = raw.rindex(b"PK\x01\x02")  # central directory entry: uncompressed size at +24
    raw[cd + 24:cd + 28] = struct.pack("<I", 2**31)
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"bomb\.npz: array 'x' claims 2,147,483,648 bytes"):
        load_inputs(path, (40,))


def test_npz_larger_than_available_memory_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, x=np.zeros((1000, 40)), y=np.arange(1000) % 2)
    monkeypatch.setattr(limits, "available_memory", lambda: 100_000)
    for call in (lambda: load_file(path), lambda: load_inputs(path, (40,))):
        with pytest.raises(DataError) as e:
            call()
        msg = str(e.value)
        assert "big.npz" in msg and "'x'" in msg and "320,000 bytes" in msg
        assert "100,000 bytes of memory are available" in msg


def test_available_memory_reads_meminfo(tmp_path):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:  2048 kB\nMemFree:  1000 kB\nMemAvailable:   1536 kB\n")
    assert limits.available_memory(str(info)) == 1536 * 1024
    assert limits.available_memory(str(tmp_path / "missing")) is None
    info.write_text("MemTotal:  2048 kB\n")
    assert limits.available_memory(str(info)) is None


@pytest.mark.parametrize(("arrays", "found"), [
    ({"a": np.zeros((2, 40)), "b": np.zeros(2)}, "['a', 'b']"),
    ({"arr_0": np.zeros((2, 40))}, "['arr_0']"),  # the only array is no longer guessed at
])
def test_predict_npz_needs_x_or_x_test(tmp_path, arrays, found):
    path = tmp_path / "keys.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as e:
        load_inputs(path, (40,))
    msg = str(e.value)
    assert "keys.npz" in msg and f"found keys {found}" in msg and "'x'" in msg


def test_predict_npz_x_test_with_labels(tmp_path):
    x, y = _xy(f=40)
    np.savez(tmp_path / "t.npz", x_test=x, y_test=y, x_train=x[:1], y_train=y[:1])
    got_x, got_y = load_inputs(tmp_path / "t.npz", (40,))
    assert got_x.shape == (6, 40) and got_y.tolist() == y.tolist()
    arrays = read_npz(tmp_path / "t.npz", [(("x",), ("y",)), (("x_test",), ("y_test",))])
    assert sorted(arrays) == ["x_test", "y_test"] and arrays["x_test"].flags.writeable


# --- CSV: one header rule ------------------------------------------------------------------

def test_csv_first_row_mixing_numbers_and_text_is_refused_by_train_and_predict(tmp_path):
    path = tmp_path / "mix.csv"
    path.write_text("1,2,abc,0\n1,2,3,1\n4,5,6,0\n")
    want = ("row 1 mixes numbers and text ('abc' in column 3): a header must name every "
            "column, data must be all numbers")
    for call in (lambda: load_file(path), lambda: load_inputs(path, (3,))):
        with pytest.raises(DataError) as e:
            call()
        assert "mix.csv" in str(e.value) and want in str(e.value)


def test_csv_header_and_headerless_in_predict(tmp_path):
    (tmp_path / "h.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,6,2\n")
    x, y = load_inputs(tmp_path / "h.csv", (2,))
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]] and y.tolist() == [0, 1, 2]
    (tmp_path / "n.csv").write_text("1,2,0\n3,4,1\n5,6,2\n")  # no header: every row kept
    x, y = load_inputs(tmp_path / "n.csv", (3,))
    assert x.shape == (3, 3) and x[0].tolist() == [1, 2, 0] and y is None
    (tmp_path / "u.csv").write_text("a,b,target\n1,2,0\n3,4,1\n")  # no label/y column named
    x, y = load_inputs(tmp_path / "u.csv", (3,))
    assert x.shape == (2, 3) and y is None
    t = read_csv(tmp_path / "h.csv", header="required")
    assert t.label == "label" and t.header == ["a", "b", "label"] and t.y.dtype == np.int64


def test_csv_train_still_requires_a_header(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,0\n3,4,1\n")
    with pytest.raises(DataError, match=r"d\.csv: line 1 looks like data, not a header"):
        load_file(tmp_path / "d.csv")


def test_csv_fractional_label_is_refused_in_predict(tmp_path):
    path = tmp_path / "frac.csv"
    path.write_text("a,b,y\n1,2,0\n3,4,1.7\n")
    with pytest.raises(DataError) as e:
        load_inputs(path, (2,))
    msg = str(e.value)
    assert "frac.csv: line 3, column 'y': label '1.7' is not a non-negative integer" in msg


# --- labels: integers in [0, K), K bounded -------------------------------------------------

def test_huge_label_names_array_index_and_value(tmp_path):
    x, y = _xy()
    y = y.astype(np.float64)
    y[4] = 1e9
    np.savez(tmp_path / "big.npz", x=x, y=y)
    with pytest.raises(DataError) as e:
        load_file(tmp_path / "big.npz")
    msg = str(e.value)
    assert "big.npz: y[4] = 1000000000 is too large" in msg
    assert "labels must be class indices 0..K-1 with K <= 10000" in msg
    with pytest.raises(DataError, match=r"big\.npz: y\[4\] = 1000000000"):
        load_inputs(tmp_path / "big.npz", (4,))


def test_uint64_label_is_reported_with_its_true_value(tmp_path):
    x, _ = _xy()
    y = np.array([0, 1, 2, 0, 2**64 - 1, 1], dtype=np.uint64)
    np.savez(tmp_path / "u64.npz", x=x, y=y)
    with pytest.raises(DataError) as e:
        load_file(tmp_path / "u64.npz")
    assert "u64.npz: y[4] = 18446744073709551615 is too large" in str(e.value)


def test_csv_huge_label_names_line_and_cell(tmp_path):
    (tmp_path / "c.csv").write_text("a,label\n1,0\n2,1\n3,1e9\n")
    with pytest.raises(DataError) as e:
        load_file(tmp_path / "c.csv")
    assert "c.csv: line 4, column 'label': label '1e9' is too large" in str(e.value)


def test_max_classes_can_be_raised_and_integral_floats_are_labels(tmp_path):
    x, _ = _xy()
    y = np.array([0.0, 3.0, 20_000.0, 1.0, 3.0, 0.0])
    np.savez(tmp_path / "many.npz", x=x, y=y)
    with pytest.raises(DataError, match=r"many\.npz: y\[2\] = 20000 is too large"):
        load_file(tmp_path / "many.npz")
    ds = load_file(tmp_path / "many.npz", test_fraction=0.5, max_classes=30_000)
    assert ds.num_classes == 20_001 and ds.y_train.dtype == np.int64
    assert MAX_CLASSES == 10_000
    assert check_labels(np.array([3.0, 0.0]), "y").tolist() == [3, 0]


def test_negative_and_nan_labels(tmp_path):
    with pytest.raises(DataError, match=r"labels\.npz: y\[1\] = -3 is negative"):
        check_labels(np.array([0, -3]), "labels.npz: y")
    with pytest.raises(DataError, match=r"labels\.npz: y\[0\] = nan is not an integer"):
        check_labels(np.array([np.nan, 1.0]), "labels.npz: y")


# --- IDX: declared sizes -------------------------------------------------------------------

def _idx(dims, code=0x08, body=b""):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


@pytest.mark.parametrize(("dims", "match"), [
    ((10**7, 10**7), r"truncated IDX data: dims \(10000000, 10000000\) of uint8 need "
                     r"100,000,000,000,000 bytes"),
    ((2**31 - 1,) * 4, r"beyond any real data set"),  # a product that overflows int64
])
def test_idx_claims_are_refused_before_allocating(tmp_path, dims, match):
    path = tmp_path / "claim-idx3-ubyte"
    path.write_bytes(_idx(dims, body=b"\0" * 100))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=match) as e:
            read_idx(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert "claim-idx3-ubyte" in str(e.value) and peak < 1_000_000


def test_idx_gzip_claim_beyond_deflate_ratio_and_memory(tmp_path, monkeypatch):
    gz = write_idx(tmp_path / "a-idx3-ubyte.gz", np.zeros((10, 8, 8), np.uint8))
    raw = write_idx(tmp_path / "a-idx3-ubyte", np.zeros((10, 8, 8), np.uint8))
    monkeypatch.setattr(limits, "available_memory", lambda: 500)
    for path in (gz, raw):
        with pytest.raises(DataError) as e:
            read_idx(path)
        assert path.name in str(e.value) and "only 500 bytes of memory" in str(e.value)
    monkeypatch.undo()
    big = tmp_path / "b-idx3-ubyte.gz"
    big.write_bytes(gzip.compress(_idx((60_000, 28, 28), body=b"\0" * 10)))
    with pytest.raises(DataError, match=r"b-idx3-ubyte\.gz: truncated IDX data: .*need "
                                        r"47,040,000 bytes but a gzip file of"):
        read_idx(big)


# --- no samples, one class -----------------------------------------------------------------

def test_zero_row_inputs_hold_no_samples(tmp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 40)), y=np.zeros(0, np.int64))
    for call in (lambda: load_inputs(tmp_path / "empty.npz", (40,)),
                 lambda: load_file(tmp_path / "empty.npz")):
        with pytest.raises(DataError, match=r"empty\.npz: x has shape \(0, 40\), so it holds "
                                            "no samples"):
            call()
    (tmp_path / "head.csv").write_text("a,b,label\n")
    for call in (lambda: load_inputs(tmp_path / "head.csv", (2,)),
                 lambda: load_file(tmp_path / "head.csv")):
        with pytest.raises(DataError, match=r"head\.csv: has a header but no data rows, so it "
                                            "holds no samples"):
            call()
    write_idx(tmp_path / "none-idx3-ubyte", np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"none-idx3-ubyte: inputs has shape \(0, 8, 8\), so "
                                        "it holds no samples"):
        load_inputs(tmp_path / "none-idx3-ubyte", (1, 8, 8))


def test_single_class_training_set_is_refused(tmp_path):
    x, _ = _xy()
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(6, np.int64))
    with pytest.raises(DataError, match=r"one\.npz: y holds only class 0; a classifier needs "
                                        "at least 2 classes"):
        load_file(tmp_path / "one.npz")
    np.savez(tmp_path / "split.npz", x_train=x, y_train=np.full(6, 2), x_test=x[:2],
             y_test=np.array([0, 1]))
    with pytest.raises(DataError, match=r"split\.npz: y_train holds only class 2"):
        load_file(tmp_path / "split.npz")
    (tmp_path / "one.csv").write_text("a,y\n1,1\n2,1\n3,1\n")
    with pytest.raises(DataError, match=r"one\.csv: column 'y' holds only class 1"):
        load_file(tmp_path / "one.csv")
    ds = Dataset("toy", x, np.zeros(6, np.int64), x[:2], np.array([0, 1]), 2)
    with pytest.raises(DataError, match="'toy': y_train holds only class 0; a classifier"):
        ds.validate()


def test_one_class_in_predict_and_test_only_labels_are_fine(tmp_path):
    x, _ = _xy(f=40)
    np.savez(tmp_path / "p.npz", x=x, y=np.zeros(6, np.int64))
    assert load_inputs(tmp_path / "p.npz", (40,))[1].tolist() == [0] * 6
    np.savez(tmp_path / "s.npz", x_train=x, y_train=np.array([0, 1] * 3), x_test=x[:2],
             y_test=np.array([4, 1]))
    assert load_file(tmp_path / "s.npz").num_classes == 5


def test_predict_labels_of_another_length_are_refused(tmp_path):
    x, _ = _xy(f=40)
    np.savez(tmp_path / "len.npz", x=x, y=np.array([0, 1, 2]))
    with pytest.raises(DataError, match=r"len\.npz: x has 6 samples but y has 3"):
        load_inputs(tmp_path / "len.npz", (40,))


# --- non-finite features -------------------------------------------------------------------

def test_non_finite_and_float32_overflow_features(tmp_path):
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n")
    with pytest.raises(DataError, match=r"nan\.csv: line 2, column 2: 'nan' is not finite"):
        load_inputs(tmp_path / "nan.csv", (2,))
    x, y = _xy(f=40)
    x = x.astype(np.float64)
    x[3, 7] = 1e39
    np.savez(tmp_path / "huge.npz", x=x, y=y)
    for call in (lambda: load_inputs(tmp_path / "huge.npz", (40,)),
                 lambda: load_file(tmp_path / "huge.npz")):
        with pytest.raises(DataError, match=r"huge\.npz: x has values too large for float32 "
                                            r"\(first at index \(3, 7\): 1e\+39\)"):
            call()
    x[3, 7] = np.inf
    np.savez(tmp_path / "inf.npz", x=x, y=y)
    with pytest.raises(DataError, match=r"inf\.npz: x holds 1 NaN/inf values"):
        load_inputs(tmp_path / "inf.npz", (40,))
    np.savez(tmp_path / "shape.npz", x=np.zeros(5))
    with pytest.raises(ShapeError, match=r"shape\.npz: got inputs of shape \(5,\)"):
        load_inputs(tmp_path / "shape.npz", (40,))


# --- checkpoint metadata -------------------------------------------------------------------

def _checkpoint(tmp_path, input_shape, num_classes, name="model.safetensors"):
    from gammabeta.experiment import TrainConfig
    from gammabeta.models import build_model

    cfg = TrainConfig(model="mlp", hidden="8")
    model = build_model("mlp", (40,), 3, rng=np.random.default_rng(0), **cfg.model_kwargs())
    meta = {"config": json.dumps(cfg.to_dict()), "input_shape": input_shape,
            "num_classes": num_classes}
    return save_checkpoint(tmp_path / name, model.state_dict(), meta)


@pytest.mark.parametrize(("key", "value"), [
    ("input_shape", "[100000000000]"),
    ("input_shape", "[10000, 10001]"),
    ("input_shape", "[0]"),
    ("input_shape", "[1, 1, 1, 1, 40]"),
    ("input_shape", "[true]"),
    ("input_shape", "[]"),
    ("input_shape", "\"abc\""),
    ("input_shape", "[40"),
    ("num_classes", "1000000000"),
    ("num_classes", "1"),
    ("num_classes", "2.5"),
    ("num_classes", "true"),
])
def test_checkpoint_metadata_out_of_range_is_refused(tmp_path, key, value):
    fields = {"input_shape": "[40]", "num_classes": "3", key: value}
    path = _checkpoint(tmp_path, fields["input_shape"], fields["num_classes"], "bad.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    msg = str(e.value)
    assert "bad.safetensors" in msg and f"{key} = {value!r}" in msg


def test_checkpoint_metadata_in_range_loads(tmp_path):
    lm = load_model(_checkpoint(tmp_path, "[40]", "3").parent)
    assert lm.input_shape == (40,) and lm.num_classes == 3 and not lm.model.training
