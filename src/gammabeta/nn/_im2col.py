"""The column layouts of the convolutions (:mod:`gammabeta.nn.conv`): im2col and col2im.

``geom`` is a 2-D geometry ``((kh, kw), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)))`` (a 1-D
convolution has H = 1) and G the groups. The columns are ``(G, C/G·kh·kw, positions)``, one
GEMM per group. Two layouts of the positions:

* **grid** (stride 1, the common case): the positions are the *padded* input grid
  ``(N, Hp, Wp)``, flattened. The input is padded once into ``(C, N·Hp·Wp + tail)``; the
  window of tap (i, j) is then that buffer shifted by ``i·dh·Wp + j·dw``, so every tap is
  one contiguous slice (no strided gather), and col2im is one contiguous add per tap.
  Positions past ``(Ho, Wo)`` are computed and dropped (5% more columns for a length-40
  signal with padding 1), and dy is laid on the same grid with zeros there, which makes
  their contributions to dW and dx exact zeros.
* **windows** (any stride): the positions are ``(N, Ho, Wo)``, gathered through a strided
  view of the padded input; col2im adds each tap through a strided view.

Both sum the taps of col2im in the same order, tap 0 first.
"""

from __future__ import annotations

from ._windows import _out_size, _pad, _windows

__all__ = ["is_grid", "out_hw", "columns", "weight_grad", "output", "dy_columns", "col2im"]


def is_grid(geom) -> bool:
    """Whether ``geom`` uses the grid layout (stride 1 on both axes)."""
    return geom[1] == (1, 1)


def out_hw(geom, h: int, w: int) -> tuple[int, int]:
    (kh, kw), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = geom
    return _out_size(h + pt + pb, kh, sh, dh), _out_size(w + pl + pr, kw, sw, dw)


def _offsets(geom, wp: int) -> list[int]:
    """Grid layout: where tap (i, j) starts in a flattened padded grid of width ``wp``,
    ``i·dh·Wp + j·dw``, taps in order (the last one is the tail the buffers need)."""
    (kh, kw), _, (dh, dw), _ = geom
    return [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]


def _grid_input(x4, geom, groups: int, xp):
    """x padded onto the grid, channels first: ``(G, C/G, N·Hp·Wp + tail)`` (one copy), the
    tap offsets, and the number of grid positions."""
    (_, _, _, ((pt, pb), (pl, pr))) = geom
    n, c, h, w = x4.shape
    hp, wp = h + pt + pb, w + pl + pr
    m, offsets = n * hp * wp, _offsets(geom, wp)
    flat = xp.zeros((c, m + offsets[-1]), dtype=x4.dtype)
    flat[:, :m].reshape(c, n, hp, wp)[:, :, pt:pt + h, pl:pl + w] = x4.transpose(1, 0, 2, 3)
    return flat.reshape(groups, c // groups, -1), offsets, m


def columns(x4, geom, groups: int, xp):
    """``cols[g, (c, i, j), position]`` for ``x4`` of shape ``(N, C, H, W)``."""
    (kh, kw), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = geom
    n, c, h, w = x4.shape
    ho, wo = out_hw(geom, h, w)
    cg, k = c // groups, kh * kw
    if not is_grid(geom):
        xpad = _pad(x4, pt, pb, pl, pr, xp)
        win = _windows(xpad, kh, kw, sh, sw, dh, dw, ho, wo)  # (N, C, kh, kw, ho, wo)
        win = win.reshape(n, groups, cg, kh, kw, ho, wo).transpose(1, 2, 3, 4, 0, 5, 6)
        return xp.ascontiguousarray(win).reshape(groups, cg * k, n * ho * wo)
    flat, offsets, m = _grid_input(x4, geom, groups, xp)
    cols = xp.empty((groups, cg, k, m), dtype=x4.dtype)
    for t, off in enumerate(offsets):
        cols[:, :, t] = flat[:, :, off:off + m]
    return cols.reshape(groups, cg * k, m)


def weight_grad(dyt, x4, geom, groups: int, xp):
    """dW as ``(G, O/G, C/G·kh·kw)`` from ``dyt`` (:func:`dy_columns`) and the input: the
    columns rebuilt (one copy, freed on return) for one GEMM, ``dW[g] = dy[g] · cols[g]ᵀ``.

    For the MNIST-1D CNN's (100, 32, 40) layer: 0.60 ms, against 0.95 ms for one GEMM per
    tap against the shifted grid (k skinny products, each with a transposed operand).
    """
    return xp.matmul(dyt, columns(x4, geom, groups, xp).swapaxes(-1, -2))


def output(y2, geom, shape, bias, xp):
    """The GEMM's ``(O, positions)`` as ``(N, O, Ho, Wo)``, with the bias (one copy)."""
    n, _, h, w = shape
    (_, _, _, ((pt, pb), (pl, pr))) = geom
    ho, wo = out_hw(geom, h, w)
    o = y2.shape[0]
    if is_grid(geom):
        yt = y2.reshape(o, n, h + pt + pb, w + pl + pr)[:, :, :ho, :wo]
    else:
        yt = y2.reshape(o, n, ho, wo)
    y = xp.empty((n, o, ho, wo), dtype=y2.dtype)
    if bias is not None:
        xp.add(yt.transpose(1, 0, 2, 3), bias.reshape(1, -1, 1, 1), out=y)
    else:
        y[...] = yt.transpose(1, 0, 2, 3)
    return y


def dy_columns(dy4, geom, groups: int, shape, xp):
    """dy of shape ``(N, O, Ho, Wo)`` as ``(G, O/G, positions)``, the columns' layout."""
    n, _, h, w = shape
    (_, _, _, ((pt, pb), (pl, pr))) = geom
    o, ho, wo = dy4.shape[1:]
    og = o // groups
    if not is_grid(geom):
        return xp.ascontiguousarray(dy4.reshape(n, o, ho * wo).transpose(1, 0, 2)) \
            .reshape(groups, og, n * ho * wo)
    hp, wp = h + pt + pb, w + pl + pr
    dyp = xp.zeros((o, n, hp, wp), dtype=dy4.dtype)
    dyp[:, :, :ho, :wo] = dy4.transpose(1, 0, 2, 3)
    return dyp.reshape(groups, og, n * hp * wp)


def col2im(dyt, weight, geom, groups: int, shape, whole_bytes: int, xp):
    """dx of shape ``(N, C, H, W)`` from ``dyt`` (:func:`dy_columns`): the columns'
    gradient ``dcols[g] = W[g]ᵀ dy[g]`` added back where each tap read x.

    The sums run in the layout of ``dcols``, channels first; one copy makes the result
    ``(N, C, H, W)``. All taps come from one GEMM per group while ``dcols`` stays under
    ``whole_bytes``, else one tap at a time (temporaries the size of x).
    """
    (kh, kw), (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = geom
    n, c, h, w = shape
    ho, wo = out_hw(geom, h, w)
    hp, wp = h + pt + pb, w + pl + pr
    og, k = dyt.shape[1], kh * kw
    cg = c // groups
    wt = weight.reshape(groups, og, cg * k).swapaxes(-1, -2)  # W[g]ᵀ: (Cg·k, O/G)
    grid = is_grid(geom)
    pos = (n * hp * wp,) if grid else (n, ho, wo)
    if grid:
        offsets = _offsets(geom, wp)
        dxp = xp.zeros((groups, cg, pos[0] + offsets[-1]), dtype=dyt.dtype)
    else:
        dxp = xp.zeros((groups, cg, n, hp, wp), dtype=dyt.dtype)
    whole = groups * cg * k * dyt.shape[-1] * dyt.itemsize <= whole_bytes
    if whole:
        dcols = xp.matmul(wt, dyt).reshape(groups, cg, k, *pos)
    for t in range(k):
        i, j = divmod(t, kw)
        if whole:
            dc = dcols[:, :, t]
        else:
            dc = xp.matmul(wt.reshape(groups, cg, k, og)[:, :, t], dyt) \
                .reshape(groups, cg, *pos)
        if grid:
            dxp[:, :, offsets[t]:offsets[t] + pos[0]] += dc
        else:
            dxp[:, :, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                j * dw:j * dw + sw * (wo - 1) + 1:sw] += dc
    dx = dxp[..., :pos[0]] if grid else dxp
    dx = dx.reshape(c, n, hp, wp)[:, :, pt:pt + h, pl:pl + w]
    return xp.ascontiguousarray(dx.transpose(1, 0, 2, 3))
