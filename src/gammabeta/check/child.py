"""The sandboxed runner: ``python -m gammabeta.check.child``, one per check run.

It imports the user's file, drives it through an adapter and answers requests read from stdin
with arrays, numbers and strings only (see :mod:`gammabeta.check.wire`). The protocol uses a
private copy of the original stdout; the user's prints go to stderr, which the parent keeps
the tail of for crash reports. Exceptions in user code become replies with the exception type,
message and the last lines of the traceback, so the child lives on for the next check.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

from . import wire
from .adapters import BadReturn, BatchNormPair, Unusable, numeric_grads
from .classes import NormClass
from .generic import LayerClass, LayerPair

_HERE = str(Path(__file__).resolve().parent)


def _tail(exc: BaseException, limit: int = 4) -> list[str]:
    """The last traceback lines in user code (the checker's own frames are dropped)."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if not f.filename.startswith(_HERE)
            and not f.filename.startswith("<frozen importlib")]
    lines = []
    for f in (user or frames)[-limit:]:
        lines.append(f'File "{f.filename}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line.strip()}")
    return lines


class Server:
    """Holds the loaded target and answers one request at a time."""

    def __init__(self) -> None:
        self.adapter = None
        self.kind = "batchnorm"

    # ----- loading ----------------------------------------------------------------------------
    def op_load(self, meta, arrays):
        """Import the user's file or module and build the adapter."""
        for p in meta.get("sys_path", []):
            if p not in sys.path:
                sys.path.append(p)
        for p in meta.get("front_path", []):  # the file's folder, its package's parent
            if p not in sys.path:
                sys.path.insert(0, p)
        mod = None
        if meta.get("module"):
            try:
                mod = importlib.import_module(meta["module"])
            except Exception:  # noqa: BLE001 - the package may not import; try the file alone
                if not meta.get("file_shown"):
                    raise
                meta = dict(meta, file=meta["file_shown"])
        if mod is None:
            path = Path(meta["file"]).resolve()
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            name = f"_gbcheck_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
        obj = mod
        for part in meta["name"].split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise Unusable(f"{meta['name']} not found after importing the file")
        self.kind = meta.get("kind", "batchnorm")
        if inspect.isclass(obj):
            if self.kind == "layer":
                self.adapter = LayerClass(obj, meta["name"], meta.get("init_args"),
                                          meta.get("init_kwargs"))
            else:
                self.adapter = NormClass(obj, meta["name"], meta.get("init_args"),
                                         meta.get("init_kwargs"), meta.get("attrs"))
        elif callable(obj):
            bname = meta.get("backward") or meta["name"].replace("forward", "backward")
            bwd = getattr(mod, bname, None)
            if bname == meta["name"] or not callable(bwd):
                raise Unusable(f"no backward function {bname!r} next to {meta['name']}; "
                               "name it with --backward")
            cls = LayerPair if self.kind == "layer" else BatchNormPair
            self.adapter = cls(obj, bwd, meta["name"], bname)
        else:
            raise Unusable(f"{meta['name']} is {type(obj).__name__}, not a function or a class")
        return self.adapter.info(), {}

    # ----- batchnorm --------------------------------------------------------------------------
    def op_reset(self, meta, arrays):
        """Fresh layer state; replies with eps, momentum and the γ, β it holds."""
        if self.kind == "layer":
            return self.adapter.reset(arrays), {}
        info = self.adapter.reset(int(meta["c"]), arrays["gamma"], arrays["beta"],
                                  float(meta["eps"]), meta.get("momentum"),
                                  groups=meta.get("groups"), x=arrays.get("x"))
        out = {}
        if self.adapter.style == "class":
            out = {k: v for k, v in self.adapter.running().items() if v is not None}
            info["paths"] = self.adapter.paths
            info["adapter"] = self.adapter.info()
        g, b = self.adapter.params()
        out["gamma"], out["beta"] = np.array(g), np.array(b)
        return info, out

    def op_forward(self, meta, arrays):
        """One forward pass."""
        if self.kind == "layer":
            return {}, {"out": self.adapter.forward()}
        x = arrays["x"]
        x0 = x.copy()
        out = self.adapter.forward(x, bool(meta["train"]))
        return {"mutated": not np.array_equal(x, x0, equal_nan=True)}, {"out": out}

    def op_backward(self, meta, arrays):
        """One backward pass."""
        dout = arrays["dout"]
        d0 = dout.copy()
        grads = self.adapter.backward(dout)
        if self.kind == "layer":
            return {}, grads
        return {"mutated": not np.array_equal(dout, d0, equal_nan=True)}, grads

    def op_running(self, meta, arrays):
        """The running statistics."""
        got = self.adapter.running()
        info = {"paths": getattr(self.adapter, "paths", None)}
        return info, {k: v for k, v in got.items() if v is not None}

    def op_set_running(self, meta, arrays):
        """Overwrite the running statistics where the layer keeps them (same shape, dtype)."""
        done = self.adapter.set_running(arrays["running_mean"], arrays["running_var"])
        return {"done": bool(done)}, {}

    def op_numgrad(self, meta, arrays):
        """Central differences of the forward pass."""
        h = float(meta.get("h", 1e-5))
        if self.kind == "layer":
            return {}, self.adapter.numeric(arrays["dout"], h)
        return {}, numeric_grads(self.adapter, arrays["x"], arrays["dout"], h)

    # ----- dispatch ---------------------------------------------------------------------------
    def handle(self, meta: dict, arrays: dict) -> tuple[dict, dict]:
        """Dispatch one request; user exceptions and warnings become reply fields."""
        op = meta.get("op", "")
        fn = getattr(self, f"op_{op}", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if fn is None:
                    raise Unusable(f"unknown request {op!r}")
                out_meta, out_arrays = fn(meta, arrays)
                out_meta = dict(out_meta)
                out_meta["ok"] = True
            except BadReturn as e:
                out_meta, out_arrays = {"ok": False, "kind": "bad_return", "message": str(e)}, {}
            except Unusable as e:
                out_meta, out_arrays = {"ok": False, "kind": "config", "message": str(e)}, {}
            except (Exception, SystemExit) as e:
                tail = _tail(e)
                if isinstance(e, TypeError) and "unexpected keyword argument" in str(e) \
                        and any("np." in line for line in tail[-1:]):
                    tail.append(f"NumPy {np.__version__} is installed here: this call may be "
                                "written for another NumPy version")
                out_meta = {"ok": False, "kind": "raised", "type": type(e).__name__,
                            "message": str(e)[:2000], "tail": tail}
                out_arrays = {}
        seen = []
        for w in caught:
            s = f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})"
            if s not in seen:
                seen.append(s)
        out_meta["warnings"] = seen[:5]
        return out_meta, out_arrays


def _limit_memory() -> None:
    """Cap the address space at GAMMABETA_CHECK_MEMORY bytes (set by the parent)."""
    limit = os.environ.get("GAMMABETA_CHECK_MEMORY")
    if not limit:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    except (ImportError, ValueError, OSError):
        pass


def main() -> int:
    """Serve requests until stdin closes."""
    _limit_memory()
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the user's code prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    proto_in = sys.stdin.buffer
    server = Server()
    while True:
        frame = wire.read_frame(proto_in)
        if frame is None:
            return 0
        meta, arrays = wire.decode(frame)
        out_meta, out_arrays = server.handle(meta, arrays)
        try:
            data = wire.encode(out_meta, out_arrays)
        except TypeError as e:
            data = wire.encode({"ok": False, "kind": "bad_return", "message": str(e)})
        wire.write_frame(proto_out, data)


if __name__ == "__main__":
    sys.exit(main())
