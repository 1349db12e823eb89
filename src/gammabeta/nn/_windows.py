"""Index helpers of the convolutions (:mod:`gammabeta.nn.conv`): strided window views, output
sizes and zero padding of the last two axes."""

from __future__ import annotations

from numpy.lib.stride_tricks import as_strided

__all__ = ["_windows", "_out_size", "_pad"]


def _windows(a, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, ho: int, wo: int):
    """Read-only view ``(*lead, kh, kw, ho, wo)`` of the sliding windows over the last two axes."""
    *lead, _, _ = a.shape
    st = a.strides
    shape = (*lead, kh, kw, ho, wo)
    strides = (*st[:-2], st[-2] * dh, st[-1] * dw, st[-2] * sh, st[-1] * sw)
    return as_strided(a, shape=shape, strides=strides, writeable=False)


def _out_size(padded: int, k: int, s: int, d: int) -> int:
    return (padded - d * (k - 1) - 1) // s + 1


def _pad(a, pt: int, pb: int, pl: int, pr: int, xp):
    """Zero-pad the last two axes (a plain zeros + copy: much cheaper than ``pad``)."""
    if not (pt or pb or pl or pr):
        return a
    n, c, h, w = a.shape
    out = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=a.dtype)
    out[:, :, pt:pt + h, pl:pl + w] = a
    return out
