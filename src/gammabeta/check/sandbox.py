"""The parent side of the sandbox: one child process per check run, every call time-limited.

The child is ``python -m gammabeta.check.child`` started with :mod:`subprocess` (no re-import of
the caller's ``__main__``, unlike multiprocessing's spawn). Requests and replies are npz frames
on its stdin/stdout (:mod:`gammabeta.check.wire`); a reader thread turns replies into a queue so
that every call can wait with a timeout. A call that runs past the limit kills the child and
raises :class:`UserFailure` ("timed out after 20 s in forward(...)"); the next call starts a
fresh child. A child that dies (segfault, ``os._exit``) is reported with its exit status and the
last lines it wrote to stderr.

The child runs in a session of its own, and every kill is of its whole process group, so code
that forks leaves no orphans; its address space is limited (``memory`` bytes, ``RLIMIT_AS``),
so a runaway allocation ends as "ran out of memory" instead of swapping the machine; and no wait
is unbounded: a child that closes its pipes and keeps running is killed like one that hangs.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from . import wire
from .options import CHILD_ENV

__all__ = ["Sandbox", "UserFailure"]

_PKG_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding gammabeta/


class UserFailure(Exception):
    """The user's code raised, hung, crashed or returned something unusable.

    ``kind`` is one of ``raised``, ``timeout``, ``crashed``, ``bad_return``, ``config``;
    ``message`` is a sentence for the report and ``tail`` the last traceback lines.
    """

    def __init__(self, kind: str, message: str, tail=None, where: str = "", etype: str = ""):
        super().__init__(message)
        self.kind, self.message, self.tail = kind, message, list(tail or [])
        self.where, self.etype = where, etype


class Sandbox:
    """A restartable child process that runs the user's layer.

    Parameters
    ----------
    load : dict
        The ``load`` request (file or module, name, kind, attribute names, init args).
    timeout : float
        Seconds each call may take, import included.
    """

    def __init__(self, load: dict, timeout: float = 20.0, memory: int | None = 4 * 2**30):
        self.load = dict(load)
        self.timeout = float(timeout)
        self.memory = memory
        self.proc = None
        self.info: dict = {}
        self.successes = 0
        self.timeouts = 0
        self._replies: queue.Queue = queue.Queue()
        self._stderr: collections.deque = collections.deque(maxlen=40)

    # ----- lifecycle --------------------------------------------------------------------------
    def _spawn(self) -> None:
        """Start ``python -m gammabeta.check.child`` and its reader threads."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([_PKG_ROOT] + ([env["PYTHONPATH"]]
                                                          if env.get("PYTHONPATH") else []))
        env[CHILD_ENV] = "1"
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        env["GAMMABETA_JIT"] = "off"  # the reference is NumPy; no kernel compilation here
        if self.memory:
            env["GAMMABETA_CHECK_MEMORY"] = str(int(self.memory))
        self._replies = queue.Queue()
        self._stderr.clear()
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "gammabeta.check.child"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True)
        threading.Thread(target=self._read_replies, args=(self.proc, self._replies),
                         daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()

    @staticmethod
    def _read_replies(proc, q) -> None:
        """Turn the child's stdout into reply frames on a queue (None at EOF)."""
        while True:
            try:
                frame = wire.read_frame(proc.stdout)
            except (OSError, ValueError):
                frame = None
            q.put(frame)
            if frame is None:
                return

    def _read_stderr(self, proc) -> None:
        """Keep the last lines the child wrote to stderr."""
        for raw in iter(proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def start(self) -> dict:
        """Start the child and import the user's code; returns the adapter's description."""
        self._spawn()
        what = f"importing {self.load.get('file') or self.load.get('module')}"
        meta, _ = self._call("load", self.load, {}, what)
        self.info = meta
        return meta

    def close(self) -> None:
        """Ask the child to stop (close its stdin); kill its process group if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        _kill_group(proc)

    def _kill(self) -> None:
        """Kill the child and everything it started, now."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _kill_group(proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----- calls ------------------------------------------------------------------------------
    def call(self, op: str, meta: dict | None = None, arrays: dict | None = None,
             what: str = "") -> tuple[dict, dict]:
        """Run one request; restart the child first if an earlier call killed it."""
        if self.proc is None or self.proc.poll() is not None:
            self._kill()
            self.start()
        return self._call(op, meta or {}, arrays or {}, what or op)

    def _call(self, op, meta, arrays, what) -> tuple[dict, dict]:
        """Send one request and wait for its reply within the time limit."""
        req = dict(meta)
        req["op"] = op
        try:
            wire.write_frame(self.proc.stdin, wire.encode(req, arrays))
        except (BrokenPipeError, OSError):
            pass  # the child died: the reader sees EOF and we report it below
        try:
            frame = self._replies.get(timeout=self.timeout)
        except queue.Empty:
            self._kill()
            self.timeouts += 1
            raise UserFailure("timeout", f"timed out after {self.timeout:g} s in {what}",
                              where=what) from None
        if frame is None:
            code = None
            if self.proc is not None:
                try:  # EOF: the child exited, or closed its pipe and runs on
                    code = self.proc.wait(timeout=min(2.0, self.timeout))
                except subprocess.TimeoutExpired:
                    self._kill()
                    self.timeouts += 1
                    raise UserFailure("timeout", f"the code closed the checker's pipe in {what} "
                                      "and kept running; it was stopped", where=what) from None
                _kill_group(self.proc)
            self.proc = None
            how = (f"was killed by signal {-code}" if code is not None and code < 0
                   else f"exited with status {code}")
            tail = [ln if len(ln) <= 120 else ln[:117] + "..." for ln in list(self._stderr)[-5:]]
            raise UserFailure("crashed", f"the process running {what} {how}",
                              tail=["last lines on stderr:"] + tail if tail else [], where=what)
        out, out_arrays = wire.decode(frame)
        if not out.get("ok"):
            kind = out.get("kind", "raised")
            if kind == "raised" and out.get("type") == "MemoryError":
                kind = "memory"
                lim = f"{self.memory / 2**30:.3g} GiB" if self.memory else "the machine's"
                msg = (f"ran out of memory in {what} (limit {lim}; raise it with --memory)")
            elif kind == "raised":
                msg = f"raised {out.get('type')} in {what}: {out.get('message')}"
            else:
                msg = out.get("message", "failed")
            raise UserFailure(kind, msg, tail=out.get("tail"), where=what,
                              etype=out.get("type", ""))
        if op not in ("load", "reset", "running"):
            self.successes += 1
        return out, out_arrays


def _kill_group(proc) -> None:
    """SIGKILL the child's process group (it leads its own session), then reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.kill()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
