"""Checkpoints as safetensors files, written atomically; loading never executes code.

A checkpoint holds a state dict under PyTorch's keys (``"0.weight"``, ``"1.running_mean"``,
``"1.num_batches_tracked"``) plus string metadata (e.g. the JSON of the model config), so the
same file loads into ``torch.nn`` through safetensors' PyTorch reader (``load_file`` of the
``safetensors.torch`` module) and ``load_state_dict``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from .errors import CheckpointError, OutputError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "save_checkpoint",
           "load_checkpoint"]

_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (not thread-safe, but brief)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[IO[bytes]], object], *, parents: bool = True) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, fsync, then rename it over ``path``.

    A crash at any moment leaves either the old file or the new one, never half a file; on
    any error the temp file is removed. The new file gets the mode the old one had, or
    ``0o666`` less the umask, as ``open()`` would give; the folder is fsynced after the
    rename. ``parents=False`` refuses a missing folder instead of creating it (for paths a
    user typed). OS errors become :class:`OutputError` naming the path.
    """
    path = Path(path)
    if not parents and not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist "
                          "(create it first)")
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path, data: bytes, *, parents: bool = True) -> Path:
    """:func:`atomic_write` of a bytes object."""
    return atomic_write(path, lambda f: f.write(data), parents=parents)


def atomic_write_text(path, text: str, *, parents: bool = True) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), parents=parents)


def save_checkpoint(path, state_dict, metadata: dict | None = None) -> Path:
    """Save a state dict (NumPy arrays) and JSON-able metadata as one safetensors file."""
    from safetensors.numpy import save

    tensors = {}
    for k, v in state_dict.items():
        a = np.asarray(v)
        if a.dtype.kind not in "fiub":
            raise CheckpointError(f"cannot save {path}: key {k!r} has dtype {a.dtype}")
        tensors[k] = a if a.flags.c_contiguous else a.copy(order="C")  # keeps 0-d shape
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    return atomic_write_bytes(path, save(tensors, metadata=meta))


def load_checkpoint(path) -> tuple[dict, dict]:
    """Return ``(state_dict, metadata)`` from a safetensors file, refusing anything else.

    Pickles (``torch.save`` files) are recognised and refused with an explanation; a truncated
    file or a header that points outside the file gives :class:`CheckpointError`.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    safetensors_like = 0 < n <= _MAX_HEADER and 8 + n <= len(data) and data[8:9] == b"{"
    # a safetensors header length of 640 + 65,536·k bytes starts with the bytes of a pickle's
    # protocol-2 opcode (80 02): only a file that cannot be safetensors is called a pickle
    if not safetensors_like and (data[:2] in _PICKLE_MAGIC or data[:4] == _ZIP_MAGIC):
        raise CheckpointError(
            f"{path} looks like a pickle or torch.save() file; gammabeta never loads pickles "
            "(they can run code). Save it as safetensors instead (safetensors.torch.save_file)"
        )
    if len(data) < 8:
        raise CheckpointError(f"{path}: {len(data)} bytes, too short for a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > _MAX_HEADER or 8 + n > len(data):
        raise CheckpointError(f"{path}: the safetensors header claims {n} bytes but the file "
                              f"has {len(data) - 8} after the length field (truncated?)")
    try:
        header = json.loads(data[8:8 + n])
        tensors = load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    except (KeyError, TypeError) as e:  # e.g. a bfloat16 tensor, which NumPy has no dtype for
        raise CheckpointError(f"{path}: holds a tensor NumPy cannot read ({e}); expected "
                              "float16/32/64 or integer tensors") from None
    metadata = dict(header.get("__metadata__") or {}) if isinstance(header, dict) else {}
    return tensors, metadata
