"""The one CSV reader of user data (``train`` and ``predict``): explicit header rules.

The first non-blank row decides: all cells non-numbers -> a header naming the columns; all
numbers -> data (no header); a mix -> an error naming the offending cell, since a header
that is half data (or data with a stray word) would otherwise shift every index silently.
Every later row must have the header's width and hold finite numbers only. The label column
is ``label`` or ``y`` when the header names one; with ``header="required"`` (training) it
is otherwise the last column, with ``header="auto"`` (prediction) there are then no labels.
"""

from __future__ import annotations

import array
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gammabeta.data.checks import check_labels
from gammabeta.data.limits import MAX_CLASSES, check_memory
from gammabeta.errors import ConfigError, DataError

__all__ = ["CsvTable", "read_csv", "LABEL_NAMES"]

LABEL_NAMES = ("label", "y")


@dataclass(frozen=True)
class CsvTable:
    """What :func:`read_csv` found: features, labels (int64, or None) and column names."""

    x: np.ndarray  # float64 (N, F)
    y: np.ndarray | None  # int64 (N,) or None
    label: str | None  # name of the label column, None without labels
    header: list[str] | None  # column names, None without a header row


def _is_number(cell: str) -> bool:
    """True if the cell parses as a float (nan/inf included: they are refused later)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_float(cell: str, path: Path, line: int, col: str) -> float:
    """Parse one CSV cell; raise DataError naming the line and column if it is not finite."""
    try:
        v = float(cell)
    except ValueError:
        raise DataError(f"{path}: line {line}, column {col}: {cell.strip()!r} is not a number; "
                        "expected numeric values") from None
    if not math.isfinite(v):
        raise DataError(f"{path}: line {line}, column {col}: {cell.strip()!r} is not finite; "
                        "expected finite numbers")
    return v


def _first_row(row: list[str], path: Path, line: int, header: str) -> list[str] | None:
    """Classify the first row: return the header names, or None if the row is data."""
    numeric = [_is_number(c) for c in row]
    if all(numeric):
        if header == "required":
            raise DataError(f"{path}: line {line} looks like data, not a header; expected a "
                            "header row naming the columns (label column 'label' or 'y')")
        return None
    if any(numeric):
        # the odd one out: a word among numbers, or a number among words
        odd = numeric.index(False) if sum(numeric) * 2 >= len(row) else numeric.index(True)
        where = "row 1" if line == 1 else f"row 1 (line {line})"
        raise DataError(f"{path}: {where} mixes numbers and text ({row[odd].strip()!r} in "
                        f"column {odd + 1}): a header must name every column, data must be "
                        "all numbers")
    names = [c.strip() or f"column {i + 1}" for i, c in enumerate(row)]
    lower = [n.lower() for n in names]
    twice = sorted({n for n in lower if lower.count(n) > 1})
    if twice:  # two 'label' columns would leave one copy of the label among the features
        raise DataError(f"{path}: the header names {twice[0]!r} more than once (columns "
                        f"{', '.join(str(i + 1) for i, n in enumerate(lower) if n == twice[0])})"
                        "; expected every column named once")
    return names


def read_csv(
    path: str | Path, header: str = "auto", *, max_classes: int = MAX_CLASSES
) -> CsvTable:
    """Read a CSV of numbers; see the module docstring for the header and label rules.

    ``header="required"`` (training) refuses a file whose first row is data and needs a
    feature column besides the label; ``header="auto"`` (prediction) accepts either. Labels
    are checked with :func:`~gammabeta.data.checks.check_labels` (class indices
    ``0..K-1``, ``K <= max_classes``), errors naming the line and the cell.
    """
    if header not in ("auto", "required"):
        raise ConfigError(f"read_csv: header={header!r}; expected 'auto' or 'required'")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected a CSV file")
    names: list[str] | None = None
    cols: list[str] | None = None  # column names for messages: 'name' or 1-based number
    label_col: int | None = None
    width = 0
    values = array.array("d")
    lines: list[int] = []
    raw_labels: list[str] = []
    size = path.stat().st_size  # a value takes >= 2 bytes ("0,"): at most size / 2 of them
    check_memory(4 * size, f"{path}: a CSV of {size:,} bytes read as float64")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            first = True
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                line = reader.line_num
                if first:
                    first, width = False, len(row)
                    names = _first_row(row, path, line, header)
                    if names is not None:
                        if header == "required" and width < 2:
                            raise DataError(f"{path}: header has {width} column; expected "
                                            "at least one feature column and a label column")
                        lower = [n.lower() for n in names]
                        hits = [n for n in LABEL_NAMES if n in lower]
                        if hits:
                            label_col = lower.index(hits[0])
                        elif header == "required":
                            label_col = width - 1
                        continue
                if len(row) != width:
                    what = "the header" if names is not None else "the first row"
                    raise DataError(f"{path}: line {line} has {len(row)} fields; expected "
                                    f"{width} as in {what}")
                if cols is None:
                    cols = [repr(n) for n in names] if names is not None else \
                        [str(j + 1) for j in range(width)]
                for cell, col in zip(row, cols, strict=True):
                    values.append(_parse_float(cell, path, line, col))
                lines.append(line)
                if label_col is not None:
                    raw_labels.append(row[label_col])
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: is not UTF-8 text ({exc}); expected a CSV file") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    if first:
        raise DataError(f"{path}: holds no header and no rows, so no samples; expected a CSV "
                        "with data")
    if not lines:
        raise DataError(f"{path}: has a header but no data rows, so it holds no samples; "
                        "expected at least one row")
    table = np.frombuffer(values, dtype=np.float64).reshape(len(lines), width)
    if label_col is None:
        return CsvTable(table, None, None, names)
    assert names is not None
    name = names[label_col]
    y = check_labels(
        table[:, label_col], f"{path}: column {name!r}", max_classes,
        at=lambda i: (f"{path}: line {lines[i]}, column {name!r}", raw_labels[i]))
    return CsvTable(np.delete(table, label_col, axis=1), y, name, names)
