"""Options of a check run and how a target (``FILE.py:NAME`` or a Python object) is found.

Nothing here executes user code: names in a file are listed with :mod:`ast`, so a bad
``FILE.py:NAME`` gives a :class:`~gammabeta.errors.ConfigError` naming the file and what it holds.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import os
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import ConfigError
from .discover import find_targets, import_plan, kind_of

__all__ = ["CheckOptions", "resolve_targets", "parse_init_args", "parse_shapes", "CHILD_ENV",
           "KINDS", "parse_memory"]

KINDS = ("auto", "batchnorm", "spatial_batchnorm", "layernorm", "groupnorm", "layer")

CHILD_ENV = "GAMMABETA_CHECK_CHILD"
ATTR_ROLES = ("gamma", "beta", "running_mean", "running_var", "dgamma", "dbeta", "momentum",
              "eps", "mode")


@dataclass
class CheckOptions:
    """Everything ``gammabeta check`` can be told; the CLI flags map one to one."""

    backward: str | None = None
    kind: str = "auto"
    groups: int = 2
    gamma_attr: str | None = None
    beta_attr: str | None = None
    running_mean_attr: str | None = None
    running_var_attr: str | None = None
    dgamma_attr: str | None = None
    dbeta_attr: str | None = None
    momentum_attr: str | None = None
    eps_attr: str | None = None
    mode_attr: str | None = None
    init_args: object = None
    shapes: str | None = None
    timeout: float = 20.0
    memory: object = "4G"
    strict_pytorch: bool = False
    seed: int = 0

    @classmethod
    def from_kwargs(cls, kw: dict) -> CheckOptions:
        """Build from keyword arguments, refusing unknown ones with the list of known ones."""
        known = {f.name for f in fields(cls)}
        bad = sorted(set(kw) - known)
        if bad:
            raise ConfigError(f"gammabeta.check: unknown option(s) {', '.join(bad)}; known: "
                              f"{', '.join(sorted(known))}")
        opts = cls(**kw)
        if opts.kind not in KINDS:
            raise ConfigError(f"--kind {opts.kind!r}: expected one of {', '.join(KINDS)}")
        try:
            t = float(opts.timeout)
        except (TypeError, ValueError):
            t = float("nan")
        if not (math.isfinite(t) and 0 < t <= 86400):
            raise ConfigError(f"--timeout {opts.timeout!r}: expected a finite number of seconds "
                              "> 0 (at most 86400)")
        opts.timeout = t
        opts.memory = parse_memory(opts.memory)
        if isinstance(opts.groups, bool) or not isinstance(opts.groups, int) or opts.groups < 1:
            raise ConfigError(f"--groups {opts.groups!r}: expected a whole number >= 1")
        if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or opts.seed < 0:
            raise ConfigError(f"--seed {opts.seed!r}: expected a whole number >= 0")
        return opts

    def attrs(self) -> dict:
        """The attribute names given by the user, by role."""
        return {r: getattr(self, f"{r}_attr") for r in ATTR_ROLES if getattr(self, f"{r}_attr")}


def parse_memory(spec) -> int:
    """``"4G"``, ``"512M"``, ``"2.5GiB"`` or a number of GiB → bytes (at least 256 MiB)."""
    units = {"": 2**30, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    text = str(spec).strip().lower().replace("ib", "").replace("b", "")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)", text)
    value = float(m.group(1)) * units[m.group(2)] if m else float("nan")
    if not (math.isfinite(value) and 2**28 <= value <= 2**50):
        raise ConfigError(f"--memory {spec!r}: expected a size such as 4G or 512M (at least "
                          "256M)")
    return int(value)


def parse_init_args(spec) -> tuple[list | None, dict]:
    """``"3, momentum=0.1"`` (Python literals) → ``([3], {"momentum": 0.1})``; None → defaults."""
    if spec is None:
        return None, {}
    if isinstance(spec, dict):
        return [], dict(spec)
    if isinstance(spec, (list, tuple)):
        return list(spec), {}
    try:
        call = ast.parse(f"f({spec})", mode="eval").body
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as e:
        raise ConfigError(f"--init-args {spec!r}: expected Python literals like "
                          f"'3, momentum=0.1' ({e})") from None
    return args, kwargs


def parse_shapes(spec: str | None) -> list[tuple] | None:
    """``"4,5;5,3;3"`` → ``[(4, 5), (5, 3), (3,)]``: one shape per array argument."""
    if not spec:
        return None
    try:
        return [tuple(int(d) for d in part.replace("x", ",").split(",") if d.strip())
                for part in spec.split(";")]
    except ValueError:
        raise ConfigError(f"--shapes {spec!r}: expected shapes like '4,5;5,3;3'") from None


def _names_in(path: Path) -> dict:
    """Top-level functions, classes and other names bound in a Python file (without running it)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise ConfigError(f"{path}: cannot be parsed: {e.msg} (line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    out = {"functions": [], "classes": [], "other": []}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out["functions"].append(node.name)
        elif isinstance(node, ast.ClassDef):
            out["classes"].append(node.name)
        elif isinstance(node, ast.Assign):
            out["other"] += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out["other"] += [(a.asname or a.name).split(".")[0] for a in node.names]
    return out


def _listing(path: Path, names: dict) -> str:
    """A sentence listing the functions and classes of a file."""
    fn = ", ".join(names["functions"]) or "none"
    cl = ", ".join(names["classes"]) or "none"
    return f"{path} defines functions: {fn}; classes: {cl}"


def _backward_name(name: str, backward: str | None) -> str:
    """The backward function's name: given, or NAME with forward → backward."""
    if backward:
        return backward
    if "forward" not in name:
        raise ConfigError(f"cannot derive the backward function from {name!r} (no 'forward' in "
                          "the name); give it with --backward NAME")
    return name.replace("forward", "backward")


def _kind(opts, detected: str | None) -> str:
    """``--kind`` when given, else the kind the name says (batch norm when it says none)."""
    return opts.kind if opts.kind != "auto" else (detected or "batchnorm")


def _split(spec: str) -> tuple[Path, str]:
    """``FILE.py:NAME`` → (path, NAME); ``FILE.py`` → (path, "")."""
    if spec.endswith(".py") or ":" not in spec or Path(spec).is_file():
        return Path(spec), ""
    file, _, name = spec.rpartition(":")
    if not file or not name or "/" in name or "\\" in name or name.endswith(".py"):
        raise ConfigError(f"{spec!r}: expected FILE.py or FILE.py:NAME, e.g. my_bn.py or "
                          "my_bn.py:batchnorm_forward")
    return Path(file), name


def _from_path(spec: str, opts) -> list[tuple[dict, str]]:
    """Load requests for ``FILE.py:NAME`` or every target ``FILE.py`` holds, checked with ast."""
    path, name = _split(spec)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a Python file, e.g. {path / 'layers.py'}")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    names = _names_in(path)
    plan = import_plan(path)
    if not name:
        found = find_targets(path)
        if not found:
            raise ConfigError(f"{path}: found nothing to check (no X_forward/X_backward pair and "
                              "no class with forward/backward methods whose name says batch, "
                              "layer or group normalization); " + _listing(path, names)
                              + ". Name one with FILE.py:NAME")
        out = []
        for t in found:
            load = dict(plan, name=t["name"], backward=t["backward"], kind=_kind(opts, t["kind"]))
            shown = t["name"] + (f" + {t['backward']}" if t["backward"] and
                                 t["backward"].endswith("_alt") else "")
            out.append((load, f"{spec}:{shown}"))
        return out
    everything = names["functions"] + names["classes"] + names["other"]
    if name.split(".")[0] not in everything:
        raise ConfigError(f"{path} has no function or class named {name!r}; "
                          + _listing(path, names))
    backward = opts.backward
    if name in names["functions"] or (backward and name not in names["classes"]):
        bname = _backward_name(name, backward)
        if bname not in everything:
            raise ConfigError(f"{path} has {name} but no backward function {bname!r}; "
                              f"{_listing(path, names)}. Name it with --backward")
        backward = bname
    load = dict(plan, name=name, backward=backward, kind=_kind(opts, kind_of(name)))
    return [(load, f"{path}:{name}")]


def _from_object(obj, backward: str | None) -> tuple[dict, str]:
    """The load request for a function, class or (forward, backward) pair."""
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        fwd, bwd = obj
        load, target = _from_object(fwd, getattr(bwd, "__name__", None))
        return load, target
    if not (inspect.isclass(obj) or callable(obj)):
        raise ConfigError(f"gammabeta.check: got {type(obj).__name__}; expected 'FILE.py:NAME', "
                          "a forward function, a (forward, backward) pair or a class")
    qual = getattr(obj, "__qualname__", getattr(obj, "__name__", ""))
    if "<locals>" in qual or "<lambda>" in qual:
        raise ConfigError(f"{qual} is defined inside a function; define it at the top level of "
                          "a file so the checker's separate process can import it")
    mod_name = getattr(obj, "__module__", None)
    try:
        src = inspect.getsourcefile(obj)
    except TypeError:
        src = None
    load = {"name": qual}
    if mod_name and mod_name not in ("__main__", "__mp_main__"):
        try:
            spec = importlib.util.find_spec(mod_name)
        except (ImportError, ValueError):
            spec = None
        # importable under its own name, and that name leads to the same file
        if spec is not None and (not src or not spec.origin
                                 or Path(spec.origin).resolve() == Path(src).resolve()):
            load["module"] = mod_name
    if "module" not in load:
        if not src or not Path(src).is_file():
            raise ConfigError(f"{qual} was defined interactively (no source file); save it in a "
                              "file and run gammabeta check FILE.py:NAME")
        load["file"] = str(Path(src).resolve())
    if not inspect.isclass(obj):
        load["backward"] = _backward_name(getattr(obj, "__name__", qual), backward)
    target = f"{load.get('file') or load['module']}:{qual}"
    return load, target


def resolve_targets(obj_or_path, opts: CheckOptions) -> list[tuple[dict, str]]:
    """The child's ``load`` request and a display name for each target of ``obj_or_path``."""
    if os.environ.get(CHILD_ENV):
        raise ConfigError("gammabeta.check was called while the checker imported the file under "
                          "check; put the call under `if __name__ == \"__main__\":`")
    if isinstance(obj_or_path, (str, os.PathLike)):
        targets = _from_path(os.fspath(obj_or_path), opts)
    else:
        load, target = _from_object(obj_or_path, opts.backward)
        name = load["name"].rpartition(".")[2]
        load["kind"] = _kind(opts, kind_of(name))
        targets = [(load, target)]
    init_args, init_kwargs = parse_init_args(opts.init_args)
    for load, _ in targets:
        load.update(attrs=opts.attrs(), init_args=init_args, init_kwargs=init_kwargs,
                    sys_path=[p for p in sys.path if p])
    return targets
