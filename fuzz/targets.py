"""Fuzz targets shared by the atheris fuzzer and the hypothesis tests: untrusted bytes in.

Each target writes the bytes to a file with the loader's expected suffix and loads it. The
contract: either a value comes back or a gammabeta error (``GammabetaError``) is raised; any
other exception, a hang or an outsized allocation is a bug.
"""

from __future__ import annotations

import os
import tempfile

from gammabeta.data.files import load_file
from gammabeta.data.idx import read_idx
from gammabeta.errors import GammabetaError
from gammabeta.io import load_checkpoint


def _load_study(path):
    """The study TOML parser (imported lazily: it pulls in the study package)."""
    from gammabeta.study.spec import load_spec

    return load_spec(path)


TARGETS = {
    "idx": (".idx", read_idx),
    "idx.gz": ("-idx1-ubyte.gz", read_idx),
    "npz": (".npz", load_file),
    "csv": (".csv", load_file),
    "safetensors": (".safetensors", load_checkpoint),
    "toml": (".toml", _load_study),
}
NAMES = sorted(TARGETS)


def run_target(name: str, data: bytes) -> None:
    """Load ``data`` with the loader named ``name``; re-raise anything but GammabetaError."""
    suffix, loader = TARGETS[name]
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="gbfuzz-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            loader(path)
        except GammabetaError:
            pass
    finally:
        os.unlink(path)
