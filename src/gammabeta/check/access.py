"""Reading a user's layer safely: attribute paths, array conversion, the backward call.

Shared by the BatchNorm adapters and the generic-layer adapters; runs in the child process.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["BadReturn", "Unusable", "describe_value", "to_array", "get_path", "call_backward",
           "clear_grads", "has_path", "set_path", "param_array"]

_MISSING = object()


class BadReturn(Exception):
    """User code returned something the checker cannot use (wrong type, dtype or arity)."""


class Unusable(Exception):
    """The target cannot be driven as asked (no γ attribute, ...): a ConfigError in the parent."""


def describe_value(v) -> str:
    """A short description of any value, e.g. ``ndarray of shape (3,)`` or ``NoneType``."""
    if isinstance(v, np.ndarray):
        return f"an ndarray of shape {v.shape} and dtype {v.dtype}"
    if isinstance(v, (tuple, list)):
        return f"a {type(v).__name__} of length {len(v)}"
    return f"a {type(v).__name__}"


def to_array(v, what: str) -> np.ndarray:
    """``v`` as a numeric NumPy array, or :class:`BadReturn` saying what ``what`` was instead."""
    if v is None:
        raise BadReturn(f"{what} is None; expected a NumPy array (not implemented yet, or a "
                        "missing return?)")
    if isinstance(v, np.ndarray):
        a = v
    elif isinstance(v, (list, tuple)) and what.startswith(("the output", "the out ")):
        raise BadReturn(f"{what} is {describe_value(v)}; expected a NumPy array (a list has no "
                        ".shape and does not broadcast like an array)")
    elif isinstance(v, (int, float, np.number, list)) or hasattr(v, "__array__"):
        try:
            a = np.asarray(v)
        except Exception as e:  # e.g. a torch tensor that requires grad
            raise BadReturn(f"{what} is {describe_value(v)} that NumPy cannot convert "
                            f"({type(e).__name__}: {e}); return a NumPy array") from None
    else:
        raise BadReturn(f"{what} is {describe_value(v)}; expected a NumPy array")
    if a.dtype.kind not in "fiub":
        raise BadReturn(f"{what} has dtype {a.dtype}; expected a floating-point array")
    return np.array(a, copy=True)


def get_path(obj, path: str, default=_MISSING):
    """Follow ``a.b.c`` through attributes and dict keys; ``default`` when a step is missing."""
    cur = obj
    for seg in path.split("."):
        if isinstance(cur, Mapping):
            cur = cur.get(seg, _MISSING)
        else:
            try:
                cur = getattr(cur, seg, _MISSING)
            except Exception:  # a property that raises
                cur = _MISSING
        if cur is _MISSING:
            return default
    return cur


def clear_grads(obj, grad_paths) -> None:
    """Clear ``.grad`` on the parameter objects at ``grad_paths``, so that earlier backward
    calls do not accumulate into the next one."""
    for path in grad_paths:
        holder = get_path(obj, path, None)
        if holder is not None and not isinstance(holder, np.ndarray) and hasattr(holder, "grad"):
            try:
                holder.grad = None
            except (AttributeError, TypeError):
                pass


def call_backward(obj, name: str, dout, grad_paths):
    """:func:`clear_grads`, then return ``obj.backward(dout)``."""
    clear_grads(obj, grad_paths)
    bwd = getattr(obj, "backward", None)
    if bwd is None:
        raise BadReturn(f"{name} has no backward method")
    return bwd(dout)


def has_path(obj, path: str) -> bool:
    """True when :func:`get_path` finds ``path`` (even holding None)."""
    return get_path(obj, path) is not _MISSING


def set_path(obj, path: str, value) -> None:
    """Assign ``value`` at ``path``; a Parameter-like holder (``.data``) gets ``.data`` set."""
    head, _, last = path.rpartition(".")
    parent = get_path(obj, head) if head else obj
    cur = get_path(parent, last, None)
    holder = _holder_field(cur)
    if holder is not None:
        setattr(cur, holder, value)
    elif isinstance(parent, Mapping):
        parent[last] = value
    else:
        setattr(parent, last, value)


def _holder_field(v):
    """The field of a Parameter-like holder that keeps its array (``data`` or ``value``)."""
    if v is None or isinstance(v, (np.ndarray, Mapping, list, tuple)):
        return None
    for name in ("data", "value"):
        try:
            if isinstance(getattr(v, name, None), np.ndarray):
                return name
        except Exception:  # noqa: BLE001 - a property that raises
            continue
    return None


def param_array(v):
    """The array behind ``v``: itself, or ``v.data``/``v.value`` for Parameter-like holders;
    else None."""
    if isinstance(v, np.ndarray):
        return v
    field = _holder_field(v)
    return getattr(v, field) if field else None
