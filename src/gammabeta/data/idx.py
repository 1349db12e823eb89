"""IDX files (MNIST, Fashion-MNIST): a checked reader and writer, and ``load_mnist``."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gammabeta.data.dataset import Dataset, default_cache_dir, split
from gammabeta.data.limits import check_memory
from gammabeta.errors import ConfigError, DataError
from gammabeta.io import atomic_write

__all__ = ["read_idx", "write_idx", "load_mnist", "MIRRORS", "MD5"]

# IDX type codes -> big-endian dtypes (https://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES_TEXT = "0x08 ubyte, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64"
_CHUNK = 1 << 20
_MAX_DOWNLOAD = 100 * 2**20  # the largest published file (train images) is about 26 MiB
_MAX_RATIO = 1100  # deflate expands at most ~1032:1; a .gz claiming more is lying

_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
MD5: dict[str, dict[str, str]] = {  # published checksums of the .gz files
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
_KINDS = {"mnist": "mnist", "fashion": "fashion", "fashion-mnist": "fashion",
          "fashion_mnist": "fashion"}
_TITLE = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}


def _read_header(read, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """Parse magic and dims via ``read(n)``; return (dtype, dims, header bytes)."""
    magic = read(4)
    if len(magic) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(magic)} bytes); expected 4+ bytes")
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"{path}: bad magic number 0x{magic.hex().upper()}; expected an IDX file "
            "starting with 0x0000 followed by a dtype code and the number of dimensions"
        )
    code, ndim = magic[2], magic[3]
    if code not in _DTYPES:
        raise DataError(
            f"{path}: unsupported IDX dtype code 0x{code:02X}; expected one of {_CODES_TEXT}"
        )
    if ndim > 8:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions; expected 1 to 8 "
                        "(images are 3: count, rows, columns)")
    if ndim == 0:
        raise DataError(f"{path}: IDX header says 0 dimensions; expected at least 1")
    raw_dims = read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header: {ndim} dimensions need {4 * ndim} bytes of sizes, "
            f"got {len(raw_dims)}"
        )
    dims = struct.unpack(f">{ndim}I", raw_dims)
    if any(d >= 2**31 for d in dims) or math.prod(d for d in dims if d) >= 2**62:
        raise DataError(f"{path}: IDX dims {dims} are beyond any real data set (each must be "
                        "below 2**31 and their product below 2**62)")
    return np.dtype(_DTYPES[code]), dims, 4 + 4 * ndim


def _size_error(path: Path, got: int, need: int, dims: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise DataError if the data part holds ``got`` bytes instead of ``need``."""
    what = f"dims {dims} of {dtype.name} need {need:,} bytes"
    if got < need:
        raise DataError(f"{path}: truncated IDX data: {what} but the file holds {got:,}")
    if got > need:
        raise DataError(f"{path}: trailing data after the IDX array: {what}, found more")


def _check_memory(path: Path, need: int, dims: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise DataError if reading dims of dtype (the bytes, then the native copy) would not
    fit in the memory available."""
    check_memory(2 * need, f"{path}: IDX array of dims {dims} {dtype.name} (read and converted)")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian array of its dims."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such IDX file")
    with open(path, "rb") as f:
        is_gz = f.read(2) == b"\x1f\x8b"
    if not is_gz:
        with open(path, "rb") as f:
            dtype, dims, header = _read_header(f.read, path)
            need = math.prod(dims) * dtype.itemsize
            _size_error(path, path.stat().st_size - header, need, dims, dtype)  # before allocating
            _check_memory(path, need, dims, dtype)
            data = f.read(need)
        _size_error(path, len(data), need, dims, dtype)  # the file changed under us
    else:
        try:
            with gzip.open(path, "rb") as g:
                dtype, dims, header = _read_header(g.read, path)
                need = math.prod(dims) * dtype.itemsize
                most = _MAX_RATIO * path.stat().st_size + 4096 - header
                if need > most:  # deflate cannot expand more than ~1032:1
                    raise DataError(f"{path}: truncated IDX data: dims {dims} of {dtype.name} "
                                    f"need {need:,} bytes but a gzip file of "
                                    f"{path.stat().st_size:,} bytes holds at most {most:,}")
                _check_memory(path, need, dims, dtype)
                buf = bytearray()
                while len(buf) <= need:  # bounded: at most need + 1 bytes, in chunks
                    chunk = g.read(min(_CHUNK, need + 1 - len(buf)))
                    if not chunk:
                        break
                    buf += chunk
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"{path}: corrupt gzip stream ({exc}); expected a valid .gz") from exc
        _size_error(path, len(buf), need, dims, dtype)
        data = buf
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as IDX (gzip-compressed if the name ends in .gz), atomically."""
    path = Path(path)
    a = np.asarray(array)
    codes = {np.dtype(v).str[1:]: k for k, v in _DTYPES.items()}
    code = codes.get(a.dtype.str[1:]) if a.dtype.kind in "iuf" else None
    if code is None:
        raise DataError(f"{path}: cannot write dtype {a.dtype} as IDX; expected {_CODES_TEXT}")
    if not 1 <= a.ndim <= 255 or any(d >= 2**32 for d in a.shape):
        raise DataError(
            f"{path}: cannot write shape {a.shape} as IDX; expected 1 to 255 dims each < 2**32"
        )
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    data = a.astype(np.dtype(_DTYPES[code])).tobytes()

    def write(f) -> None:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as g:
                g.write(header)
                g.write(data)
        else:
            f.write(header)
            f.write(data)

    return atomic_write(path, write)


def _md5(path: Path) -> str:
    """Hex MD5 of a file."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, kind: str) -> None:
    """Check a file with a standard .gz name against its published MD5."""
    expected = MD5[kind].get(path.name)
    if expected is None:
        return
    actual = _md5(path)
    if actual != expected:
        raise DataError(
            f"{path}: MD5 {actual} does not match the published {_TITLE[kind]} checksum "
            f"{expected}; the file is corrupt or from another dataset "
            "(for files you made yourself, give the uncompressed IDX files, which are not "
            "checked, or from Python load_mnist(..., verify=False))"
        )


def _fetch(url: str, dest: Path, expected: str | None) -> None:
    """Download ``url`` to a temp file beside ``dest``, check its MD5, then rename it."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.md5(usedforsecurity=False)
        size = 0
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as r:
            while chunk := r.read(_CHUNK):
                size += len(chunk)
                if size > _MAX_DOWNLOAD:
                    raise DataError(f"{url}: larger than {_MAX_DOWNLOAD:,} bytes; refused")
                f.write(chunk)
                h.update(chunk)
        actual = h.hexdigest()
        if expected is not None and actual != expected:
            raise DataError(
                f"{dest.name} from {url}: MD5 {actual} does not match the published "
                f"checksum {expected}; the download was discarded"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _download(folder: Path, kind: str, mirrors: Sequence[str], verify: bool) -> list[str]:
    """Fetch the four .gz files missing from ``folder``; return the URLs used."""
    folder.mkdir(parents=True, exist_ok=True)
    used = []
    for stem in (s for pair in _SPLITS.values() for s in pair):
        name = stem + ".gz"
        dest = folder / name
        if dest.is_file():
            continue
        errors = []
        for base in mirrors:
            url = base if base.endswith("/") else base + "/"
            url += name
            try:
                _fetch(url, dest, MD5[kind][name] if verify else None)
            except DataError as exc:
                errors.append(str(exc))
            except (urllib.error.URLError, http.client.HTTPException, OSError,
                    ValueError) as exc:
                errors.append(f"{url}: {exc}")
            else:
                used.append(url)
                break
        else:
            raise DataError(
                f"could not download {name} into {folder} from any mirror: " + "; ".join(errors)
            )
    return used


def _find_splits(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Map "train"/"test" to (images, labels) paths found in ``folder`` (.gz or raw)."""
    found = {}
    for part, stems in _SPLITS.items():
        paths = []
        for stem in stems:
            hits = [folder / n for n in (stem + ".gz", stem) if (folder / n).is_file()]
            paths.append(hits[0] if hits else None)
        if all(paths):
            found[part] = (paths[0], paths[1])
        elif any(paths):
            have, lack = (stems[0], stems[1]) if paths[0] else (stems[1], stems[0])
            raise DataError(
                f"{folder}: found {have} but not {lack}[.gz]; expected both files of the "
                f"{part} split"
            )
    return found


def _load_pair(images: Path, labels: Path, kind: str, verify: bool) -> tuple[np.ndarray, ...]:
    """Read one split's images and labels; return x (N, 1, H, W) float32 and y int64."""
    if verify:
        _verify(images, kind)
        _verify(labels, kind)
    img, lbl = read_idx(images), read_idx(labels)
    if img.ndim != 3 or img.dtype != np.uint8:
        raise DataError(
            f"{images}: holds {img.dtype} of shape {img.shape}; expected uint8 (N, rows, cols)"
        )
    if lbl.ndim != 1 or lbl.dtype.kind not in "iu":
        raise DataError(f"{labels}: holds {lbl.dtype} of shape {lbl.shape}; expected 1-D uint8")
    if len(lbl) != len(img):
        raise DataError(
            f"{labels}: {len(lbl):,} labels but {images.name} has {len(img):,} images; "
            "expected the same number"
        )
    if len(lbl) and (lbl.min() < 0 or lbl.max() > 9):
        raise DataError(
            f"{labels}: labels span [{lbl.min()}, {lbl.max()}]; expected classes 0 to 9"
        )
    x = (img.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return x, lbl.astype(np.int64)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    kind: str = "mnist",
    download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    test_fraction: float = 1 / 6,
    mirrors: Sequence[str] | None = None,
    verify: bool = True,
) -> Dataset:
    """Load MNIST or Fashion-MNIST from IDX files as (N, 1, 28, 28) float32 in [0, 1].

    Looks in ``data_dir`` (default: the download folder ``cache_dir/<kind>``) for the
    standard file names, raw or ``.gz``. If only one split is there, it is split with
    ``seed`` (``test_fraction`` held out) and ``Dataset.note`` says so. With
    ``download=True`` and a split missing, the four ``.gz`` files are fetched from
    ``mirrors`` (default ``MIRRORS[kind]``) into ``cache_dir/<kind>`` and checked against
    the published MD5s. ``verify`` also checks files carrying the standard ``.gz`` names;
    ``verify=False`` skips every checksum (for files you wrote yourself).
    """
    if kind not in _KINDS:
        raise ConfigError(f"load_mnist: unknown kind {kind!r}; expected one of {sorted(_KINDS)}")
    kind = _KINDS[kind]
    name = "mnist" if kind == "mnist" else "fashion-mnist"
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dl_dir = cache / name
    folder = Path(data_dir).expanduser() if data_dir is not None else dl_dir
    found = _find_splits(folder) if folder.is_dir() else {}
    source = f"{_TITLE[kind]} from {folder}"
    if len(found) < 2 and download:
        bases = (mirrors,) if isinstance(mirrors, str) else tuple(mirrors or MIRRORS[kind])
        urls = _download(dl_dir, kind, bases, verify)
        folder, found = dl_dir, _find_splits(dl_dir)
        source = f"{_TITLE[kind]} from {dl_dir}"
        if urls:
            source += f" (downloaded {len(urls)} files from {urls[0].rsplit('/', 1)[0]}/)"
    if not found:
        train, test = _SPLITS["train"], _SPLITS["test"]
        where = f"{folder} does not exist" if not folder.exists() else f"none found in {folder}"
        raise DataError(
            f"no {_TITLE[kind]} files: {where}; expected {test[0]} and {test[1]} (raw or "
            f".gz; with {train[0]} and {train[1]} too if you have them, else the test images "
            f"are split into train and test); give the folder holding them (--data-dir DIR, "
            f"data_dir= in Python) or fetch them into {dl_dir} (--download, download=True)"
        )
    parts = {p: _load_pair(*paths, kind, verify) for p, paths in found.items()}
    if len(parts) == 2:
        (x_tr, y_tr), (x_te, y_te) = parts["train"], parts["test"]
        note = source
    else:
        (part, (x, y)), = parts.items()
        x_tr, y_tr, x_te, y_te = split(x, y, test_fraction, np.random.default_rng(seed))
        which = "test" if part == "test" else "training"
        note = (
            f"only the {len(x):,}-image {which} split was found in {folder}; "
            f"split {len(x_tr):,}/{len(x_te):,} with seed {seed}"
        )
    return Dataset(name, x_tr, y_tr, x_te, y_te, 10, note).validate()
