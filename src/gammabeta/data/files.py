"""User data files: .npz (x, y or the four split arrays) and .csv with a header row.

The readers here are the only ones for user data: ``gammabeta train`` (:func:`load_file`) and
``gammabeta predict`` (:func:`gammabeta.deploy.predict.load_inputs`) both use
:func:`read_npz` (sizes checked before allocating, no pickle), :func:`read_csv` (one header
rule), :func:`check_features` (numeric, finite, float32 range) and :func:`check_labels`
(class indices ``0..K-1`` with ``K <= max_classes``, default :data:`MAX_CLASSES`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gammabeta.data.checks import check_classes, check_features, check_labels, check_pair
from gammabeta.data.csvfile import CsvTable, read_csv
from gammabeta.data.dataset import Dataset, split
from gammabeta.data.limits import MAX_CLASSES, available_memory, check_memory
from gammabeta.data.npzfile import read_npz
from gammabeta.errors import DataError

__all__ = ["load_file", "read_npz", "read_csv", "CsvTable", "check_features", "check_labels",
           "check_pair", "check_classes", "check_memory", "available_memory", "MAX_CLASSES"]

_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
_XY_KEYS = ("x", "y")


def load_file(
    path: str | os.PathLike[str], test_fraction: float = 0.2, seed: int = 0, *,
    max_classes: int = MAX_CLASSES,
) -> Dataset:
    """Load a .npz (``x, y`` or ``x_train, y_train, x_test, y_test``) or a .csv as a Dataset.

    A .csv needs a header row; its label column is ``label`` or ``y``, else the last one.
    Labels must be class indices ``0..K-1`` with ``K <= max_classes`` and the training
    labels must hold at least 2 classes; features must be finite and fit float32.
    """
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
    note, columns = "", ()
    if ext == ".npz":
        arrays = read_npz(path, [(_SPLIT_KEYS, ()), (_XY_KEYS, ())],
                          expected=f"either {list(_XY_KEYS)} or {list(_SPLIT_KEYS)}")
        if "x" in arrays:
            x = check_features(arrays["x"], f"{path}: x")
            y = check_labels(arrays["y"], f"{path}: y", max_classes)
            check_pair(x, y, str(path), "x", "y")
            check_classes(y, f"{path}: y")
            x_tr, y_tr, x_te, y_te = split(x, y, test_fraction, rng)
            note = f"split {len(x_tr):,}/{len(x_te):,} with seed {seed}"
        else:
            parts = {}
            for part in ("train", "test"):
                xp = check_features(arrays[f"x_{part}"], f"{path}: x_{part}")
                yp = check_labels(arrays[f"y_{part}"], f"{path}: y_{part}", max_classes)
                check_pair(xp, yp, str(path), f"x_{part}", f"y_{part}")
                parts[part] = (xp, yp)
            (x_tr, y_tr), (x_te, y_te) = parts["train"], parts["test"]
            check_classes(y_tr, f"{path}: y_train")
    else:
        table = read_csv(path, header="required", max_classes=max_classes)
        assert table.y is not None  # header="required" always has a label column
        x = check_features(table.x, f"{path}: features")
        y = table.y
        check_classes(y, f"{path}: column {table.label!r}")
        x_tr, y_tr, x_te, y_te = split(x, y, test_fraction, rng)
        note = (
            f"labels from column {table.label!r}; split {len(x_tr):,}/{len(x_te):,} "
            f"with seed {seed}"
        )
        columns = tuple(h for h in table.header or () if h != table.label)
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    unseen = sorted(set(np.unique(y_te).tolist()) - set(np.unique(y_tr).tolist()))
    if unseen:  # allowed (a split can do this), but the user should know why they fail
        shown = ", ".join(map(str, unseen[:10])) + (", ..." if len(unseen) > 10 else "")
        note = (note + "; " if note else "") + (
            f"class(es) {shown} appear in the test split only: the model cannot learn them")
    return Dataset(path.name, x_tr, y_tr, x_te, y_te, num_classes, note, columns).validate()
