"""Limits every data reader applies before it allocates: memory available, number of classes.

A data file declares its array sizes in a header (``.npy`` members, IDX dims) before the
data; the readers check a declared size against the real file size first, then against the
memory this machine has free (:func:`check_memory`), and only then allocate.
"""

from __future__ import annotations

from gammabeta.errors import DataError

__all__ = ["MAX_CLASSES", "available_memory", "check_memory"]

MAX_CLASSES = 10_000  # labels are class indices 0..K-1 with K <= MAX_CLASSES (raise per call)
_MEMINFO = "/proc/meminfo"


def available_memory(meminfo: str = _MEMINFO) -> int | None:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo), or None if unknown."""
    try:
        with open(meminfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    parts = line.split()
                    if len(parts) >= 2 and parts[1].isdigit():
                        unit = parts[2].lower() if len(parts) > 2 else "b"
                        scale = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}.get(unit, 1)
                        return int(parts[1]) * scale
                    return None
    except OSError:
        return None
    return None


def check_memory(nbytes: int, what: str) -> None:
    """Raise DataError if ``nbytes`` (what ``what`` would allocate) exceeds available memory."""
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise DataError(f"{what} needs {nbytes:,} bytes but only {avail:,} bytes of memory are "
                        f"available (MemAvailable in {_MEMINFO}); refused")
