"""Optimizers with PyTorch's argument names, defaults and update formulas.

Every update happens *in place* on ``p.data`` (layers and checkpoints hold references to
those arrays) and in the parameter's own dtype: hyper-parameters are turned into Python
floats, which NumPy treats as "weak" scalars, so a float32 parameter stays float32 and so
does its optimizer state. Parameters whose ``grad`` is ``None`` or whose ``requires_grad``
is ``False`` are skipped (no update, no state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from numbers import Real

import numpy as np

from ..backend import namespace, optim_kernels
from ..errors import ConfigError
from ..nn.module import Parameter
from .base import Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "param_groups"]


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    For each parameter :math:`\theta` with gradient :math:`g_t` (negated if ``maximize``)::

        g  <- g + weight_decay * theta                       (if weight_decay != 0)
        b  <- g                                              (first step: a copy)
        b  <- momentum * b + (1 - dampening) * g             (later steps)
        g  <- g + momentum * b  if nesterov  else  b         (if momentum != 0)
        theta <- theta - lr * g

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty added to the gradient (coupled decay).
    nesterov : bool, default False
        Requires ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
        Ascend instead of descend.

    Notes
    -----
    State per parameter: ``"momentum_buffer"`` (only when momentum is non-zero).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=bool(nesterov),
                        maximize=bool(maximize))
        self._validate(defaults)
        super().__init__(params, defaults)

    def _validate(self, group):
        self._check("lr", group["lr"], lambda v: v >= 0, "a number >= 0")
        self._check("momentum", group["momentum"], lambda v: v >= 0, "a number >= 0")
        self._check("dampening", group["dampening"], math.isfinite,
                    "a finite number")
        self._check("weight_decay", group["weight_decay"], lambda v: v >= 0,
                    "a number >= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ConfigError(f"SGD: nesterov=True requires momentum > 0 and dampening == 0, got "
                              f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _update(self, group):
        lr, mom = float(group["lr"]), float(group["momentum"])
        damp, wd = float(group["dampening"]), float(group["weight_decay"])
        for p, g in self._grads(group):
            if group["maximize"]:
                g = -g
            if wd != 0:
                g = g + wd * p.data
            if mom != 0:
                st = self.state.setdefault(p, {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = np.array(g, copy=True)
                else:
                    buf *= mom
                    buf += (1 - damp) * g
                g = g + mom * buf if group["nesterov"] else buf
            p.data -= lr * g


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with PyTorch's bias correction, as ``torch.optim.Adam``.

    At step :math:`t` (1, 2, ...), with gradient :math:`g` (negated if ``maximize``)::

        g  <- g + weight_decay * theta            (Adam: L2 added to the gradient)
        theta <- theta * (1 - lr * weight_decay)  (AdamW: decoupled decay, instead)
        m  <- beta1 * m + (1 - beta1) * g         (computed as m + (1 - beta1) (g - m))
        v  <- beta2 * v + (1 - beta2) * g^2
        v_max <- max(v_max, v)                    (amsgrad; v_max replaces v below)
        theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the bias-corrected root of the second moment.
    weight_decay : float, default 0
    amsgrad : bool, default False
        Use the running maximum of ``v`` (Reddi et al., 2018).
    maximize : bool, default False (keyword-only)
    decoupled_weight_decay : bool, default False (keyword-only)
        ``True`` gives AdamW.

    Notes
    -----
    State per parameter: ``"step"`` (int), ``"exp_avg"``, ``"exp_avg_sq"`` and, with
    amsgrad, ``"max_exp_avg_sq"``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=bool(amsgrad), maximize=bool(maximize),
                        decoupled_weight_decay=bool(decoupled_weight_decay))
        self._validate(defaults)
        super().__init__(params, defaults)

    def _validate(self, group):
        self._check("lr", group["lr"], lambda v: v >= 0, "a number >= 0")
        self._check("eps", group["eps"], lambda v: v >= 0, "a number >= 0")
        self._check("weight_decay", group["weight_decay"], lambda v: v >= 0,
                    "a number >= 0")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"{type(self).__name__}: invalid betas={betas!r}; expected a "
                              "pair (beta1, beta2)")
        for i, b in enumerate(betas):
            self._check(f"betas[{i}]", b, lambda v: 0 <= v < 1, "a number in [0, 1)")
        group["betas"] = tuple(betas)

    def _update(self, group):
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        b1, b2 = (float(b) for b in group["betas"])
        w1 = 1 - b1
        kern = None if group["amsgrad"] else optim_kernels(np)
        hyper = (lr, eps, wd, b1, b2, group["decoupled_weight_decay"])
        fused = {}  # (dtype, step) -> the fused kernel's scalar arguments (one per group)
        for p, g in self._grads(group):
            if group["maximize"]:
                g = -g
            st = self.state.get(p)
            if not st:
                zeros = namespace(p.data).zeros_like
                st = self.state[p] = {"step": 0, "exp_avg": zeros(p.data),
                                      "exp_avg_sq": zeros(p.data)}
            st["step"] += 1
            t = st["step"]
            if kern is not None and _fused(kern, fused, hyper, p.data, g, st, t):
                continue
            xp = namespace(p.data)
            if wd != 0:
                if group["decoupled_weight_decay"]:
                    p.data *= 1 - lr * wd
                else:
                    g = g + wd * p.data
            m, v = st["exp_avg"], st["exp_avg_sq"]
            tmp = self._scratch(p.data)  # every step below in place: no temporaries
            xp.subtract(g, m, out=tmp)
            if w1 < 0.5:  # torch.lerp's two branches, for bit-level agreement
                tmp *= w1
                m += tmp  # m + w1 (g - m)
            else:
                tmp *= 1 - w1
                xp.subtract(g, tmp, out=m)  # g - (g - m)(1 - w1)
            v *= b2
            xp.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            if group["amsgrad"]:
                vmax = st.setdefault("max_exp_avg_sq", xp.zeros_like(p.data))
                xp.maximum(vmax, v, out=vmax)
                v = vmax
            step_size = lr / (1 - b1**t)
            xp.sqrt(v, out=tmp)  # denom = sqrt(v) / sqrt(1 - b2^t) + eps
            tmp /= (1 - b2**t) ** 0.5
            tmp += eps
            xp.divide(m, tmp, out=tmp)
            tmp *= step_size
            p.data -= tmp


def _fused(kern, cache: dict, hyper: tuple, data, g, st: dict, t: int) -> bool:
    """Run Adam's update above as one compiled pass (:mod:`gammabeta.optim._kernels`, bit for
    bit the same) when it applies: NumPy arrays, C-contiguous, float32 or float64, one dtype;
    ``False`` otherwise. ``hyper``: the group's ``(lr, eps, weight_decay, beta1, beta2,
    decoupled_weight_decay)``; ``cache`` keeps the scalar arguments of a group for a (dtype,
    step): computing them took as long as the update of a small tensor."""
    m, v = st["exp_avg"], st["exp_avg_sq"]
    dt = data.dtype
    if not (type(data) is type(g) is type(m) is type(v) is np.ndarray
            and dt == g.dtype == m.dtype == v.dtype and dt in _FUSED_DTYPES
            and data.flags.c_contiguous and g.flags.c_contiguous
            and m.flags.c_contiguous and v.flags.c_contiguous):
        return False
    scalars = cache.get((dt, t))
    if scalars is None:
        scalars = cache[dt, t] = _fused_scalars(*hyper, dt.type, t)
    kern.adam_update(data.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), *scalars)
    return True


def _fused_scalars(lr, eps, wd, b1, b2, decoupled, f, t: int) -> tuple:
    """The fused kernel's scalars for step ``t``, each rounded to the dtype ``f`` as NumPy
    rounds a Python float operand of that dtype's array."""
    w1 = 1 - b1
    return (f(1 - lr * wd if decoupled and wd != 0 else 1), f(wd if not decoupled else 0),
            f(w1), f(1 - w1), w1 < 0.5, f(b2), f(1 - b2), f((1 - b2**t) ** 0.5), f(eps),
            f(lr / (1 - b1**t)))


_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``.

    Same update as :class:`Adam` except that the decay is applied to the weights directly,
    ``theta <- theta * (1 - lr * weight_decay)``, before the moment updates, so it is not
    rescaled by the adaptive denominator. Default ``weight_decay=1e-2``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)


def param_groups(model, weight_decay: float,
                 no_decay: Callable[[str, Parameter], bool] | Iterable[str] | None = None):
    """Split a model's parameters into a decayed and a non-decayed group.

    Weights with ``ndim >= 2`` (linear and convolution kernels) are decayed; every parameter
    with ``ndim <= 1`` -- biases and BatchNorm's gamma and beta -- is not. Decaying gamma
    pulls the scale BatchNorm has just normalised towards zero (with the following layer
    free to undo it, the penalty only fights the optimiser), and decaying biases or beta
    penalises shifts that carry no capacity; Goyal et al. (2017, "Accurate, Large Minibatch
    SGD", section on "no bias decay") train ResNets with decay on weights only.

    Parameters
    ----------
    model : Module or iterable of (name, Parameter)
    weight_decay : float
        The decay of the first group; the second group gets ``0.0``.
    no_decay : callable or iterable of str, optional
        ``callable(name, param) -> bool`` replaces the ndim rule; an iterable of substrings
        excludes, in addition to ``ndim <= 1``, every parameter whose name contains one.

    Returns
    -------
    list of dict
        ``[{"params": decayed, "weight_decay": weight_decay},
        {"params": not_decayed, "weight_decay": 0.0}]``, ready for any optimizer.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, Real) \
            or not weight_decay >= 0:
        raise ConfigError(f"param_groups: invalid weight_decay={weight_decay!r}; expected a "
                          "number >= 0")
    named = model.named_parameters() if hasattr(model, "named_parameters") else model
    if no_decay is None:
        def skip(name, p):
            return p.data.ndim <= 1
    elif callable(no_decay):
        skip = no_decay
    else:
        patterns = tuple(no_decay)

        def skip(name, p):
            return p.data.ndim <= 1 or any(s in name for s in patterns)
    decay, keep, seen = [], [], set()
    for name, p in named:
        if id(p) in seen:
            continue
        seen.add(id(p))
        (keep if skip(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": keep, "weight_decay": 0.0}]
