"""Find what to check in a file without running it, and how to import it as its author did.

``gammabeta check FILE.py`` (no ``:NAME``) lists, with :mod:`ast`:

* cs231n-style function pairs ``X_forward``/``X_backward`` whose name says normalization
  (``batchnorm``, ``spatial_batchnorm``, ``layernorm``, ``spatial_groupnorm``, ``batch_norm``,
  ``bn``, ...), plus ``X_backward_alt`` as a second target sharing the forward;
* classes whose name says normalization (``BatchNorm1d``, ``BatchNormalization``, ``LayerNorm``,
  ``BN``, ...) with a forward-like method (``forward``, ``forward_pass``, ``__call__``, ...)
  and a backward-like one.

The kind of each (``batchnorm``, ``spatial_batchnorm``, ``layernorm``, ``groupnorm``) comes from
its name. A file inside a package (folders with ``__init__.py``) is imported as a module of that
package, so relative imports work; its folder, the package's parent and the repository root
(the nearest folder above with ``.git``, ``setup.py``, ``pyproject.toml`` or
``requirements.txt``) are put on ``sys.path``, as when its author ran it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .names import BACKWARD, FORWARD

__all__ = ["find_targets", "kind_of", "import_plan"]

_NORM_WORDS = re.compile(r"(batch_?norm|layer_?norm|group_?norm|batchnormalization|"
                         r"layernormalization|groupnormalization|(^|_)bn($|_)|^bn|bn\d?d?$|"
                         r"normali[sz]ation)", re.IGNORECASE)
_ROOT_MARKERS = (".git", "setup.py", "pyproject.toml", "requirements.txt", "setup.cfg")


def kind_of(name: str) -> str | None:
    """The normalization kind a function or class name says, or None."""
    n = name.lower()
    if "instance" in n:
        return None
    if "group" in n:
        return "groupnorm"
    if "batch" in n or re.search(r"(^|_)bn($|_|\d)", n):
        return "spatial_batchnorm" if "spatial" in n else "batchnorm"
    if "layer" in n and "norm" in n:
        return "layernorm"
    if n.startswith("ln") or n.endswith("_ln") or n == "ln":
        return "layernorm"
    if _NORM_WORDS.search(name):
        return "batchnorm"
    return None


def _methods(node: ast.ClassDef) -> set:
    return {b.name for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))}


def find_targets(path: Path, tree: ast.Module | None = None) -> list[dict]:
    """Every normalization target in ``path``: dicts with name, backward, kind."""
    if tree is None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    funcs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    out = []
    for f in funcs:
        if not f.endswith("_forward"):
            continue
        stem = f[: -len("_forward")]
        kind = kind_of(stem)
        if kind is None:
            continue
        for bwd in (f"{stem}_backward", f"{stem}_backward_alt"):
            if bwd in funcs:
                out.append({"name": f, "backward": bwd, "kind": kind})
    own = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or kind_of(node.name) is None:
            continue
        meths, seen, todo = set(), set(), [node]
        while todo:  # methods inherited from classes in the same file count too
            cls = todo.pop()
            if cls.name in seen:
                continue
            seen.add(cls.name)
            meths |= _methods(cls)
            todo += [own[b.id] for b in cls.bases if isinstance(b, ast.Name) and b.id in own]
        if any(m in meths for m in FORWARD) and any(m in meths for m in BACKWARD):
            out.append({"name": node.name, "backward": None, "kind": kind_of(node.name)})
    return out


def _root(folder: Path) -> Path | None:
    """The nearest folder at or above ``folder`` that looks like a repository root."""
    for p in [folder, *folder.parents]:
        if any((p / m).exists() for m in _ROOT_MARKERS):
            return p
    return None


def import_plan(path: Path) -> dict:
    """How to import ``path``: ``{"module": dotted name}`` inside a package, else
    ``{"file": path}``; plus ``front_path``, the folders to put first on ``sys.path``."""
    path = path.resolve()
    folder = path.parent
    parts = [path.stem]
    top = folder
    while (top / "__init__.py").is_file() and top.parent != top:
        parts.insert(0, top.name)
        top = top.parent
    front = [str(folder)]
    plan: dict = {"file": str(path)}
    if len(parts) > 1 and all(p.isidentifier() for p in parts):
        plan = {"module": ".".join(parts), "file_shown": str(path)}
        front.insert(0, str(top))
    root = _root(folder)
    if root is not None and str(root) not in front:
        front.append(str(root))
    for anc in _import_roots(path, folder):
        if anc not in front:
            front.append(anc)
    plan["front_path"] = front
    return plan


def _import_roots(path: Path, folder: Path) -> list[str]:
    """Folders above ``path`` that hold the top-level packages its absolute imports name
    (``from mytorch.tensor import Tensor`` two levels up), as when its author ran it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return []
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
    out = []
    for top in sorted(tops):
        for anc in [folder, *folder.parents][:6]:
            if (anc / top).is_dir() or (anc / f"{top}.py").is_file():
                if anc != folder:
                    out.append(str(anc))
                break
    return out
