"""Keep freed array buffers in the process heap (glibc), instead of returning them to the OS.

A training step allocates and frees the same few-megabyte temporaries hundreds of times. With
glibc's defaults the freed top of the heap goes back to the kernel as soon as it passes the
*trim threshold* (128 KiB, adapted upward only to the largest buffer freed from mmap), so the
next step's buffers arrive as fresh pages and every first write faults: on this project's
2-core machine the MNIST-1D CNN's step took 27.8–31.4 ms so, and 16.0 ms with the thresholds
below (the col2im of one convolution alone: 3.7 ms against 0.6 ms). PyTorch reuses its
buffers in its own allocator; NumPy relies on malloc's.

:func:`tune` raises the trim threshold to :data:`TRIM_BYTES` and fixes the mmap threshold at
:data:`MMAP_BYTES` (buffers above it are still mapped and unmapped on their own), through
``mallopt(3)``. It runs when :mod:`gammabeta.backend` is imported; ``GAMMABETA_MALLOC=off``,
or malloc settings of the process's own (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``), leave
malloc as it is. Elsewhere than glibc it does nothing. The cost: up to
:data:`TRIM_BYTES` of freed heap stays with the process (it is reused by the next step).
"""

from __future__ import annotations

import os
import sys

__all__ = ["tune", "MMAP_BYTES", "TRIM_BYTES"]

MMAP_BYTES = 32 << 20
TRIM_BYTES = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
_tuned = None


def _user_set() -> bool:
    """Whether the process was started with malloc settings of its own (glibc reads them at
    start-up): those are left as they are."""
    return "GLIBC_TUNABLES" in os.environ or any(
        k in os.environ for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                                  "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"))


def tune() -> bool:
    """Set glibc's trim and mmap thresholds once per process; whether they are set."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("GAMMABETA_MALLOC", "").strip().lower() in ("off", "0", "no", "false") \
            or not sys.platform.startswith("linux") or _user_set():
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl's mallopt is a no-op
            return False
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
    return _tuned
