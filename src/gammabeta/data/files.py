"""User data files: .npz (x, y or the four split arrays) and .csv with a header row."""

from __future__ import annotations

import csv
import math
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from gammabeta.data.dataset import Dataset, split
from gammabeta.errors import DataError

__all__ = ["load_file"]

_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
_XY_KEYS = ("x", "y")
_LABEL_NAMES = ("label", "y")


def _features(x: np.ndarray, where: str) -> np.ndarray:
    """Check a feature array (numeric, >= 2-D, finite) and return it as float32."""
    if x.dtype.kind not in "fiub":
        raise DataError(f"{where} has dtype {x.dtype}; expected numeric features")
    if x.ndim < 2:
        raise DataError(
            f"{where} has shape {x.shape}; expected (N, features...) with at least 2 "
            "dimensions (reshape a single feature to (N, 1))"
        )
    bad = ~np.isfinite(x) if x.dtype.kind == "f" else None
    if bad is not None and bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{where} holds {int(bad.sum())} NaN/inf values (first at index {first}); "
            "expected finite features"
        )
    out = x.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise DataError(f"{where} has values too large for float32; expected |x| < 3.4e38")
    return out


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    """Check a label array (1-D, non-negative integers) and return it as int64."""
    if y.ndim != 1:
        raise DataError(f"{where} has shape {y.shape}; expected 1-D labels (N,)")
    if y.dtype.kind not in "fiub":
        raise DataError(f"{where} has dtype {y.dtype}; expected integer labels")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{where}[{i}] = {y[i].item()!r} is not an integer; "
                "expected integer class labels"
            )
    if y.size and y.min() < 0:
        i = int(np.argmin(y))
        raise DataError(f"{where}[{i}] = {y[i].item()!r} is negative; expected labels >= 0")
    return y.astype(np.int64)


def _check_pair(x: np.ndarray, y: np.ndarray, where: str, xname: str, yname: str) -> None:
    """Raise DataError unless x and y hold the same, non-zero, number of samples."""
    if len(x) != len(y):
        raise DataError(
            f"{where}: {xname} has {len(x)} samples but {yname} has {len(y)}; "
            "expected the same number"
        )
    if len(x) == 0:
        raise DataError(f"{where}: {xname} holds no samples; expected at least one")


# Everything a damaged or hostile zip/.npy can raise while being parsed.
_PARSE_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError,
                 TypeError, NotImplementedError, RuntimeError, OverflowError, SyntaxError,
                 IndexError, RecursionError, struct.error, tokenize.TokenError)
# deflate cannot expand more than ~1032:1; a member claiming more is lying (a zip bomb)
_MAX_RATIO = 1100


def _read_npy_member(zf: zipfile.ZipFile, name: str, path: Path, key: str) -> np.ndarray:
    """Read one ``.npy`` member, checking its header against the sizes the zip records
    before any array is allocated; object (pickled) arrays are refused."""
    info = zf.getinfo(name)
    if info.file_size > _MAX_RATIO * max(info.compress_size, 1) + 4096:
        raise DataError(f"{path}: array {key!r} claims {info.file_size:,} bytes from "
                        f"{info.compress_size:,} compressed; refused")
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise DataError(f"{path}: array {key!r} uses .npy format {version}; "
                                "expected 1.0 or 2.0")
            if dtype.hasobject:
                raise DataError(f"{path}: array {key!r} holds Python objects (pickled data), "
                                "which are refused; expected numeric arrays")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes != info.file_size - f.tell():
                raise DataError(f"{path}: array {key!r} has a header for shape {shape} "
                                f"({nbytes:,} bytes) but holds {info.file_size - f.tell():,}")
            data = f.read(nbytes)
    except DataError:
        raise
    except _PARSE_ERRORS as exc:
        raise DataError(f"{path}: array {key!r} is corrupt ({type(exc).__name__}: {exc})") \
            from None
    if len(data) != nbytes:
        raise DataError(f"{path}: array {key!r} is truncated")
    arr = np.frombuffer(data, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read the arrays of an .npz file without pickle; return the x/y or split arrays."""
    try:
        zf = zipfile.ZipFile(path)
    except _PARSE_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") \
            from None
    with zf:
        members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        found = sorted(members)
        if all(k in found for k in _SPLIT_KEYS):
            keys = _SPLIT_KEYS
        elif all(k in found for k in _XY_KEYS):
            keys = _XY_KEYS
        else:
            raise DataError(
                f"{path}: found keys {found}; expected either {list(_XY_KEYS)} "
                f"or {list(_SPLIT_KEYS)}"
            )
        return {k: _read_npy_member(zf, members[k], path, k) for k in keys}


def _parse_float(cell: str, path: Path, line: int, col: str) -> float:
    """Parse one CSV cell; raise DataError naming the line and column if it is not finite."""
    try:
        v = float(cell)
    except ValueError:
        raise DataError(
            f"{path}: line {line}, column {col!r}: {cell.strip()!r} is not a number; "
            "expected numeric values"
        ) from None
    if not math.isfinite(v):
        raise DataError(
            f"{path}: line {line}, column {col!r}: {cell.strip()!r} is not finite; "
            "expected finite numbers"
        )
    return v


def _load_csv(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Read a CSV with a header row; return features (N, F), float labels (N,) and label name."""
    header: list[str] | None = None
    rows: list[list[float]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                line = reader.line_num
                if header is None:
                    header = [c.strip() or f"column {i + 1}" for i, c in enumerate(row)]
                    if len(header) < 2:
                        raise DataError(
                            f"{path}: header has {len(header)} column; expected at least "
                            "one feature column and a label column"
                        )
                    if all(_is_number(c) for c in row):
                        raise DataError(
                            f"{path}: line {line} looks like data, not a header; expected a "
                            "header row naming the columns (label column 'label' or 'y')"
                        )
                    lower = [h.lower() for h in header]
                    names = [n for n in _LABEL_NAMES if n in lower]
                    label_col = lower.index(names[0]) if names else len(header) - 1
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}: line {line} has {len(row)} fields; expected {len(header)} "
                        "as in the header"
                    )
                cells = zip(row, header, strict=True)
                values = [_parse_float(c, path, line, h) for c, h in cells]
                label = values[label_col]
                if label != int(label) or label < 0:
                    raise DataError(
                        f"{path}: line {line}, column {header[label_col]!r}: label "
                        f"{row[label_col].strip()!r} is not a non-negative integer; "
                        "expected class labels 0, 1, 2, ..."
                    )
                rows.append(values)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: is not UTF-8 text ({exc}); expected a CSV file") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    if header is None:
        raise DataError(f"{path}: holds no header and no rows; expected a CSV with data")
    if not rows:
        raise DataError(f"{path}: has a header but no data rows; expected at least one row")
    table = np.array(rows, dtype=np.float64)
    y = table[:, label_col]
    x = np.delete(table, label_col, axis=1)
    return x, y, header[label_col]


def _is_number(cell: str) -> bool:
    """True if the cell parses as a float."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def load_file(
    path: str | os.PathLike[str], test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """Load a .npz (``x, y`` or ``x_train, y_train, x_test, y_test``) or a .csv as a Dataset."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file; expected a .npz or .csv data file")
    if not path.is_file():
        raise DataError(f"{path}: is not a regular file; expected a .npz or .csv data file")
    ext = path.suffix.lower()
    if ext not in (".npz", ".csv"):
        raise DataError(f"{path}: unknown extension {ext or '(none)'!r}; expected .npz or .csv")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected {ext} data")
    rng = np.random.default_rng(seed)
    note = ""
    if ext == ".npz":
        arrays = _load_npz(path)
        if "x" in arrays:
            _check_pair(arrays["x"], arrays["y"], str(path), "x", "y")
            x = _features(arrays["x"], f"{path}: x")
            y = _labels(arrays["y"], f"{path}: y")
            x_tr, y_tr, x_te, y_te = split(x, y, test_fraction, rng)
            note = f"split {len(x_tr):,}/{len(x_te):,} with seed {seed}"
        else:
            for part in ("train", "test"):
                _check_pair(arrays[f"x_{part}"], arrays[f"y_{part}"], str(path),
                            f"x_{part}", f"y_{part}")
            x_tr = _features(arrays["x_train"], f"{path}: x_train")
            y_tr = _labels(arrays["y_train"], f"{path}: y_train")
            x_te = _features(arrays["x_test"], f"{path}: x_test")
            y_te = _labels(arrays["y_test"], f"{path}: y_test")
    else:
        xf, yf, label_name = _load_csv(path)
        x = _features(xf, f"{path}: features")
        y = _labels(yf, f"{path}: column {label_name!r}")
        x_tr, y_tr, x_te, y_te = split(x, y, test_fraction, rng)
        note = (
            f"labels from column {label_name!r}; split {len(x_tr):,}/{len(x_te):,} "
            f"with seed {seed}"
        )
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    return Dataset(path.name, x_tr, y_tr, x_te, y_te, num_classes, note).validate()
