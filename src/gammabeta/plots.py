"""Figures (matplotlib, headless): training curves. Not imported by the core library."""

from __future__ import annotations

import io
import sys

from .io import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Render ``fig`` to PNG in memory, then write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(history: dict, path, title: str = "") -> None:
    """Loss and accuracy per epoch (train and held-out) side by side, saved as PNG."""
    plt = _pyplot()
    epochs = history.get("epoch", [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, history.get("train_loss", []), label="train")
    if "val_loss" in history:
        ax1.plot(epochs, history["val_loss"], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.set_yscale("log")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, [100 * a for a in history.get("train_accuracy", [])], label="train")
    if "val_accuracy" in history:
        ax2.plot(epochs, [100 * a for a in history["val_accuracy"]], label="validation")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


_MAX_ROWS = 24      # layers per column pair; more layers get further column pairs side by side
_MAX_HEIGHT = 26.0  # inches: the figure never grows taller than this


def _column(values) -> list[float]:
    """A recorded column as floats, None (unavailable) as NaN."""
    return [float("nan") if v is None else float(v) for v in values]


def _layer_params(layers: list[str], grad_norms: dict) -> tuple[dict, list[str]]:
    """Each layer's parameters (``"0.weight"`` belongs to layer ``"0"``) and the rest."""
    own: dict[str, list[str]] = {name: [] for name in layers}
    rest = []
    for pname in grad_norms:
        owner = pname.rsplit(".", 1)[0] if "." in pname else ""
        (own[owner] if owner in own else rest).append(pname)
    return own, rest


def _grad_panel(ax, steps, grad_norms: dict, names: list[str], colors: dict, small: bool):
    """Gradient L2 norms of ``names`` over steps; log y axis when they span a decade or more."""
    vals = []
    for pname in names:
        y = _column(grad_norms[pname])
        vals += [v for v in y if v > 0 and v == v and v != float("inf")]
        short = pname.rsplit(".", 1)[-1]
        ax.plot(steps[:len(y)], y, color=colors.setdefault(short, f"C{(len(colors) + 1) % 10}"),
                lw=1.2, label=f"‖∇{short}‖")
    if vals and max(vals) >= 10 * min(vals):
        ax.set_yscale("log")
    ax.set_ylabel("gradient L2 norm" + (" (log)" if ax.get_yscale() == "log" else ""),
                  fontsize=7 if small else None)


def plot_diagnostics(diag: dict, path, kinds: dict | None = None, title: str = ""):
    """Draw what ``gammabeta train --diagnostics`` records (the dict of diagnostics.json).

    One row per recorded layer, x = training step: on the left the layer output's recorded
    percentiles (median solid, the outer percentiles dashed, the band between the outer
    ones filled), on the right the L2 norm of the gradient of each of the layer's parameters
    (log scale when the norms span a decade or more; "no parameters" for e.g. a ReLU).
    Parameters of no recorded layer share one extra row. ``kinds`` optionally maps a layer
    name to its type (``{"0": "Linear"}``) for the row titles. Beyond 12 layers the rows get
    flatter, and beyond 24 further column pairs are added, so the figure stays under 26
    inches high. Returns the (closed) matplotlib Figure; its first-column axes are
    ``fig.axes[0::2]``, one pair of axes per row.
    """
    plt = _pyplot()
    kinds = kinds or {}
    steps = [float(s) for s in diag.get("steps", [])]
    layers = [str(n) for n in diag.get("layers") or list(diag.get("activations", {}))]
    acts = diag.get("activations", {})
    grads = diag.get("grad_norms") or {}
    pcts = sorted(float(p) for p in diag.get("percentiles", []))
    keys = [f"p{p:g}" for p in pcts]
    own, rest = _layer_params(layers, grads)
    rows = [(name, own[name]) for name in layers] + ([(None, rest)] if rest else [])
    n = max(1, len(rows))
    blocks = -(-n // _MAX_ROWS)
    per = -(-n // blocks)
    row_h = 2.1 if n <= 12 else max(1.0, _MAX_HEIGHT / per)
    small = n > 12
    height = row_h * per + 0.75  # inches; the top 0.75 hold the title and the legend
    fig, axes = plt.subplots(per, 2 * blocks, figsize=(8.5 * blocks, height), squeeze=False,
                             sharex=True)
    colors: dict[str, str] = {}
    handles: dict[str, object] = {}
    fs = 8 if small else 10
    for i, (name, params) in enumerate(rows):
        ax, gx = axes[i % per, 2 * (i // per)], axes[i % per, 2 * (i // per) + 1]
        label = ("parameters of no recorded layer" if name is None else
                 f"layer {name}" + (f" ({kinds[name]})" if kinds.get(name) else ""))
        cols = acts.get(name, {}) if name is not None else {}
        have = [k for k in keys if k in cols]
        if have:
            if len(have) >= 2:
                band = f"{have[0][1:]}th–{have[-1][1:]}th percentile band"
                handles[band] = ax.fill_between(
                    steps[:len(cols[have[0]])], _column(cols[have[0]]), _column(cols[have[-1]]),
                    color="C0", alpha=0.18, lw=0, label=band)
            mid = have[len(have) // 2]
            for k in have:
                style = ("-" if k == mid else "--" if k == have[0] else "-." if k == have[-1]
                         else ":")
                (line,) = ax.plot(steps[:len(cols[k])], _column(cols[k]), style, color="C0",
                                  lw=1.5 if k == mid else 1.0,
                                  label=f"{k[1:]}th percentile" + (" (median)" if k == "p50"
                                                                   else ""))
                handles.setdefault(line.get_label(), line)
            ax.set_ylabel("output value", fontsize=fs)
        else:
            ax.text(0.5, 0.5, "no activations recorded", ha="center", va="center",
                    transform=ax.transAxes, color="gray", fontsize=fs)
        ax.set_title(f"{label}: output percentiles", fontsize=fs, loc="left")
        if params:
            _grad_panel(gx, steps, grads, params, colors, small)
            for line in gx.get_lines():
                handles.setdefault(line.get_label(), line)
        else:
            gx.text(0.5, 0.5, "no parameters" if grads else "no gradient norms recorded",
                    ha="center", va="center", transform=gx.transAxes, color="gray",
                    fontsize=fs)
            gx.set_yticks([])
        gx.set_title(f"{label}: gradient norms", fontsize=fs, loc="left")
        for a in (ax, gx):
            a.grid(alpha=0.3)
            a.tick_params(labelsize=fs - 1)
    for j in range(n, per * blocks):  # the unused cells of the last column pair
        axes[j % per, 2 * (j // per)].set_visible(False)
        axes[j % per, 2 * (j // per) + 1].set_visible(False)
    for b in range(2 * blocks):
        last = max(r for r in range(per) if axes[r, b].get_visible())
        axes[last, b].set_xlabel("training step", fontsize=fs)
        axes[last, b].xaxis.set_tick_params(labelbottom=True)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "nothing recorded", ha="center", va="center",
                        transform=axes[0, 0].transAxes)
    # fixed margins in inches: matplotlib's tight layout takes ~0.4 s per panel here
    fig.subplots_adjust(left=0.9 / fig.get_figwidth(), right=1 - 0.2 / fig.get_figwidth(),
                        bottom=0.55 / height, top=1 - (0.75 + 0.3) / height,
                        wspace=0.35, hspace=(0.75 if small else 0.55) / max(row_h - 0.75, 0.25))
    fig.suptitle(title or f"Per-layer diagnostics over {len(steps)} recorded steps: "
                 "activation percentiles (left), gradient L2 norms (right)",
                 y=1 - 0.08 / height, va="top")
    if handles:  # once, for every row, between the title and the panels
        fig.legend(list(handles.values()), list(handles), loc="upper center",
                   bbox_to_anchor=(0.5, 1 - 0.42 / height), ncol=min(6, len(handles)),
                   fontsize=8, frameon=False)
    save_figure(fig, path)
    return fig


def draw_diagnostics(diagnostics, path) -> bool:
    """:func:`plot_diagnostics` of a :class:`~gammabeta.diagnostics.Diagnostics` (its layers
    titled with their types), for ``gammabeta train --diagnostics``. A failure to draw is
    reported on stderr and returns False instead of raising: it is called while a run ends,
    and must not hide how the run itself ended (e.g. interrupted)."""
    try:
        kinds = {n: type(m).__name__ for n, m in diagnostics.model.named_modules()}
        plot_diagnostics(diagnostics.to_dict(), path, kinds=kinds)
    except Exception as e:
        print(f"gammabeta: could not draw {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return False
    return True
