"""Threads that pay at the machine's current load: the training loop times its own steps.

On a quiet machine a step's matrix products (BLAS) and kernels split over every core run
fastest when the layers are large. When other programs share the cores, a thread that waits
for a peer the OS has descheduled wastes its time slice, and OpenBLAS waits by spinning:
measured on this project's 2-core VM, a (256, 784) @ (784, 1024) float32 product took
3.9 ms on two threads when quiet, and with one busy process on the machine 32 ms on two
threads against 6.8 ms on one (PyTorch's: 16 ms and 8 ms). Small layers (the default MLP's
100 × 256 products) can be faster on one thread even on a quiet machine.

So :class:`ThreadTuner` measures instead of guessing: it runs a few steps at each candidate
thread count (all cores, then fewer), keeps the count whose steps were fastest — the fewest
threads within 5% of the best, since a thread that does not pay only takes a core from
someone else — and measures again every few seconds, as the load changes.

The thread count can change the rounding of a matrix product (OpenBLAS splits work
differently), so a run is bit-for-bit reproducible only at a fixed count:
``GAMMABETA_THREADS=N`` fixes it (``off``: leave the libraries' own settings, no tuning).
The studies and data-parallel workers fix their own counts and are not tuned.
"""

from __future__ import annotations

import os
import statistics
import time

__all__ = ["ThreadTuner", "set_threads", "get_threads", "threads_setting", "usable_cores"]


def threads_setting() -> str | int:
    """``GAMMABETA_THREADS``: ``"auto"`` (the default), ``"off"`` or a thread count."""
    raw = os.environ.get("GAMMABETA_THREADS", "auto").strip().lower()
    if raw in ("auto", "off", ""):
        return raw or "auto"
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        from .errors import ConfigError

        raise ConfigError(f"GAMMABETA_THREADS={raw!r}; expected auto, off or a thread count "
                          "such as 1")
    return n


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


class _Blas:
    """The BLAS libraries NumPy loaded (through threadpoolctl), to set their thread count in
    a few µs; empty when threadpoolctl is missing."""

    def __init__(self):
        try:
            from threadpoolctl import ThreadpoolController

            self.libs = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # noqa: BLE001 - no threadpoolctl or an unknown BLAS: leave it
            self.libs = []

    def get(self) -> list[int]:
        return [lib.get_num_threads() for lib in self.libs]

    def set(self, counts) -> None:
        for lib, n in zip(self.libs, counts, strict=True):
            lib.set_num_threads(n)


_blas = None


def _blas_libs() -> _Blas:
    global _blas
    if _blas is None:
        _blas = _Blas()
    return _blas


def get_threads() -> tuple:
    """The current settings (BLAS counts, gammabeta's kernel limit), for :func:`set_threads`."""
    from . import backend

    return tuple(_blas_libs().get()), backend.kernel_threads_limit()


def set_threads(n) -> None:
    """Use ``n`` threads for NumPy's BLAS and gammabeta's kernels, or restore settings
    returned by :func:`get_threads`."""
    from . import backend

    if isinstance(n, tuple):
        blas, kernels = n
        _blas_libs().set(blas)
        backend.set_kernel_threads(kernels)
    else:
        _blas_libs().set([n] * len(_blas_libs().libs))
        backend.set_kernel_threads(n)


class ThreadTuner:
    """Chooses the thread count of the training steps by timing them.

    Call :meth:`tick` at the start of every step and :meth:`rest` when the loop does
    something else (an evaluation, a checkpoint), then :meth:`close`. A *probe* runs
    ``probe_steps`` steps at each count in ``counts`` (the first step after a switch is not
    counted); the count whose median step was quickest wins — the fewest threads within
    ``tolerance`` of it — and is kept for ``hold_seconds`` before the next probe. The median,
    not the fastest step: two threads' steps on a busy VM vary more, and their occasional
    fast step won probes for a count that was slower on the whole (the MNIST-1D CNN: median
    step 16.7 ms on one thread, 19.3 ms on two; fastest 12.0 and 14.6 ms).

    Parameters
    ----------
    counts : sequence of int, optional
        Candidate thread counts; default: the BLAS's own count (all cores), half of it, 1.
    probe_steps : int, default 3
    hold_seconds : float, default 5.0
    tolerance : float, default 0.05
    clock : callable, default ``time.perf_counter``
    apply : callable, default :func:`set_threads`
        ``apply(n)`` switches to ``n`` threads; :meth:`close` restores what
        :func:`get_threads` returned when the tuner was made.
    """

    def __init__(self, counts=None, probe_steps: int = 3, hold_seconds: float = 5.0,
                 tolerance: float = 0.05, clock=time.perf_counter, apply=set_threads):
        self._initial = get_threads() if apply is set_threads else None
        if counts is None:
            top = max(self._initial[0], default=usable_cores())
            counts = (top, max(1, top // 2), 1)
        self.counts = sorted(set(int(c) for c in counts), reverse=True)
        self.probe_steps, self.hold, self.tol = probe_steps, hold_seconds, tolerance
        self.clock, self.apply = clock, apply
        self.steps = {c: 0 for c in self.counts}  # steps run at each count
        self.current = self.counts[0]
        self._last = None  # start of the step in progress
        self._plan: list[int] = []  # counts still to probe, one entry per probe step
        self._probed: dict[int, list[float]] = {}  # step times of the probe in progress
        self._hold_until = -1.0
        self._switched = True

    @classmethod
    def from_env(cls) -> ThreadTuner | None:
        """A tuner for ``GAMMABETA_THREADS=auto`` on more than one core; a fixed count is set
        here and returns ``None``, as does ``off``."""
        setting = threads_setting()
        if setting == "off":
            return None
        if setting != "auto":
            set_threads(setting)
            return None
        return cls() if usable_cores() > 1 else None

    def tick(self) -> None:
        """A step starts (and the one before it, if any, ended): switch counts as the
        schedule says."""
        now = self.clock()
        self._finish(now)
        if not self._plan and now >= self._hold_until:
            if self._probed:  # a probe just finished: keep the winner
                typical = {c: statistics.median(ts) for c, ts in self._probed.items()}
                fastest = min(typical.values())
                self._use(min(c for c, t in typical.items() if t <= fastest * (1 + self.tol)))
                self._probed = {}
                self._hold_until = now + self.hold
            elif len(self.counts) > 1:  # time for a probe
                self._plan = [c for c in self.counts for _ in range(self.probe_steps + 1)]
        if self._plan and self._plan[0] != self.current:
            self._use(self._plan[0])
        self._last = self.clock()

    def rest(self) -> None:
        """The step in progress ended, and the loop does something else (an evaluation, a
        checkpoint) until the next :meth:`tick`."""
        self._finish(self.clock())

    def _finish(self, now: float) -> None:
        if self._last is None:
            return
        self.steps[self.current] += 1
        if self._plan:
            if not self._switched:  # the first step after a switch pays for the switch
                self._probed.setdefault(self.current, []).append(now - self._last)
            self._plan.pop(0)
        self._switched = False
        self._last = None

    def _use(self, n: int) -> None:
        if n != self.current:
            self.apply(n)
            self.current = n
            self._switched = True

    def close(self) -> None:
        """Back to the thread counts of before the tuner."""
        if self._initial is not None:
            set_threads(self._initial)

    def summary(self) -> dict:
        """Steps run at each thread count (for the run's metrics)."""
        return {str(c): n for c, n in self.steps.items() if n}
