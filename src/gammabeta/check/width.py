"""The number of features (and groups) that ``--init-args`` give a class.

Without ``--init-args`` the checker builds a class itself, passing its own channel count to the
parameter the name says is the feature count (see :mod:`gammabeta.check.class_probe`). With
``--init-args`` the user's arguments decide how wide the layer is, so the inputs must have that
many features. In the child, :func:`given_width` reads the width off the arguments by the same
parameter names (``num_features``, ``in_features``, ``dim``, ``C``, a ``normalized_shape``
tuple of one number, ...; the groups from ``num_groups``, ``G``, ...), failing that off the γ
of an instance built with them. In the parent, :func:`fit_width` feeds inputs of that width,
or says which width it fed when none could be told, and :func:`width_mismatch` turns a forward
pass that then fails on shapes into "the layer could not be driven" instead of a failure.
"""

from __future__ import annotations

import re

import numpy as np

from .access import get_path, param_array
from .names import GAMMA, GROUP_ARGS, NUM_ARGS, RUNNING_MEAN, SIZE_LIKE

__all__ = ["given_width", "fit_width", "width_mismatch"]

WIDE = 4096  # above this, each finite-difference call may take longer than the default timeout
SHAPE_ERROR = re.compile(r"broadcast|shape|dimension|not aligned|size|mismatch|out of bounds|"
                         r"reshape", re.IGNORECASE)


def _count(v) -> int | None:
    """A feature or group count: a whole number >= 1, or a tuple/list of one."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v) if v >= 1 else None
    if isinstance(v, (tuple, list)) and len(v) == 1:
        return _count(v[0])
    return None


def _size_like(p) -> bool:
    """A required parameter the checker fills with its channel count when it builds the class."""
    return p.default is p.empty and (p.annotation in (int, "int") or bool(SIZE_LIKE.search(p.name)))


def _from_args(name: str, sig, args, kwargs) -> dict:
    """``{"c", "groups", "source"}`` read off the arguments by parameter name; ``c`` is None
    (and ``why`` says why) when they do not tell."""
    out = {"c": None, "groups": None, "source": "", "why": ""}
    if sig is None:
        out["why"] = f"the signature of {name}() cannot be read"
        return out
    try:
        given = sig.bind_partial(*args, **kwargs).arguments
    except TypeError as e:
        out["why"] = f"they do not fit {name}{sig}: {e}"
        return out
    params = [p for p in sig.parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    shown = []
    for p in params:  # the groups: given, else the constructor's default
        n = _count(given.get(p.name, p.default)) if p.name in GROUP_ARGS else None
        if n:
            out["groups"] = n
            shown.append(f"{p.name}={n}" + ("" if p.name in given else " by default"))
            break
    rules = ((True, lambda p: p.name in NUM_ARGS), (True, _size_like),
             (False, lambda p: p.name in NUM_ARGS))  # given by name, given, a default
    for need_given, fits in rules:
        for p in params:
            if p.name in GROUP_ARGS or (p.name in given) != need_given or not fits(p):
                continue
            n = _count(given[p.name] if need_given else p.default)
            if n:
                out["c"] = n
                v = given.get(p.name, p.default)
                shown.insert(0, f"{p.name}={tuple(v) if isinstance(v, list) else v!r}"
                             + ("" if need_given else " by default"))
                break
        if out["c"]:
            break
    if out["c"] is None:
        missing = [p.name for p in params if p.name not in given and p.default is p.empty
                   and p.name not in GROUP_ARGS and (p.name in NUM_ARGS or _size_like(p))]
        out["why"] = (f"they do not give {name}'s {missing[0]!r}" if missing else
                      f"no argument of {name}{sig} is a feature count the checker knows")
    out["source"] = ", ".join(shown)
    return out


def _from_instance(cls, args, kwargs, attrs: dict):
    """The size of γ (or of the running mean) of an instance built with the arguments."""
    try:
        obj = cls(*args, **kwargs)
    except Exception:  # noqa: BLE001 - constructing again in reset reports it
        return None, ""
    paths = ([attrs["gamma"]] if attrs.get("gamma") else []) + list(GAMMA) + list(RUNNING_MEAN)
    for path in paths:
        a = param_array(get_path(obj, path, None))
        if a is not None and a.dtype.kind == "f" and a.ndim >= 1 and a.size == max(a.shape):
            return int(a.size), path
    return None, ""


def given_width(cls, name: str, sig, args, kwargs, attrs=None) -> dict:
    """The width and groups the given constructor arguments fix (child side)."""
    args, kwargs = list(args or []), dict(kwargs or {})
    out = _from_args(name, sig, args, kwargs)
    if out["c"] is None:
        c, path = _from_instance(cls, args, kwargs, attrs or {})
        if c:
            out.update(c=c, source=f"{name}.{path} has {c} values once built with them")
    return out


def _args_text(opts) -> str:
    """The --init-args as given, for messages."""
    spec = opts.init_args
    return repr(spec) if isinstance(spec, str) else repr(tuple(spec) if isinstance(
        spec, list) else spec)


def fit_width(ctx, info: dict) -> str:
    """Give ``ctx`` the width (and groups) ``--init-args`` fix; return the phrase for the
    report's description ("" when no arguments were given). Raises a ``config``
    :class:`UserFailure` when the channels cannot be split into the groups."""
    from .sandbox import UserFailure

    w = info.get("width")
    ctx.width_unknown = ""
    if not w:
        return ""
    group = ctx.norm.name == "groupnorm"
    unit = "channels" if group or ctx.spatial else "features"
    if not w.get("c"):
        ctx.width_unknown = w.get("why") or "no argument gives it"
        return (f"fed C = {ctx.c} {unit}" + (f" in G = {ctx.groups} groups" if group else "")
                + f": the width cannot be told from --init-args {_args_text(ctx.opts)} "
                f"({ctx.width_unknown})")
    c, g = int(w["c"]), int(w.get("groups") or ctx.groups)
    if group and c % g:
        raise UserFailure("config", f"--init-args {_args_text(ctx.opts)} give C = {c} channels "
                          f"({w['source']}), which cannot be split into G = {g} groups; give "
                          "the groups in --init-args (num_groups=...) or with --groups")
    ctx.c = c
    if group:
        ctx.groups = g
    fed = f"C = {c} {unit}" + (f" in G = {g} groups" if group else "")
    slow = (f" (finite differences over {c} {unit} are slow: raise --timeout if a call "
            "times out)") if c > WIDE else ""
    return f"{fed}, as --init-args say ({w['source']}){slow}"


def width_mismatch(ctx, e) -> tuple[str, list] | None:
    """When the width was not told and the first forward pass failed on shapes: the message
    and advice lines saying the --init-args may not build the width fed (else None)."""
    if not getattr(ctx, "width_unknown", "") or e.kind not in ("raised", "bad_return") \
            or not SHAPE_ERROR.search(e.message):
        return None
    unit = "channels" if ctx.spatial else "features"
    groups = f" in {ctx.groups} groups" if ctx.norm.name == "groupnorm" else ""
    msg = (f"fed C = {ctx.c} {unit}{groups}, as the width cannot be told from --init-args "
           f"{_args_text(ctx.opts)} ({ctx.width_unknown}), and the forward pass failed on "
           f"shapes: {e.message.strip().rstrip('.')}; the layer those arguments build may have "
           "another width (not a verdict on the code)")
    advice = ("pass the feature count as a constructor argument the checker knows "
              "(num_features, in_features, dim, C, ...), or give --init-args that build a layer "
              f"of {ctx.c} {unit}{groups}")
    return msg, [advice, *e.tail]
