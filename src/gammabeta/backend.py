"""The array namespace used by every layer: NumPy today, CuPy later, chosen from the arrays.

Layers never reach for a global ``np``: they ask ``xp = namespace(x)`` and do their math with
``xp``. Adding a GPU backend means teaching :func:`namespace` about CuPy arrays, nothing more.
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy

from . import _malloc

_malloc.tune()  # freed array buffers stay in the heap for the next step (see _malloc)

__all__ = ["namespace", "to_numpy", "compute_dtype", "is_floating", "kernels", "set_jit",
           "jit_mode", "jit", "kernel_info", "accumulate_new", "kernels_compiled",
           "set_compile_notice", "norm_kernels", "warm_kernels",
           "set_kernel_threads", "kernel_threads", "kernel_threads_limit"]


def namespace(*arrays):
    """Return the array module (``numpy`` or ``cupy``) that owns ``arrays``."""
    for a in arrays:
        if type(a) is numpy.ndarray:  # the fast path: every layer call asks
            continue
        mod = type(a).__module__.split(".")[0]
        if mod == "cupy":  # pragma: no cover - no GPU backend yet
            import cupy

            return cupy
    return numpy


def to_numpy(a):
    """Return ``a`` as a NumPy array (a no-op for NumPy arrays)."""
    if hasattr(a, "get") and type(a).__module__.split(".")[0] == "cupy":  # pragma: no cover
        return a.get()
    return numpy.asarray(a)


def compute_dtype(dtype):
    """The dtype in which statistics are accumulated: float32 or wider (float16 -> float32)."""
    return numpy.promote_types(dtype, numpy.float32)


def is_floating(dtype) -> bool:
    """True for real floating-point dtypes."""
    if isinstance(dtype, numpy.dtype):  # the fast path (this runs on every layer call)
        return dtype.kind == "f"
    return numpy.issubdtype(dtype, numpy.floating)


def accumulate_new(param, g) -> None:
    """``param.accumulate(g)`` for a gradient array ``g`` that nothing else references.

    On the first accumulation ``g`` itself becomes ``param.grad`` (``Parameter.accumulate``
    would copy it); afterwards it is added as usual.
    """
    if param.requires_grad and param.grad is None and g.dtype == param.data.dtype \
            and g.shape == param.data.shape:
        param.grad = g
    else:
        param.accumulate(g)


def erf(x):
    """Elementwise error function in the array's own namespace (used by exact GELU)."""
    xp = namespace(x)
    if xp is numpy:
        from scipy.special import erf as _erf

        return _erf(x)
    import cupyx.scipy.special  # pragma: no cover

    return cupyx.scipy.special.erf(x)  # pragma: no cover


# ----- optional JIT kernels (Numba), a NumPy-only fast path --------------------------------------
# Mode: "auto" (default: kernels for arrays of at least KERNEL_MIN_SIZE elements when numba is
# installed), "force" (kernels for every size: lets tests run the JIT path on small arrays) or
# "off" (pure NumPy). Set with the environment variable GAMMABETA_JIT (0/off, 1/auto, force) or
# set_jit()/jit(). Every kernel has a NumPy twin computing the same formulas.
# Below 2**15 elements the kernels do not pay for loading Numba (and, once per install, for
# compiling them): the default MLP (BN on 100 × 256) trains 100 epochs in 19.5–20.0 s with them
# and 18.0–19.5 s without (2 cores, whole `gammabeta train` processes, alternating); the CNN's
# BN inputs (100 × 32 × 40 and up) are 3–5× faster per call with them.
KERNEL_MIN_SIZE = 32768
# BatchNorm over positions as well as the batch ((N, C, L) with L > 1, convolutional nets)
# reduces over two axes, where the NumPy twin is slowest: forward+backward on (100, 32, 5)
# took 0.74 ms with NumPy and 0.11 ms with the kernels, on (64, 16, 4) 0.23 and 0.08 ms.
# Such a net's larger layers load Numba anyway, so its small ones use the kernels from here.
SPATIAL_KERNEL_MIN_SIZE = 2**12
# In evaluation BatchNorm is one affine pass, called a few times per epoch (the validation and
# test sets in batches of 1,000): the kernels save ~1 ms per call on 2**18 elements, less than
# loading Numba costs a process, so below this size evaluation runs the NumPy twin (and a
# short run that only evaluates, or trains below KERNEL_MIN_SIZE, never loads Numba).
EVAL_KERNEL_MIN_SIZE = 2**18
_MODES = {"0": "off", "off": "off", "false": "off", "no": "off", "1": "auto", "auto": "auto",
          "on": "auto", "true": "auto", "yes": "auto", "force": "force", "always": "force"}
_jit_mode = _MODES.get(os.environ.get("GAMMABETA_JIT", "auto").strip().lower(), "auto")
_kernel_module = None  # None: not tried yet; False: unavailable
_norm_kernel_module = None  # the same for LayerNorm/GroupNorm/InstanceNorm (nn._norm_kernels)


def set_jit(mode) -> str:
    """Set the JIT mode ("auto", "force", "off"; also True/False); returns the previous one."""
    global _jit_mode
    key = {True: "auto", False: "off"}.get(mode, mode) if isinstance(mode, bool) else mode
    new = _MODES.get(str(key).strip().lower())
    if new is None:
        from .errors import ConfigError

        raise ConfigError(f"set_jit: mode={mode!r}; expected 'auto', 'force' or 'off'")
    prev, _jit_mode = _jit_mode, new
    return prev


def jit_mode() -> str:
    """The current JIT mode: "auto", "force" or "off"."""
    return _jit_mode


@contextlib.contextmanager
def jit(mode):
    """Context manager: run the block with JIT mode ``mode`` ("auto", "force", "off")."""
    prev = set_jit(mode)
    try:
        yield
    finally:
        set_jit(prev)


_compile_notice = None  # called once before kernels are loaded with a cold cache
_kernel_threads = None  # at most this many threads for the kernels (None: Numba's count)


def set_kernel_threads(n: int | None) -> None:
    """Run the kernels on at most ``n`` threads (``None``: Numba's thread count); the
    training loop's :class:`~gammabeta.autothreads.ThreadTuner` sets it."""
    global _kernel_threads
    _kernel_threads = None if n is None else max(1, int(n))


def kernel_threads_limit() -> int | None:
    return _kernel_threads


def kernel_threads(available: int) -> int:
    """Threads a kernel may use out of ``available`` (Numba's count)."""
    return max(1, available if _kernel_threads is None else min(available, _kernel_threads))


def kernels_compiled() -> bool:
    """Whether Numba's on-disk cache already holds the BatchNorm kernels.

    If not, the first layer input large enough for them compiles them for this machine:
    30 s to a minute on 2 cores, once per install (``gammabeta train`` announces it).
    """
    import sys
    from pathlib import Path

    cache = Path(__file__).parent / "nn" / "__pycache__"
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"  # Numba's index: one per Python
    return all(any(cache.glob(f"_kernels.{f}-*.{tag}.nbi")) for f in ("_forward", "_backward"))


def set_compile_notice(fn):
    """Have ``fn()`` called (once) just before the kernels are first loaded when they still
    have to be compiled, so a command can say why its first step takes a minute; returns
    the previous callback. ``None`` removes it."""
    global _compile_notice
    prev, _compile_notice = _compile_notice, fn
    return prev


_KERNEL_SOURCES = ("_kernels.py", "_threads.py", "_colform.py", "_rowform.py",
                   "_norm_kernels.py")


def _check_kernel_cache(here=None) -> None:
    """Drop Numba's cached kernels when any kernel source changed since they were compiled.

    Numba checks each cached function against its own file only, so after an update (a
    ``git pull`` on an editable install) a kernel could link stale code compiled from another
    file — the process then crashed inside LLVM. A hash of every kernel source is kept next
    to the cache; a different hash empties it (the next call recompiles).
    """
    import hashlib
    from pathlib import Path

    here = Path(__file__).parent / "nn" if here is None else Path(here)
    h = hashlib.sha256()
    for name in _KERNEL_SOURCES:
        h.update(name.encode() + (here / name).read_bytes())
    cache, digest = here / "__pycache__", h.hexdigest()
    stamp = cache / "gammabeta-kernels.sha256"
    try:
        if stamp.read_text() == digest:
            return
    except OSError:
        pass
    try:
        for f in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        tmp = cache / f".{stamp.name}.{os.getpid()}.tmp"
        tmp.write_text(digest)
        os.replace(tmp, stamp)
    except OSError:  # a read-only install: Numba then compiles in memory, as it would anyway
        pass


def _load_kernels():
    global _kernel_module, _compile_notice
    if _kernel_module is None:
        _check_kernel_cache()
        if _compile_notice is not None and not kernels_compiled():
            notice, _compile_notice = _compile_notice, None
            notice()
        try:
            from .nn import _kernels

            _kernel_module = _kernels
        except ImportError:  # numba not installed: the NumPy path
            _kernel_module = False
    return _kernel_module or None


def kernels(xp, size: int, min_size: int | None = None):
    """The compiled-kernel module for a NumPy computation on ``size`` elements, or ``None``
    (in "auto" mode below ``min_size``, by default :data:`KERNEL_MIN_SIZE`).

    The rule depends on the size only, not on whether the kernels are loaded already (they
    are faster on small inputs too: BatchNorm1d forward+backward on (100, 32, 10) 0.15 ms
    against 0.85 ms for the NumPy twin), because the two round differently and a run must not
    depend on what else the process ran before it (a resumed run continues bit for bit)."""
    if xp is not numpy or _jit_mode == "off":
        return None
    if _jit_mode == "auto" and size < (KERNEL_MIN_SIZE if min_size is None else min_size):
        return None
    return _load_kernels()


def _load_norm_kernels():
    global _norm_kernel_module, _compile_notice
    if _norm_kernel_module is None:
        _check_kernel_cache()
        if _compile_notice is not None and not _norm_kernels_compiled():
            notice, _compile_notice = _compile_notice, None
            notice()
        try:
            from .nn import _norm_kernels

            _norm_kernel_module = _norm_kernels
        except ImportError:  # numba not installed: the NumPy path
            _norm_kernel_module = False
    return _norm_kernel_module or None


def _norm_kernels_compiled() -> bool:
    """Whether Numba's on-disk cache holds the LayerNorm/GroupNorm/InstanceNorm kernels."""
    import sys
    from pathlib import Path

    cache = Path(__file__).parent / "nn" / "__pycache__"
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    return all(any(cache.glob(f"_norm_kernels.{f}-*.{tag}.nbi"))
               for f in ("_forward_rows", "_backward_rows"))


def norm_kernels(xp, size: int, min_size: int | None = None):
    """The compiled kernels of LayerNorm, GroupNorm and InstanceNorm
    (:mod:`gammabeta.nn._norm_kernels`) for a NumPy computation on ``size`` elements, or
    ``None``: the same rules as :func:`kernels` (mode, ``min_size``)."""
    if xp is not numpy or _jit_mode == "off":
        return None
    if _jit_mode == "auto" and size < (KERNEL_MIN_SIZE if min_size is None else min_size):
        return None
    return _load_norm_kernels()


_optim_kernel_module = None  # the fused optimizer update (optim._kernels), loaded on demand


def optim_kernels(xp):
    """The fused optimizer kernels (:mod:`gammabeta.optim._kernels`), or ``None``.

    They give bit for bit the NumPy update, so unlike :func:`kernels` the choice may depend
    on the process: in "auto" mode they are used once Numba is loaded anyway (a layer's
    kernels ran), so that a run that never needed Numba does not pay to load it. Then they
    are faster at every size: one call instead of fourteen NumPy passes per parameter (the
    MNIST-1D CNN's 26 small tensors: 0.9 ms a step in NumPy), one pass over memory for the
    large ones (1.86 M values: 3.2 ms against 13.7 ms).
    """
    global _optim_kernel_module
    if xp is not numpy or _jit_mode == "off":
        return None
    if _jit_mode == "auto" and not (_kernel_module or _norm_kernel_module):
        return None
    if _optim_kernel_module is None:
        try:
            from .optim import _kernels

            _optim_kernel_module = _kernels
        except ImportError:
            _optim_kernel_module = False
    return _optim_kernel_module or None


def kernel_info() -> str:
    """A one-line description of the kernel path in use (for benchmarks and bug reports)."""
    if _jit_mode == "off":
        return "NumPy only (GAMMABETA_JIT=off)"
    mod = _load_kernels()
    if mod is None:
        return "NumPy only (numba not installed)"
    import numba

    return (f"numba {numba.__version__} kernels for BatchNorm ({_jit_mode}; "
            f"{mod.threads()} threads for inputs of {mod.PARALLEL_MIN} elements or more)")


def warm_kernels() -> float:
    """Compile every kernel the layers use in float32 for this machine now, or load them from
    Numba's on-disk cache when they are there; returns the seconds it took (0 without Numba).

    The Makefile's install step runs this, so that a first ``gammabeta train`` does not spend
    its first minute compiling: BatchNorm's kernels in both loop forms, on one thread and
    split over the worker threads, in training and evaluation; LayerNorm on short and long
    rows; GroupNorm; the fused AdamW update.
    """
    import time

    t0 = time.perf_counter()
    if _load_kernels() is None or _load_norm_kernels() is None:
        return 0.0
    from . import nn
    from .nn import _threads

    x = numpy.random.default_rng(0).standard_normal((64, 8, 128), dtype=numpy.float32)
    saved = _threads.PARALLEL_MIN
    try:
        for parallel_min in (saved, 1):  # one thread, then the worker pool
            _threads.PARALLEL_MIN = parallel_min
            for shape in ((64, 8, 128), (64, 1024)):
                bn = nn.BatchNorm1d(shape[1])
                for _ in ("train", "eval"):
                    with jit("force"):
                        bn.backward(bn(x.reshape(shape)))
                    bn.eval()
    finally:
        _threads.PARALLEL_MIN = saved
    for layer, shape in ((nn.LayerNorm(64), (128, 64)), (nn.LayerNorm(1024), (64, 1024)),
                         (nn.GroupNorm(4, 8), (16, 8, 64))):
        with jit("force"):
            layer.backward(layer(x.reshape(-1)[:math.prod(shape)].reshape(shape)))
    if optim_kernels(numpy) is not None:  # the fused AdamW update (float32)
        k, f = _optim_kernel_module, numpy.float32
        a = [numpy.ones(4, numpy.float32) for _ in range(4)]
        k.adam_update(*a, f(1), f(0), f(0.1), f(0.9), True, f(0.999), f(0.001), f(1), f(1e-8),
                      f(1e-3))
    return time.perf_counter() - t0
