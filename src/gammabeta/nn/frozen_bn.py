r"""Frozen batch normalization: a BatchNorm fixed to its evaluation map in every mode (as
torchvision's ``FrozenBatchNorm2d``), and :func:`freeze_batchnorm` to convert a model.

The frozen layers are not BatchNorm subclasses (nothing that updates or synchronizes batch
statistics touches them); their state dict has BatchNorm's keys, so checkpoints load both ways.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ShapeError
from . import _args, _state
from ._bn_base import _affine, _BatchNorm, _centered, _chan_dot, _chan_sum, _col, _compute_dtype
from .batchnorm import BatchNorm1d, BatchNorm2d
from .module import Module, Parameter, check_float_input, is_grad_enabled

__all__ = ["FrozenBatchNorm1d", "FrozenBatchNorm2d", "freeze_batchnorm"]


class _FrozenBatchNorm(Module):
    """Shared implementation; subclasses say which input ranks they accept."""

    _ndims: tuple[int, ...] = ()
    _layout: str = ""
    track_running_stats = True  # what code written for BatchNorm asks (e.g. folding)

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True,
                 trainable_affine: bool = False, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self.num_features = _args.integer(name, "num_features", num_features)
        self.eps = _args.real(name, "eps", eps, lo=0.0, lo_open=True)
        self.affine = _args.boolean(name, "affine", affine)
        self.trainable_affine = _args.boolean(name, "trainable_affine", trainable_affine)
        if self.trainable_affine and not self.affine:
            raise ConfigError(f"{name}: trainable_affine=True needs affine=True (there is no "
                              "γ or β to train)")
        dtype = _args.float_dtype(name, dtype)
        c = (self.num_features,)
        if not self.affine:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        elif self.trainable_affine:
            self.weight = Parameter(np.ones(c, dtype=dtype))
            self.bias = Parameter(np.zeros(c, dtype=dtype))
        else:
            self.register_buffer("weight", np.ones(c, dtype=dtype))
            self.register_buffer("bias", np.zeros(c, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(c, dtype=dtype))
        self.register_buffer("running_var", np.ones(c, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        self._cache = None

    def extra_repr(self) -> str:
        s = f"{self.num_features}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        if not self.affine:
            s += ", affine=False"
        if self.trainable_affine:
            s += ", trainable_affine=True"
        return s

    def _check_state(self, prefix: str, state) -> str | None:
        """Loaded values: ``running_var`` >= 0, ``num_batches_tracked`` a whole number >= 0."""
        return _state.negative(state, prefix + "running_var", "variances") \
            or _state.count(state, prefix + "num_batches_tracked")

    def _gamma_beta(self):
        """(γ, β) as arrays (Parameters' data or the buffers), or (None, None)."""
        if not self.affine:
            return None, None
        w, b = self.weight, self.bias
        return (w.data, b.data) if self.trainable_affine else (w, b)

    def forward(self, x):
        check_float_input(self, x)
        if x.ndim not in self._ndims:
            raise ShapeError(f"{self.describe()}: got a {x.ndim}-D input of shape {x.shape}, "
                             f"expected {self._layout}")
        if x.shape[1] != self.num_features:
            raise ShapeError(f"{self.describe()}: got {x.shape[1]} channels (input shape "
                             f"{x.shape}), expected {self.num_features} channels on axis 1")
        gamma, beta = self._gamma_beta()
        cdt = _compute_dtype(x.dtype, self.running_mean.dtype)
        x3 = x.astype(cdt, copy=False).reshape(x.shape[0], self.num_features, -1)
        k = self.running_mean.astype(x3.dtype)
        inv_std = 1.0 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
        scale = inv_std if gamma is None else gamma * inv_std
        y3 = _affine(np, x3, k, None, scale, beta)
        if is_grad_enabled():
            self._cache = (x3 if self.trainable_affine else None, k, inv_std, x.shape, x.dtype)
        else:
            self._cache = None
        return y3.reshape(x.shape).astype(x.dtype, copy=False)

    def backward(self, dy):
        x3, k, inv_std, shape, in_dtype = self._saved()
        if tuple(dy.shape) != tuple(shape):
            raise ShapeError(f"{self.describe()}.backward: got dy of shape {dy.shape}, "
                             f"expected {shape}")
        self._cache = None
        gamma, _ = self._gamma_beta()
        dy3 = dy.astype(k.dtype, copy=False).reshape(shape[0], self.num_features, -1)
        if self.trainable_affine:  # dγ = Σ dy · x̂, dβ = Σ dy, x̂ = (x − μ)/√(σ² + ε)
            xc = _centered(np, x3, k, None)
            self.weight.accumulate(_chan_dot(np, dy3, xc) * inv_std)
            self.bias.accumulate(_chan_sum(np, dy3))
        g = inv_std if gamma is None else gamma * inv_std
        dx3 = dy3 * _col(g, dy3.dtype)
        return dx3.reshape(shape).astype(in_dtype, copy=False)


class FrozenBatchNorm1d(_FrozenBatchNorm):
    r"""BatchNorm over ``(N, C)`` or ``(N, C, L)`` frozen to its evaluation map, in every mode.

    Whatever ``train()``/``eval()`` say, per channel (axis 1):

        y = γ · (x − running_mean) / √(running_var + ε) + β

    the evaluation output of :class:`BatchNorm1d` with the same state. The running
    statistics never change. Backward, closed form (x̂ = (x − running_mean)/√(running_var + ε)):

        dx = dy · γ / √(running_var + ε)
        dγ = Σ dy · x̂,   dβ = Σ dy           (only with ``trainable_affine=True``)

    With ``trainable_affine=False`` (torchvision's ``FrozenBatchNorm2d``) γ and β are buffers:
    ``parameters()`` does not list them and an optimizer cannot change them. The state dict
    has BatchNorm's keys in BatchNorm's order (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``) in either case, so a BatchNorm checkpoint loads
    into the frozen layer and back. :func:`freeze_batchnorm` converts a whole model.

    Parameters
    ----------
    num_features : int
        C, the number of channels on axis 1.
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    affine : bool, default True
        Whether there are γ (``weight``) and β (``bias``); ``False``: γ = 1, β = 0.
    trainable_affine : bool, default False
        Make γ and β Parameters (trained, with gradients) instead of buffers.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ, β and the running statistics.

    Attributes
    ----------
    weight, bias : Parameter or numpy.ndarray or None
        γ and β, shape ``(C,)``: Parameters if ``trainable_affine``, else buffers; ``None``
        when ``affine=False``.
    running_mean, running_var : numpy.ndarray
        Buffers ``(C,)``, starting at 0 and 1 (copied from the BatchNorm by
        :func:`freeze_batchnorm`).
    num_batches_tracked : numpy.ndarray
        Buffer, a 0-d int64, kept as loaded (BatchNorm's key; never incremented).

    Shape
    -----
    - Input: ``(N, C)`` or ``(N, C, L)``, floating point (N = 1 is fine in every mode).
    - Output: the input's shape and dtype.

    References
    ----------
    - torchvision.ops.FrozenBatchNorm2d (PyTorch's vision library).
    - Ioffe & Szegedy (2015), "Batch Normalization", ICML, arXiv:1502.03167.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> bn = nn.BatchNorm1d(3)
    >>> x = np.random.default_rng(0).normal(2.0, 3.0, size=(16, 3)).astype(np.float32)
    >>> _ = bn(x)  # one training step moves the running statistics
    >>> frozen = nn.FrozenBatchNorm1d(3)
    >>> _ = frozen.load_state_dict(bn.state_dict())
    >>> y = frozen.train()(x)  # training mode: still the running statistics
    >>> bool(np.array_equal(y, bn.eval()(x))), [n for n, _ in frozen.named_parameters()]
    (True, [])
    >>> frozen.backward(np.ones_like(y)).shape
    (16, 3)
    """

    _ndims = (2, 3)
    _layout = "2-D (N, C) or 3-D (N, C, L)"


class FrozenBatchNorm2d(_FrozenBatchNorm):
    r"""BatchNorm over ``(N, C, H, W)`` frozen to its evaluation map, in every mode.

    As torchvision's ``FrozenBatchNorm2d``, per channel and whatever the mode:

        y = γ · (x − running_mean) / √(running_var + ε) + β
        dx = dy · γ / √(running_var + ε),   dγ = Σ dy · x̂,   dβ = Σ dy   (dγ, dβ if trainable)

    γ and β are buffers unless ``trainable_affine=True`` (then Parameters); the state dict
    has :class:`BatchNorm2d`'s keys. See :class:`FrozenBatchNorm1d` and
    :func:`freeze_batchnorm`.

    Parameters
    ----------
    num_features : int
        C, the number of channels on axis 1.
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    affine : bool, default True
        Whether there are γ (``weight``) and β (``bias``); ``False``: γ = 1, β = 0.
    trainable_affine : bool, default False
        Make γ and β Parameters (trained, with gradients) instead of buffers.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ, β and the running statistics.

    Attributes
    ----------
    weight, bias : Parameter or numpy.ndarray or None
        γ and β, shape ``(C,)``: Parameters if ``trainable_affine``, else buffers; ``None``
        when ``affine=False``.
    running_mean, running_var : numpy.ndarray
        Buffers ``(C,)``, starting at 0 and 1.
    num_batches_tracked : numpy.ndarray
        Buffer, a 0-d int64, kept as loaded (never incremented).

    Shape
    -----
    - Input: ``(N, C, H, W)``, floating point.
    - Output: the input's shape and dtype.

    References
    ----------
    - torchvision.ops.FrozenBatchNorm2d (PyTorch's vision library).

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> frozen = nn.FrozenBatchNorm2d(2, trainable_affine=True)
    >>> [n for n, _ in frozen.named_parameters()], list(frozen.state_dict())[:2]
    (['weight', 'bias'], ['weight', 'bias'])
    >>> x = np.ones((1, 2, 3, 3), dtype=np.float32)
    >>> y = frozen(x)  # running_mean 0, running_var 1: y = x / √(1 + ε)
    >>> bool(np.allclose(y, 1.0)), frozen.backward(np.ones_like(y)).shape
    (True, (1, 2, 3, 3))
    >>> frozen.bias.grad.tolist()  # dβ = Σ dy over the 9 positions
    [9.0, 9.0]
    """

    _ndims = (4,)
    _layout = "4-D (N, C, H, W)"


def freeze_batchnorm(model: Module, trainable_affine: bool = False) -> Module:
    """Replace every BatchNorm1d/BatchNorm2d (and subclass) in ``model`` by its frozen twin.

    Each :class:`BatchNorm1d` (also :class:`GhostBatchNorm1d`, :class:`BatchRenorm1d`)
    becomes a :class:`FrozenBatchNorm1d`, each :class:`BatchNorm2d` (and subclasses) a
    :class:`FrozenBatchNorm2d`, with copies of ``running_mean``, ``running_var``,
    ``num_batches_tracked``, γ and β, the same ``eps``, ``affine``, dtype and train/eval flag,
    at the same place in the tree (Sequential, Residual, any Module), so state-dict keys are
    unchanged. A layer shared by several parents stays shared. Afterwards the model's output
    in training mode equals its output in evaluation mode, and training leaves the running
    statistics alone. Build the optimizer *after* freezing: with ``trainable_affine=False``
    γ and β are buffers and ``model.parameters()`` no longer lists them.

    A :class:`SyncBatchNorm` (its input rank is not fixed) or a BatchNorm with
    ``track_running_stats=False`` (nothing to freeze) raises :class:`ConfigError` before
    anything is replaced.

    Parameters
    ----------
    model : Module
        Converted in place; if it is itself a BatchNorm, the new frozen layer is returned.
    trainable_affine : bool, default False
        Keep γ and β trainable (Parameters); ``False``: freeze them too (buffers).

    Returns
    -------
    Module
        ``model``, or the frozen layer that replaces a BatchNorm root.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> rng = np.random.default_rng(0)
    >>> model = nn.Sequential(nn.Linear(4, 8, rng=rng), nn.BatchNorm1d(8), nn.ReLU(),
    ...                       nn.Linear(8, 2, rng=rng))
    >>> x = rng.standard_normal((16, 4)).astype(np.float32)
    >>> _ = model(x)  # a training step: running statistics move
    >>> ref = model.eval()(x)
    >>> model = nn.freeze_batchnorm(model.train())
    >>> model[1]
    FrozenBatchNorm1d(8)
    >>> bool(np.array_equal(model(x), ref)), len(list(model.parameters()))
    (True, 4)
    """
    trainable_affine = _args.boolean("freeze_batchnorm", "trainable_affine", trainable_affine)
    if not isinstance(model, Module):
        raise _args.ConfigTypeError(f"freeze_batchnorm: model is a {type(model).__name__}; "
                                    "expected a gammabeta.nn.Module")
    for name, m in model.named_modules():
        if not isinstance(m, _BatchNorm):
            continue
        where = f"freeze_batchnorm: layer {name or '(root)'} {m.describe()}"
        if not isinstance(m, (BatchNorm1d, BatchNorm2d)):
            raise ConfigError(f"{where} is not a BatchNorm1d/BatchNorm2d (its input rank is "
                              "not fixed); only those and their subclasses can be frozen")
        if not m.track_running_stats:
            raise ConfigError(f"{where} has track_running_stats=False: no running statistics "
                              "to freeze")
    return _freeze(model, trainable_affine, {})


def _freeze(m: Module, trainable: bool, memo: dict) -> Module:
    if id(m) in memo:
        return memo[id(m)]
    if isinstance(m, (BatchNorm1d, BatchNorm2d)):
        out = _frozen_copy(m, trainable)
    else:
        out = m
        for name, child in list(m._modules.items()):
            if child is not None:
                m._modules[name] = _freeze(child, trainable, memo)
    memo[id(m)] = out
    return out


def _frozen_copy(bn: _BatchNorm, trainable: bool) -> _FrozenBatchNorm:
    cls = FrozenBatchNorm2d if isinstance(bn, BatchNorm2d) else FrozenBatchNorm1d
    out = cls(bn.num_features, bn.eps, bn.affine, trainable and bn.affine,
              dtype=bn.running_mean.dtype)
    if bn.affine:
        gamma, beta = out._gamma_beta()
        gamma[...] = bn.weight.data
        beta[...] = bn.bias.data
    out.running_mean[...] = bn.running_mean
    out.running_var[...] = bn.running_var
    out.num_batches_tracked = np.array(bn.num_batches_tracked, dtype=np.int64)
    object.__setattr__(out, "training", bn.training)
    return out
