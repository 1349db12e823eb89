r"""Group normalization (Wu & He 2018, ECCV, arXiv:1803.08494) with PyTorch's semantics.

The formulas are documented on :class:`GroupNorm`; the numerics and the implementation (a
shifted two-pass algorithm per group, float64 totals; Numba kernels for large inputs, NumPy
otherwise) are those of :mod:`gammabeta.nn.layernorm`, whose row machinery this layer uses:
one row per sample and group, ``C/G`` segments of ``H·W`` values, γ/β per segment.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, ShapeError
from . import _args
from .layernorm import _RowNorm
from .module import check_float_input

__all__ = ["GroupNorm"]


class GroupNorm(_RowNorm):
    """Group normalization over ``(N, C, *)`` inputs, as in PyTorch.

    The C channels are split into G groups of C/G consecutive channels. Each sample's group —
    its C/G channels at every spatial position, m = (C/G)·H·W values (m = C/G for an ``(N, C)``
    input) — is normalized with its own mean and biased variance; then each channel is scaled
    and shifted by its own γ and β:

        μ  = (1/m) Σ x,    σ² = (1/m) Σ (x − μ)²        over one sample's group
        x̂  = (x − μ) / √(σ² + ε)
        y  = γ_c · x̂ + β_c                              (γ, β per channel, shape (C,))

    G = 1 normalizes all channels of a sample together (LayerNorm over (C, H, W) with
    per-channel γ); G = C normalizes each channel alone (InstanceNorm with γ/β). Training and
    evaluation compute the same thing: the statistics are the sample's own, there are no
    running statistics, and ``train()``/``eval()`` change nothing; nor does the batch size.

    Backward, closed form (per sample and group; ĝ = γ_c · dy, means over the group's m
    values; dγ and dβ are summed over the batch and the spatial positions of each channel):

        dx = (1/√(σ² + ε)) · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))
        dγ_c = Σ dy · x̂,     dβ_c = Σ dy

    Defaults as in PyTorch: ``eps=1e-5``, γ = 1, β = 0. A ``num_channels`` that ``num_groups``
    does not divide is refused with a :class:`~gammabeta.errors.ConfigError`.

    Parameters
    ----------
    num_groups : int
        G, the number of groups; it must divide ``num_channels``.
    num_channels : int
        C, the number of channels on axis 1.
    eps : float, default 1e-5
        ε > 0, added to the variance before the square root.
    affine : bool, default True
        Learn γ (``weight``) and β (``bias``), one per channel; ``False``: neither.
    weight_init : initializer, default "ones"
        Initial γ: any spec of :func:`gammabeta.init.get` (``"ones"``, ``0.5``, ``"normal"``).
    bias_init : initializer, default "zeros"
        Initial β, likewise.
    rng : numpy.random.Generator, optional
        Used by random γ/β initializers; ``None``: a new unseeded generator.
    dtype : numpy dtype, default numpy.float32
        Floating dtype of γ and β.
    bias : bool, default True
        Keyword only (as in PyTorch). With ``affine``, learn β too; ``False``: no β.

    Attributes
    ----------
    weight : Parameter or None
        γ, shape ``(C,)``; ``None`` when ``affine=False``.
    bias : Parameter or None
        β, shape ``(C,)``; ``None`` without ``affine`` or ``bias``.

    Shape
    -----
    - Input: ``(N, C, *)``, floating point: ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)``, ...
    - Output: the input's shape and dtype.

    References
    ----------
    - Wu & He (2018), "Group Normalization", ECCV, arXiv:1803.08494.

    Examples
    --------
    >>> import numpy as np
    >>> from gammabeta import nn
    >>> gn = nn.GroupNorm(2, 6)  # channels 0-2 and 3-5 are normalized together
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(4, 6, 5, 5)).astype(np.float32)
    >>> y = gn(x)
    >>> groups = y.reshape(4, 2, -1)  # (sample, group, 3·5·5 values)
    >>> bool(np.allclose(groups.mean(-1), 0, atol=1e-5)), bool(np.allclose(groups.var(-1), 1))
    (True, True)
    >>> dx = gn.backward(np.ones_like(y))
    >>> gn.weight.grad.shape, gn.bias.grad.tolist()  # dβ: 4 samples · 25 positions
    ((6,), [100.0, 100.0, 100.0, 100.0, 100.0, 100.0])
    >>> nn.GroupNorm(4, 6)
    Traceback (most recent call last):
    ...
    gammabeta.errors.ConfigError: GroupNorm: num_channels=6 is not divisible by num_groups=4; ...
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, weight_init="ones", bias_init="zeros", rng=None,
                 dtype=np.float32, *, bias: bool = True):
        super().__init__()
        name = type(self).__name__
        self.num_groups = _args.integer(name, "num_groups", num_groups)
        self.num_channels = _args.integer(name, "num_channels", num_channels)
        if self.num_channels % self.num_groups:
            fits = [g for g in range(1, self.num_channels + 1) if self.num_channels % g == 0]
            near = min(fits, key=lambda g: (abs(g - self.num_groups), g))
            raise ConfigError(f"{name}: num_channels={self.num_channels} is not divisible by "
                              f"num_groups={self.num_groups}; expected num_groups to divide "
                              f"num_channels (e.g. num_groups={near})")
        self.eps = _args.real(name, "eps", eps, lo=0.0, lo_open=True)
        self.affine = _args.boolean(name, "affine", affine)
        bias = _args.boolean(name, "bias", bias)
        self._init_affine((self.num_channels,), self.affine, bias, weight_init, bias_init, rng,
                          dtype)

    def extra_repr(self) -> str:
        s = f"{self.num_groups}, {self.num_channels}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        if not self.affine:
            s += ", affine=False"
        elif self._parameters["bias"] is None:
            s += ", bias=False"
        return s

    def forward(self, x):
        check_float_input(self, x)
        c, g = self.num_channels, self.num_groups
        if x.ndim < 2:
            raise ShapeError(f"{self.describe()}: got a {x.ndim}-D input of shape "
                             f"{tuple(x.shape)}, expected (N, C, *) with C = {c}")
        if x.shape[1] != c:
            raise ShapeError(f"{self.describe()}: got {x.shape[1]} channels (input shape "
                             f"{tuple(x.shape)}), expected {c} channels on axis 1")
        seg = math.prod(x.shape[2:])
        return self._rows_forward(x, x.shape[0] * g, g, seg, (c // g) * seg)[0]
