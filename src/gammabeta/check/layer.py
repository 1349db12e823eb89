"""``--kind layer``: a plain forward/backward check for any layer (Linear, Conv, activations).

There is no reference: the backward pass is compared with central differences of the layer's
own forward pass, ``L = Σ forward(...) ⊙ R`` for a fixed random R, in float64.
"""

from __future__ import annotations

import numpy as np

from . import diagnose as dg
from .context import Abort
from .options import parse_shapes
from .sandbox import UserFailure

__all__ = ["LAYER_CHECKS"]

TOL_LAYER = 1e-5


def _inputs(ctx) -> dict:
    """Random float64 inputs with the shapes of ``--shapes`` (or (4, 3))."""
    names = ctx.info.get("arg_names") or ["x"]
    shapes = parse_shapes(ctx.opts.shapes)
    if shapes is None:
        if len(names) > 1:
            from ..errors import ConfigError

            ex = ";".join(["4,5", "5,3", "3"][:len(names)])
            raise ConfigError(f"{ctx.info.get('forward')} takes {len(names)} arrays "
                              f"({', '.join(names)}): give their shapes with --shapes, e.g. "
                              f"--shapes '{ex}'")
        shapes = [(4, 3)]
    if len(shapes) != len(names):
        from ..errors import ConfigError

        raise ConfigError(f"--shapes gives {len(shapes)} shape(s) for {len(names)} array "
                          f"argument(s) ({', '.join(names)})")
    rng = ctx.rng("layer")
    arrays = {}
    for i, s in enumerate(shapes):
        a = rng.normal(size=s)
        arrays[f"a{i}"] = a + 0.05 * np.sign(a)  # keep away from kinks such as ReLU's 0
    return arrays


def check_layer(ctx) -> None:
    """Forward and backward run; every gradient against central differences."""
    arrays = _inputs(ctx)
    what = ctx.info.get("forward_call", "forward")
    meta, _ = ctx.sb.call("reset", {}, arrays, what=ctx.construct_desc())
    wrt = meta.get("wrt", ["dx"])
    try:
        _, out = ctx.sb.call("forward", {}, {}, what=what)
    except UserFailure as e:
        ctx.add("forward_runs", "fail", "forward runs", e.message, details=e.tail)
        raise Abort("the forward pass does not run (see forward_runs)") from None
    y = out["out"]
    if not np.all(np.isfinite(y)):
        ctx.add("forward_runs", "fail", "forward runs", f"{what} returned NaN/inf")
        raise Abort("the forward pass returns NaN/inf")
    ctx.add("forward_runs", "pass", "forward runs",
            f"{what} returns a finite array of shape {tuple(y.shape)}")
    rng = ctx.rng("layer_dout")
    dout = rng.normal(size=y.shape)
    bwhat = f"{ctx.info.get('backward_call', 'backward')}(dout of shape {tuple(dout.shape)})"
    try:
        _, grads = ctx.sb.call("backward", {}, {"dout": dout}, what=bwhat)
    except UserFailure as e:
        ctx.add("backward_runs", "fail", "backward runs", e.message, details=e.tail)
        raise Abort("the backward pass does not run (see backward_runs)") from None
    inputs = {"dx": arrays["a0"]}
    for i, k in enumerate(wrt):
        inputs.setdefault(k, arrays.get(f"a{i}"))
    for k in wrt:
        if k in grads and inputs.get(k) is not None and grads[k].shape != inputs[k].shape:
            ctx.add("backward_runs", "fail", "backward runs",
                    f"{bwhat} returned {k} of shape {tuple(grads[k].shape)}; expected "
                    f"{tuple(inputs[k].shape)}")
            raise Abort("the backward pass returns wrong shapes")
    ctx.add("backward_runs", "pass", "backward runs",
            f"{bwhat} returns {', '.join(k for k in wrt if k in grads)}")
    # same instance (a new one may draw other random weights); backward changed nothing
    _, num = ctx.sb.call("numgrad", {"h": 1e-6}, {"dout": dout},
                         what=f"finite differences of {what}")
    for k in wrt:
        key = f"gradcheck_{k}"
        if k not in grads:
            ctx.add(key, "warn", f"{k} by finite differences",
                    f"no gradient for {k[1:]} found after backward (tried d{k[1:]}, "
                    f"{k[1:]}.grad, grads[{k[1:]!r}]); not checked")
            continue
        c = dg.compare(grads[k], num[k])
        if c["err"] <= TOL_LAYER:
            ctx.add(key, "pass", f"{k} by finite differences",
                    f"{k} matches central differences (max error {c['err']:.2g})", cmp=c,
                    tol=TOL_LAYER)
        else:
            scale = float(np.sum(grads[k] * num[k]) / max(float(np.sum(num[k] ** 2)), 1e-300))
            cause = None
            if dg.compare(grads[k], -num[k])["err"] <= 1e-4:
                cause = f"{k} has the wrong sign"
            elif dg.compare(grads[k], scale * num[k])["err"] <= 1e-4:
                cause = f"{k} is off by a constant factor {scale:.4g}"
            elif dg.compare(grads[k], num[k].T if num[k].ndim == 2 else num[k])["err"] <= 1e-4:
                cause = f"{k} is transposed"
            ctx.add(key, "fail", f"{k} by finite differences",
                    f"{k} differs from central differences of the forward pass",
                    cause=cause or "the backward pass is not the derivative of the forward pass",
                    cmp=c, tol=TOL_LAYER)


LAYER_CHECKS = [("forward_runs", "forward and backward", check_layer, False)]
