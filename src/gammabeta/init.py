"""Initializers for W, b, γ and β: plain functions ``(shape, rng) -> array`` in a registry.

Fan convention (PyTorch's, used everywhere here)
------------------------------------------------
For a weight of shape ``(out, in, *kernel)`` (Linear ``(out, in)``, Conv ``(out, in/groups, k...)``)
the receptive field is ``r = prod(kernel)``, ``fan_in = in * r`` and ``fan_out = out * r``.
A 1-D shape ``(n,)`` has ``fan_in = fan_out = n`` unless the layer passes the weight's fans
(biases do, so ``torch_default`` can draw ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``).

One core, many presets
----------------------
:func:`variance_scaling` (Keras's ``VarianceScaling``) draws with variance ``scale / n`` where
``n`` is ``fan_in``, ``fan_out`` or their average; He/Kaiming, Glorot/Xavier and LeCun are
presets of it:

==================  ==========================  =================================================
name                variance                    source
==================  ==========================  =================================================
kaiming_* / he_*    gain² / fan (gain √2, ReLU)   He et al. 2015, arXiv:1502.01852
xavier_* / glorot_* gain² · 2 / (fan_in+fan_out)  Glorot & Bengio 2010, AISTATS
lecun_*             1 / fan_in                    LeCun et al. 1998, "Efficient BackProp"
torch_default       U(±1/√fan_in): kaiming_uniform(a=√5), PyTorch's Linear/Conv default
orthogonal          orthogonal rows/columns × gain  Saxe et al. 2014, arXiv:1312.6120
==================  ==========================  =================================================

γ and β presets (with provenance)
---------------------------------
``ones`` / ``zeros``: γ = 1, β = 0, the default of PyTorch ≥ 1.2, Keras and Flax.
``uniform``: γ ~ U(0, 1), PyTorch before 1.2 (issue #12259, fixed by PR #12325) and numpy-ml.
``slimming`` (or the number ``0.5``): γ = 0.5, Network Slimming (Liu et al. 2017).
``dcgan``: γ ~ N(1, 0.02), DCGAN (Radford et al. 2016) reference code.
``zeros`` for γ: the last BN of a residual block (Goyal et al. 2017, arXiv:1706.02677).

:func:`get` accepts a registered name, a name with arguments (``"normal(mean=1, std=0.1)"``),
a number (a constant), a callable or an array (copied after a shape check).
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import re
from collections.abc import Callable

import numpy as np

from .errors import ConfigError
from .init_registry import REGISTRY, check_kwargs, names, register

__all__ = [
    "calculate_gain", "compute_fans", "variance_scaling", "get", "initialize", "register",
    "names", "zeros", "ones", "constant", "normal", "uniform", "truncated_normal",
    "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "lecun_uniform",
    "lecun_normal", "orthogonal", "torch_default",
]

# std of a standard normal truncated to [-2, 2]; dividing by it restores the requested variance
_TRUNC_STD = 0.87962566103423978


def compute_fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shape under PyTorch's convention (see module doc)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) < 2:
        raise ConfigError(f"shape {tuple(shape)}: fan-in and fan-out need a weight of 2 or more "
                          "dimensions (out, in, ...); for a vector use ones, zeros, a number "
                          "or normal(...)")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str = "linear", param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's ``calculate_gain`` table)."""
    if nonlinearity in ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is not None and (isinstance(param, bool) or not isinstance(param, int | float)
                                  or not math.isfinite(param)):
            raise ConfigError(f"calculate_gain: param={param!r}; expected a finite number "
                              "(the leaky_relu slope)")
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ConfigError(
        f"calculate_gain: unknown nonlinearity {nonlinearity!r}; expected one of linear, "
        "sigmoid, tanh, relu, leaky_relu, selu"
    )


def _truncated_standard_normal(shape, rng: np.random.Generator, bound: float = 2.0):
    """Standard normal samples redrawn until all lie in ``[-bound, bound]``."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > bound
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > bound
    return out


@register("variance_scaling")
def variance_scaling(shape, rng, *, scale=1.0, mode="fan_in", distribution="truncated_normal",
                     fan_in=None, fan_out=None, dtype=np.float32):
    """Draw with variance ``scale / n``, ``n`` = fan_in, fan_out or (fan_in + fan_out) / 2.

    ``distribution``: ``"truncated_normal"`` (±2σ, σ divided by 0.8796 so the variance is
    exact), ``"normal"``, or ``"uniform"`` on ``[-√(3·var), √(3·var)]``.
    """
    fi, fo = compute_fans(shape)
    fi, fo = fan_in or fi, fan_out or fo
    n = {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2.0}.get(mode)
    if n is None:
        raise ConfigError(f"variance_scaling: mode={mode!r}; expected fan_in, fan_out or fan_avg")
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"variance_scaling: scale={scale}; expected a finite number > 0")
    var = scale / max(1.0, n)
    if distribution == "truncated_normal":
        out = _truncated_standard_normal(shape, rng) * (math.sqrt(var) / _TRUNC_STD)
    elif distribution in ("normal", "untruncated_normal"):
        out = rng.standard_normal(shape) * math.sqrt(var)
    elif distribution == "uniform":
        limit = math.sqrt(3.0 * var)
        out = rng.uniform(-limit, limit, size=shape)
    else:
        raise ConfigError(
            f"variance_scaling: distribution={distribution!r}; expected truncated_normal, "
            "normal or uniform"
        )
    return np.asarray(out, dtype=dtype)


@register("zeros")
def zeros(shape, rng=None, *, dtype=np.float32):
    """All zeros (β, biases; γ of the last BN in a residual block)."""
    return np.zeros(shape, dtype=dtype)


@register("ones")
def ones(shape, rng=None, *, dtype=np.float32):
    """All ones (γ's default in PyTorch ≥ 1.2, Keras, Flax)."""
    return np.ones(shape, dtype=dtype)


@register("constant")
def constant(shape, rng=None, *, value=0.0, dtype=np.float32):
    """Every entry equal to ``value``."""
    return np.full(shape, value, dtype=dtype)


@register("slimming")
def slimming(shape, rng=None, *, dtype=np.float32):
    """γ = 0.5, the initial scale of Network Slimming (Liu et al. 2017)."""
    return np.full(shape, 0.5, dtype=dtype)


@register("normal")
def normal(shape, rng, *, mean=0.0, std=1.0, dtype=np.float32):
    """N(mean, std²)."""
    if std < 0:
        raise ConfigError(f"normal: std={std}; expected >= 0")
    return np.asarray(mean + std * rng.standard_normal(shape), dtype=dtype)


@register("dcgan")
def dcgan(shape, rng, *, dtype=np.float32):
    """γ ~ N(1, 0.02²), the DCGAN reference initialization of BatchNorm scales."""
    return normal(shape, rng, mean=1.0, std=0.02, dtype=dtype)


@register("uniform")
def uniform(shape, rng, *, a=0.0, b=1.0, dtype=np.float32):
    """U(a, b); the default U(0, 1) is PyTorch's γ before 1.2 (issue #12259) and numpy-ml's."""
    if not a <= b:
        raise ConfigError(f"uniform: a={a}, b={b}; expected a <= b")
    return np.asarray(rng.uniform(a, b, size=shape), dtype=dtype)


@register("truncated_normal")
def truncated_normal(shape, rng, *, mean=0.0, std=1.0, bound=2.0, dtype=np.float32):
    """Normal truncated at ``mean ± bound·σ'``; σ' is rescaled so the result's std is ``std``."""
    if bound <= 0:
        raise ConfigError(f"truncated_normal: bound={bound}; expected > 0")
    z = _truncated_standard_normal(shape, rng, bound)
    # std of a standard normal truncated to [-bound, bound]
    phi = math.exp(-bound * bound / 2) / math.sqrt(2 * math.pi)
    tstd = math.sqrt(1 - 2 * bound * phi / math.erf(bound / math.sqrt(2)))
    return np.asarray(mean + z * (std / tstd), dtype=dtype)


@register("xavier_uniform", "glorot_uniform")
def xavier_uniform(shape, rng, *, gain=1.0, fan_in=None, fan_out=None, dtype=np.float32):
    """U(±gain·√(6/(fan_in+fan_out))) (Glorot & Bengio 2010)."""
    return variance_scaling(shape, rng, scale=gain**2, mode="fan_avg", distribution="uniform",
                            fan_in=fan_in, fan_out=fan_out, dtype=dtype)


@register("xavier_normal", "glorot_normal")
def xavier_normal(shape, rng, *, gain=1.0, fan_in=None, fan_out=None, dtype=np.float32):
    """N(0, gain²·2/(fan_in+fan_out)) (Glorot & Bengio 2010)."""
    return variance_scaling(shape, rng, scale=gain**2, mode="fan_avg", distribution="normal",
                            fan_in=fan_in, fan_out=fan_out, dtype=dtype)


@register("kaiming_uniform", "he_uniform")
def kaiming_uniform(shape, rng, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu",
                    fan_in=None, fan_out=None, dtype=np.float32):
    """U(±gain·√(3/fan)), gain from ``nonlinearity`` (√2 for ReLU) (He et al. 2015)."""
    gain = calculate_gain(nonlinearity, a)
    return variance_scaling(shape, rng, scale=gain**2, mode=mode, distribution="uniform",
                            fan_in=fan_in, fan_out=fan_out, dtype=dtype)


@register("kaiming_normal", "he_normal")
def kaiming_normal(shape, rng, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu",
                   fan_in=None, fan_out=None, dtype=np.float32):
    """N(0, gain²/fan), gain from ``nonlinearity`` (√2 for ReLU) (He et al. 2015)."""
    gain = calculate_gain(nonlinearity, a)
    return variance_scaling(shape, rng, scale=gain**2, mode=mode, distribution="normal",
                            fan_in=fan_in, fan_out=fan_out, dtype=dtype)


@register("lecun_uniform")
def lecun_uniform(shape, rng, *, fan_in=None, dtype=np.float32):
    """U(±√(3/fan_in)) (LeCun et al. 1998; Keras's ``lecun_uniform``)."""
    return variance_scaling(shape, rng, scale=1.0, mode="fan_in", distribution="uniform",
                            fan_in=fan_in, dtype=dtype)


@register("lecun_normal")
def lecun_normal(shape, rng, *, fan_in=None, dtype=np.float32):
    """Truncated normal with variance 1/fan_in (LeCun et al. 1998; Keras's ``lecun_normal``)."""
    return variance_scaling(shape, rng, scale=1.0, mode="fan_in",
                            distribution="truncated_normal", fan_in=fan_in, dtype=dtype)


@register("orthogonal")
def orthogonal(shape, rng, *, gain=1.0, dtype=np.float32):
    """A (semi-)orthogonal matrix over ``(shape[0], prod(shape[1:]))`` times ``gain``."""
    if len(shape) < 2:
        raise ConfigError(f"orthogonal: shape {tuple(shape)}; expected at least 2 dimensions")
    rows, cols = shape[0], math.prod(shape[1:])
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make the decomposition unique (uniform over orthogonal mats)
    if rows < cols:
        q = q.T
    return np.asarray(gain * q.reshape(shape), dtype=dtype)


@register("torch_default")
def torch_default(shape, rng, *, fan_in=None, dtype=np.float32):
    """PyTorch's Linear/Conv default for W and b: U(±1/√fan_in) (kaiming_uniform, a=√5)."""
    fi = fan_in or compute_fans(shape)[0]
    bound = 1.0 / math.sqrt(max(1, fi))
    return np.asarray(rng.uniform(-bound, bound, size=shape), dtype=dtype)


_CALL = re.compile(r"^\s*([A-Za-z_][\w]*)\s*\((.*)\)\s*$")


def _parse(spec: str) -> tuple[str, dict]:
    """``"normal(mean=1, std=0.1)"`` -> ``("normal", {"mean": 1, "std": 0.1})``."""
    m = _CALL.match(spec)
    if not m:
        return spec.strip().lower(), {}
    name, args = m.group(1).lower(), m.group(2).strip()
    kwargs = {}
    if args:
        try:
            call = ast.parse(f"f({args})", mode="eval").body
            if call.args:
                raise ValueError("positional")
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError):
            raise ConfigError(
                f"initializer {spec!r}: cannot read the arguments; expected "
                "name(key=value, ...) with numbers or quoted text as values, "
                "e.g. 'normal(mean=1, std=0.1)'"
            ) from None
    return name, kwargs


def get(spec, **kwargs) -> Callable:
    """Resolve a name, ``name(k=v)``, number, callable or array to a ``(shape, rng)`` function."""
    if isinstance(spec, np.ndarray):
        arr = spec.copy()

        def from_array(shape, rng=None, *, dtype=None, **_):
            if tuple(arr.shape) != tuple(shape):
                raise ConfigError(f"initializer array has shape {arr.shape}, expected {shape}")
            return arr.astype(dtype or arr.dtype, copy=True)

        return from_array
    if isinstance(spec, bool):
        raise ConfigError(f"initializer {spec!r}: expected a name, number, callable or array")
    if isinstance(spec, (int, float)):
        return functools.partial(constant, value=float(spec), **kwargs)
    if callable(spec):
        return functools.partial(spec, **kwargs) if kwargs else spec
    if isinstance(spec, str):
        try:
            return functools.partial(constant, value=float(spec), **kwargs)
        except ValueError:
            pass
        name, parsed = _parse(spec)
        if name in REGISTRY:
            params = {**parsed, **kwargs}
            fn = REGISTRY[name]
            check_kwargs(fn, name, params)
            return functools.partial(fn, **params) if params else fn
        raise ConfigError(
            f"unknown initializer {spec!r}; expected a number, an array, a callable or one of: "
            + ", ".join(names())
        )
    raise ConfigError(
        f"initializer of type {type(spec).__name__}: expected a name, number, callable or array"
    )


def initialize(spec, shape, rng, *, dtype=np.float32, fan_in=None, fan_out=None, what="tensor"):
    """Draw an array of ``shape`` with ``spec``; pass dtype/fans to initializers that take them.

    Checks that the result has the requested shape and is finite (``what`` names it in errors).
    """
    fn = get(spec)
    target = fn.func if isinstance(fn, functools.partial) else fn
    try:
        accepted = inspect.signature(target).parameters
    except (TypeError, ValueError):  # builtins without a signature
        accepted = {}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    extra = {}
    for key, val in (("dtype", dtype), ("fan_in", fan_in), ("fan_out", fan_out)):
        if val is not None and (key in accepted or takes_any):
            extra[key] = val
    shape = tuple(int(s) for s in shape)
    need = math.prod(shape) * np.dtype(dtype).itemsize
    if need > 2**30:  # a typo in a layer size: refuse what cannot fit before allocating
        from .data.limits import available_memory

        have = available_memory()
        if have is not None and need > have:
            raise ConfigError(f"initializer for {what}: shape {shape} needs {need / 2**30:,.1f} "
                              f"GiB; {have / 2**30:,.1f} GiB of memory is available")
    if rng is not None and type(rng).__name__ == "Unseeded":  # a layer built without rng=
        rng_param = inspect.signature(target).parameters.get("rng")
        if rng_param is not None and rng_param.default is inspect.Parameter.empty:
            from .nn._args import warn_unseeded

            warn_unseeded(f"the initializer {spec!r} of {what}")
    out = np.asarray(fn(shape, rng, **extra))
    if out.shape != shape:
        raise ConfigError(f"initializer for {what}: returned shape {out.shape}, expected {shape}")
    if out.dtype.kind not in "fiub":
        raise ConfigError(f"initializer for {what}: returned dtype {out.dtype}, expected floats")
    out = out.astype(dtype, copy=False)
    if not np.isfinite(out).all():
        raise ConfigError(f"initializer for {what}: returned non-finite values")
    return out
