"""The one ``.npz`` reader of user data (``train`` and ``predict``): no pickle, sizes first.

Each ``.npy`` member's header is read and its declared size checked against what the zip
records, against the real file size and against available memory before the array is
allocated; object arrays (pickles) are refused; a member that expands more than deflate can
(a zip bomb) is refused.
"""

from __future__ import annotations

import math
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gammabeta.data.limits import check_memory
from gammabeta.errors import DataError

__all__ = ["read_npz"]

# Everything a damaged or hostile zip/.npy can raise while being parsed.
_PARSE_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError,
                 TypeError, NotImplementedError, RuntimeError, OverflowError, SyntaxError,
                 IndexError, RecursionError, struct.error, tokenize.TokenError)
# deflate cannot expand more than ~1032:1; a member claiming more is lying (a zip bomb)
_MAX_RATIO = 1100
_CHUNK = 1 << 20


def _read_npy_member(zf: zipfile.ZipFile, name: str, path: Path, key: str,
                     file_size: int, used: int) -> np.ndarray:
    """Read one ``.npy`` member, checking its header against the sizes the zip records, the
    file's size and free memory (``used`` bytes already taken) before allocating."""
    info = zf.getinfo(name)
    if info.compress_size > file_size:
        raise DataError(f"{path}: array {key!r} claims {info.compress_size:,} compressed bytes "
                        f"but the whole file holds {file_size:,}; refused")
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
            if any(d < 0 for d in shape):
                raise DataError(f"{path}: array {key!r} declares shape {shape}; expected "
                                "non-negative sizes")
            nbytes = math.prod(shape) * dtype.itemsize
            held = info.file_size - f.tell()
            if nbytes != held:
                raise DataError(f"{path}: array {key!r} has a header for shape {shape} "
                                f"({nbytes:,} bytes) but holds {held:,}")
            check_memory(used + nbytes, f"{path}: array {key!r} of shape {shape} {dtype}")
            buf = bytearray(nbytes)
            view, pos = memoryview(buf), 0
            while pos < nbytes:
                n = f.readinto(view[pos:pos + _CHUNK])
                if not n:
                    break
                pos += n
    except DataError:
        raise
    except _PARSE_ERRORS as exc:
        raise DataError(f"{path}: array {key!r} is corrupt ({type(exc).__name__}: {exc})") \
            from None
    if pos != nbytes:
        raise DataError(f"{path}: array {key!r} is truncated: {pos:,} of {nbytes:,} bytes")
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def read_npz(
    path: str | Path,
    layouts: Sequence[tuple[Sequence[str], Sequence[str]]],
    *,
    expected: str | None = None,
) -> dict[str, np.ndarray]:
    """Read the arrays of an ``.npz`` file without pickle, choosing among ``layouts``.

    ``layouts`` holds ``(required keys, optional keys)`` pairs tried in order: the first
    whose required keys are all in the file is read, with those of its optional keys that
    are present. No matching layout is a DataError listing the keys found and ``expected``
    (by default a description of the layouts). Arrays come back writable, in their dtype.
    """
    path = Path(path)
    try:
        file_size = path.stat().st_size
        zf = zipfile.ZipFile(path)
    except _PARSE_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") \
            from None
    with zf:
        members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        found = sorted(members)
        for required, optional in layouts:
            if all(k in members for k in required):
                keys = [*required, *(k for k in optional if k in members)]
                break
        else:
            if expected is None:
                expected = " or ".join(
                    f"{list(req)}" + (f" (optionally with {list(opt)})" if opt else "")
                    for req, opt in layouts)
            raise DataError(f"{path}: found keys {found}; expected {expected}")
        out: dict[str, np.ndarray] = {}
        used = 0
        for k in keys:
            out[k] = _read_npy_member(zf, members[k], path, k, file_size, used)
            used += out[k].nbytes
        return out
