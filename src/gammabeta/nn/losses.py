r"""Loss functions with closed-form gradients: cross-entropy and mean squared error.

Losses are not Modules: they take two inputs. ``loss(input, target)`` returns the loss (a
Python float for ``reduction="mean"``/``"sum"``, the per-sample array for ``"none"``) and
keeps a cache; ``loss.backward(grad=1.0)`` returns d loss / d input with the input's shape
and dtype, ready for ``model.backward``.
"""

from __future__ import annotations

import numpy as np

from ..backend import compute_dtype, is_floating
from ..errors import ConfigError, DataError, DTypeError, NonFiniteError, ShapeError
from . import _args
from ._softmax import log_softmax, softmax

__all__ = ["softmax", "log_softmax", "CrossEntropyLoss", "MSELoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _first_bad(a) -> str:
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    return f"index {bad} (value {a[bad]})"


class _Loss:
    """Shared parts: reduction checks, input checks, the cache and the upstream gradient."""

    def __init__(self, reduction: str = "mean"):
        self.reduction = _args.choice(type(self).__name__, "reduction", reduction, _REDUCTIONS)
        self._cache = None

    def describe(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"

    __repr__ = describe

    def __call__(self, input, target):
        return self.forward(input, target)

    def _check_input(self, x, min_ndim: int = 0):
        name = type(self).__name__
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise DTypeError(f"{name}: got input of type {type(x).__name__}, expected a "
                             "floating-point array")
        if not is_floating(x.dtype):
            raise DTypeError(f"{name}: got input of dtype {x.dtype}, expected a floating-point "
                             "array (logits/predictions); convert it, e.g. x.astype(np.float32)")
        if x.ndim < min_ndim:
            raise ShapeError(f"{name}: got a {x.ndim}-D input of shape {x.shape}, expected "
                             "(N, C) or (N, C, d1, ...)")
        if not np.isfinite(x).all():
            raise NonFiniteError(f"{name}: non-finite input at {_first_bad(x)}; expected "
                                 "finite numbers")
        return x

    def _saved(self):
        if self._cache is None:
            raise RuntimeError(f"{self.describe()}.backward: no cached forward pass; call the "
                               "loss on (input, target) first")
        return self._cache

    def _upstream(self, grad, per_shape, dtype):
        """The upstream gradient: a scalar, or (``"none"``) an array of the per-sample shape."""
        g = np.asarray(grad, dtype=dtype)
        if self.reduction != "none":
            if g.size != 1:
                raise ShapeError(f"{self.describe()}.backward: grad has shape {g.shape}, "
                                 "expected a scalar")
            return g.reshape(())
        try:
            return np.broadcast_to(g, per_shape)
        except ValueError:
            raise ShapeError(f"{self.describe()}.backward: grad has shape {g.shape}, expected "
                             f"the per-sample loss shape {per_shape}") from None


class CrossEntropyLoss(_Loss):
    r"""Softmax cross-entropy on logits, as ``torch.nn.CrossEntropyLoss``.

    Not a :class:`Module`: ``loss(input, target)`` returns the loss and keeps a cache, and
    ``loss.backward(grad=1.0)`` returns d loss / d input (the input's shape and dtype).
    With the stable log-probabilities ``log p_ic = log_softmax(z_i)_c``, label smoothing ε,
    C classes and class weights w (w = 1 without ``weight``), sample i's loss is:

        ℓ_i = −Σ_c a_ic · log p_ic
        class indices y_i:      a_ic = (1 − ε) · w_{y_i} · [c = y_i] + ε · w_c / C
                                (a_i = 0 where y_i == ignore_index)
        class probabilities t:  a_ic = w_c · ((1 − ε) · t_ic + ε / C)

    ``"mean"`` divides Σ_i ℓ_i by Σ w_{y_i} over the non-ignored samples (their count
    without ``weight``; NaN when all are ignored, as in PyTorch), or, for probability
    targets, by the number of samples (N·d1·…). The gradient (closed form):

        ∂ℓ_i / ∂z_ic = p_ic · Σ_k a_ik − a_ic

    which without weights is ``softmax(z) − onehot_smoothed``; for ``"mean"`` divided by the
    same denominator as the loss, and times the upstream ``grad``.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"none"`` returns the per-sample losses; ``"mean"`` and ``"sum"`` a Python float.
    label_smoothing : float, default 0.0
        ε in [0, 1].
    weight : array_like of shape (C,), optional
        Per-class rescaling w (keyword-only).
    ignore_index : int, default -100
        Class-index targets equal to it contribute neither loss nor gradient
        (keyword-only).

    Shape
    -----
    - Input: logits ``(N, C)`` or ``(N, C, d1, …)``, floating point and finite.
    - Target: integer class indices ``(N,)`` / ``(N, d1, …)``, or class probabilities of
      the input's shape (floating point).
    - Output: a float, or ``(N,)`` / ``(N, d1, …)`` for ``reduction="none"``; ``backward``
      returns the input's shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import CrossEntropyLoss, softmax
    >>> z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
    >>> target = np.array([0, 1])
    >>> loss = CrossEntropyLoss()
    >>> round(loss(z, target), 4)
    0.2851
    >>> dz = loss.backward()
    >>> bool(np.allclose(dz, (softmax(z) - np.eye(3)[target]) / 2))
    True
    >>> smooth = CrossEntropyLoss(label_smoothing=0.1, weight=[1.0, 2.0, 1.0], ignore_index=-1)
    >>> round(smooth(z, np.array([0, -1])), 4)  # the second sample is ignored
    0.5609
    >>> CrossEntropyLoss(reduction="none")(z, target).round(4).tolist()
    [0.417, 0.1532]
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, *,
                 weight=None, ignore_index: int = -100):
        super().__init__(reduction)
        name = "CrossEntropyLoss"
        self.label_smoothing = _args.real(name, "label_smoothing", label_smoothing, 0.0, 1.0)
        if weight is not None:
            try:
                weight = np.asarray(weight)
            except (TypeError, ValueError):
                weight = np.asarray(None)  # refused just below
            if weight.ndim != 1 or not (is_floating(weight.dtype) or weight.dtype.kind in "iu"):
                raise ConfigError(f"{name}: weight has shape {weight.shape} and dtype "
                                  f"{weight.dtype}; expected a 1-D numeric array of shape (C,)")
            if weight.dtype.kind == "f" and not np.isfinite(weight).all():
                raise ConfigError(f"{name}: weight holds a non-finite value at "
                                  f"{_first_bad(weight)}; expected finite numbers")
        self.weight = weight
        self.ignore_index = _args.integer(name, "ignore_index", ignore_index, None, None,
                                          "an int")

    def describe(self) -> str:
        return (f"CrossEntropyLoss(reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing})")

    __repr__ = describe

    def forward(self, input, target):
        """The loss; ``"none"`` gives the per-sample losses (shape of ``target`` indices)."""
        x = self._check_input(input, min_ndim=2)
        n, c = x.shape[:2]
        per_shape = (n, *x.shape[2:])
        ct = compute_dtype(x.dtype)
        z = (x if x.ndim == 2 else np.moveaxis(x, 1, -1).reshape(-1, c)).astype(ct, copy=False)
        m = z.shape[0]
        w = None
        if self.weight is not None:
            if self.weight.shape != (c,):
                raise ShapeError(f"CrossEntropyLoss: weight has shape {self.weight.shape}, "
                                 f"expected ({c},) for {c} classes")
            w = self.weight.astype(ct)
        target = np.asarray(target)
        eps = self.label_smoothing
        if target.dtype.kind in "iu":
            if target.shape != per_shape:
                raise ShapeError(self._shape_msg(target.shape, per_shape, x.shape, "indices"))
            y = target.reshape(-1).astype(np.int64)
            valid = self._valid_targets(y, c)  # None: every target is a class to count
            rows = np.arange(m)
            if w is None and eps == 0 and valid is None:  # one-hot targets: pick, no weights
                logp = log_softmax(z)
                picks = rows * c + y  # the targets' flat indices in (m, c)
                per = -logp.reshape(-1).take(picks)
                denom = np.int64(m)  # (an int64, as valid.sum() below: the same division)
                self._cache = (np.exp(logp), picks, denom, x.shape, x.dtype, per_shape)
                return self._reduce(per, denom, per_shape, x.dtype)
            if valid is None:
                valid = np.ones(m, dtype=bool)
            yv = np.where(valid, y, 0)
            a = np.empty((m, c), dtype=ct)
            a[...] = eps / c if w is None else (eps / c) * w
            a[rows, yv] += (1 - eps) if w is None else (1 - eps) * w[yv]
            a[~valid] = 0
            denom = valid.sum() if w is None else w[yv][valid].sum()
        elif is_floating(target.dtype):
            if target.shape != x.shape:
                raise ShapeError(self._shape_msg(target.shape, x.shape, x.shape,
                                                 "probabilities"))
            if not np.isfinite(target).all():
                raise NonFiniteError(f"CrossEntropyLoss: non-finite target at "
                                     f"{_first_bad(target)}; expected finite probabilities")
            a = np.moveaxis(target, 1, -1).reshape(-1, c).astype(ct)
            if eps:
                a = a * (1 - eps) + eps / c
            if w is not None:
                a *= w
            denom = m
        else:
            raise DTypeError(f"CrossEntropyLoss: got target of dtype {target.dtype}, expected "
                             "integer class indices or floating class probabilities")
        logp = log_softmax(z)
        per = -np.sum(a * logp, axis=1)
        self._cache = (np.exp(logp), a, denom, x.shape, x.dtype, per_shape)
        return self._reduce(per, denom, per_shape, x.dtype)

    def _valid_targets(self, y, c: int):
        """Which class indices ``y`` count (not ``ignore_index``), or ``None`` when all do;
        a clear error for any other index outside ``[0, c)``. Two reductions in the common
        case (every index in range, ``ignore_index`` outside it) instead of five passes."""
        ignore = self.ignore_index
        if y.size and 0 <= y.min() and y.max() < c and not 0 <= ignore < c:
            return None
        valid = y != ignore
        bad = valid & ((y < 0) | (y >= c))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"CrossEntropyLoss: target value {y[i]} (at flat index {i}) is out of "
                f"range for {c} classes; expected 0 <= target < {c} or ignore_index={ignore}")
        return None if valid.all() else valid

    def _reduce(self, per, denom, per_shape, dtype):
        if self.reduction == "none":
            return per.reshape(per_shape).astype(dtype)
        total = per.sum()
        if self.reduction == "sum":
            return float(total)
        if denom:
            return float(np.divide(total, denom))
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.divide(total, denom))  # all ignored: NaN, as in PyTorch

    def _shape_msg(self, got, want, xshape, kind) -> str:
        if len(got) >= 1 and got[0] != xshape[0]:
            return (f"CrossEntropyLoss: input has N={xshape[0]} samples but target has "
                    f"{got[0]} (target shape {got}, input shape {xshape})")
        hint = ("; class indices need an integer dtype"
                if kind == "probabilities" and got == (xshape[0], *xshape[2:]) else "")
        return (f"CrossEntropyLoss: target of shape {got} does not fit input of shape {xshape}; "
                f"expected class {kind} of shape {want}{hint}")

    def backward(self, grad=1.0):
        """d loss / d input: ``(p * sum_k a_k - a) * grad / denom``, input's shape and dtype."""
        p, a, denom, xshape, dtype, per_shape = self._saved()
        g = self._upstream(grad, per_shape, p.dtype)
        if a.ndim == 1:  # one-hot targets, as flat indices of the ones: p·1 − onehot
            dz = p.copy()
            dz.reshape(-1)[a] -= 1
        else:
            dz = p * a.sum(axis=1, keepdims=True) - a
        if self.reduction == "none":
            dz *= g.reshape(-1, 1)
        else:
            scale = g / denom if self.reduction == "mean" else g
            dz *= scale.astype(p.dtype)
        if len(xshape) == 2:
            return dz.astype(dtype, copy=False)
        c = xshape[1]
        dx = np.moveaxis(dz.reshape(xshape[0], *xshape[2:], c), -1, 1)
        return np.ascontiguousarray(dx, dtype=dtype)


class MSELoss(_Loss):
    r"""Mean squared error, as ``torch.nn.MSELoss``.

    Not a :class:`Module`: ``loss(input, target)`` returns the loss and keeps a cache, and
    ``loss.backward(grad=1.0)`` returns d loss / d input. Elementwise, over n elements:

        ℓ_i = (x_i − y_i)²
        "mean": Σ ℓ_i / n      d/dx = 2 (x − y) / n
        "sum":  Σ ℓ_i          d/dx = 2 (x − y)
        "none": ℓ              d/dx = 2 (x − y)

    times the upstream ``grad``. Input and target must have the same shape (no silent
    broadcasting, unlike PyTorch, which only warns).

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"none"`` returns the elementwise squared errors; the others a Python float.

    Shape
    -----
    - Input: any shape ``(*)``, floating point and finite.
    - Target: the input's shape (integer or floating point).
    - Output: a float, or ``(*)`` for ``reduction="none"``; ``backward`` returns ``(*)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta.nn import MSELoss
    >>> x, y = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 1.0])
    >>> loss = MSELoss()
    >>> round(loss(x, y), 4)  # (0.25 + 0 + 4) / 3
    1.4167
    >>> loss.backward().round(4).tolist()  # 2 (x − y) / 3
    [-0.3333, 0.0, 1.3333]
    >>> MSELoss(reduction="none")(x, y).tolist()
    [0.25, 0.0, 4.0]
    """

    def forward(self, input, target):
        """The loss; ``"none"`` gives the elementwise squared errors."""
        x = self._check_input(input)
        name = "MSELoss"
        t = np.asarray(target)
        if t.dtype.kind not in "iuf":
            raise DTypeError(f"{name}: got target of dtype {t.dtype}, expected a real array")
        if t.shape != x.shape:
            raise ShapeError(f"{name}: target has shape {t.shape}, input has shape {x.shape}; "
                             "expected equal shapes")
        if t.dtype.kind == "f" and not np.isfinite(t).all():
            raise NonFiniteError(f"{name}: non-finite target at {_first_bad(t)}; expected "
                                 "finite numbers")
        ct = compute_dtype(x.dtype)
        diff = x.astype(ct, copy=False) - t.astype(ct, copy=False)
        self._cache = (diff, x.dtype)
        sq = diff * diff
        if self.reduction == "none":
            return sq.astype(x.dtype)
        return float(sq.sum() if self.reduction == "sum" else sq.mean())

    def backward(self, grad=1.0):
        """d loss / d input: ``2 (input - target) * grad`` (divided by ``n`` for ``"mean"``)."""
        diff, dtype = self._saved()
        g = self._upstream(grad, diff.shape, diff.dtype)
        scale = 2.0 / diff.size if self.reduction == "mean" and diff.size else 2.0
        return (diff * (g * scale)).astype(dtype)
