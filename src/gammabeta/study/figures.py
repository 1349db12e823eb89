"""Study figures (matplotlib, headless, written atomically as PNG).

Each function takes plain lists/arrays and a path; matplotlib is imported inside the functions
so that importing :mod:`gammabeta.study` never loads it.
"""

from __future__ import annotations

import numpy as np

from ..plots import _pyplot, save_figure

__all__ = ["compare_curves", "band_note", "xy_panels", "hist_panels", "bar_panels",
           "bn_paper_figure"]

_STYLES = ["-", "--", ":", "-."]


def _grid(n: int, width: float = 5.0, height: float = 3.8):
    plt = _pyplot()
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def _finish(fig, axes, path, title: str, legend: bool = True) -> None:
    for ax in axes:
        ax.grid(alpha=0.3)
        if legend and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def band_note(counts) -> str:
    """How to read :func:`compare_curves`' lines and bands, for its title and the caption."""
    counts = sorted({int(c) for c in counts}) or [0]
    if counts[-1] < 2:
        return "lines: one seed per setting (no band)"
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"lines: mean over {n} seeds; band: ± 1 standard deviation over the seeds"


def _mean_std(runs, scale: float):
    """Mean and sample standard deviation over runs ``(steps, values)``, step by step on the
    union of their steps (a run that stopped early or diverged counts where it has values)."""
    x = sorted({float(s) for steps, _ in runs for s in steps})
    col = {s: i for i, s in enumerate(x)}
    y = np.full((len(runs), len(x)), np.nan)
    for i, (steps, values) in enumerate(runs):
        for s, v in zip(steps, values, strict=False):
            if v is not None:
                y[i, col[float(s)]] = scale * v
    n = np.sum(~np.isnan(y), axis=0)
    mean = np.where(n > 0, np.nansum(y, axis=0) / np.maximum(n, 1), np.nan)
    dev = np.where(np.isnan(y), 0.0, y - mean)
    std = np.where(n > 1, np.sqrt((dev ** 2).sum(axis=0) / np.maximum(n - 1, 1)), np.nan)
    return np.asarray(x), mean, std


def compare_curves(panels, path, axis: str, xlabel: str = "training step",
                   ylabel: str = "test accuracy (%)", title: str = "", scale: float = 100.0):
    """Compare the settings of ``axis``: in each panel one line per setting, all panels on
    one shared y axis, one legend (each setting keeps its colour in every panel).

    ``panels`` is a list of ``(panel_title, series)``, a series ``(setting_label, runs)`` with
    ``runs`` a list of per-seed ``(steps, values)``. A line is the mean over the seeds and
    its band ± 1 standard deviation (sample std, as in the report's tables); the title says so
    (:func:`band_note`). Returns the (closed) Figure: ``fig.axes`` are the panels.
    """
    plt = _pyplot()
    labels = list(dict.fromkeys(lab for _, series in panels for lab, _ in series))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    look = {lab: (colors[i % len(colors)], _STYLES[i // len(colors) % len(_STYLES)])
            for i, lab in enumerate(labels)}
    n = max(1, len(panels))
    cols = 2 if n == 4 else min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols + 1.6, 3.9 * rows + 0.5),
                             squeeze=False, sharey=True)
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    counts, handles = [], {}
    for ax, (ptitle, series) in zip(axes, panels, strict=False):
        for lab, runs in series:
            runs = [r for r in runs if len(r[0])]
            if not runs:
                continue
            counts.append(len(runs))
            x, mean, std = _mean_std(runs, scale)
            color, ls = look[lab]
            (line,) = ax.plot(x, mean, ls, color=color, lw=1.5, label=str(lab))
            handles.setdefault(str(lab), line)
            if len(runs) > 1:
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        if ptitle:
            ax.set_title(ptitle)
        ax.set_xlabel(xlabel)
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps, not 2.5
        ax.grid(alpha=0.3)
    for ax in axes[::cols]:
        ax.set_ylabel(ylabel)
    if handles:  # once, right of the first row
        axes[min(n, cols) - 1].legend(list(handles.values()), list(handles), title=axis,
                                      loc="upper left", bbox_to_anchor=(1.02, 1.0),
                                      fontsize=9, title_fontsize=9)
    note = band_note(counts)
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def xy_panels(panels, path, xlabel: str, ylabel: str, title: str = "", logx: bool = False,
              hline: float | None = None) -> None:
    """Panels of ``(panel_title, series)``; a series is ``(label, x, mean, std, style)``.

    Error bars show ± one standard deviation over seeds; ``hline`` draws a dotted reference
    (e.g. chance accuracy).
    """
    fig, axes = _grid(len(panels))
    for ax, (ptitle, series) in zip(axes, panels, strict=True):
        for label, x, mean, std, style in series:
            m = np.array([np.nan if v is None else v for v in mean], dtype=float)
            s = np.array([0.0 if v is None else v for v in std], dtype=float)
            ax.errorbar(x, m, yerr=s, fmt=style, capsize=3, lw=1.3, ms=5, label=label)
        if hline is not None:
            ax.axhline(hline, color="gray", ls=":", lw=1, label="chance")
        if logx:  # ticks at the values themselves, written plainly (2, 4, 8, not 2×10⁰)
            ax.set_xscale("log")
            xs = sorted({float(v) for _, x, *_ in series for v in x})
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.minorticks_off()
        ax.set_title(ptitle)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    _finish(fig, axes, path, title)


def hist_panels(panels, path, xlabel: str = "|γ| (log scale)", title: str = "",
                floor: float = 1e-6) -> None:
    """Histograms on a log x axis; a panel is ``(panel_title, values)``.

    Values below ``floor`` are drawn in the first bin (labelled ``≤ floor``).
    """
    fig, axes = _grid(len(panels))
    allv = np.concatenate([np.abs(np.asarray(v, dtype=float)) for _, v in panels if len(v)]
                          or [np.ones(1)])
    hi = max(float(allv.max()), floor * 10) * 1.5
    bins = np.logspace(np.log10(floor), np.log10(hi), 40)
    for ax, (ptitle, values) in zip(axes, panels, strict=True):
        v = np.clip(np.abs(np.asarray(values, dtype=float)), floor, None)
        ax.hist(v, bins=bins, color="tab:blue", alpha=0.8)
        ax.axvline(1e-2, color="tab:red", ls="--", lw=1, label="|γ| = 0.01")
        ax.set_xscale("log")
        ax.set_title(ptitle)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("channels (all seeds)")
    _finish(fig, axes, path, title)


def bar_panels(panels, path, ylabel: str = "test accuracy (%)", title: str = "",
               hline: float | None = None) -> None:
    """Grouped bars; a panel is ``(panel_title, groups, bars)`` with ``bars`` a list of
    ``(label, means, stds)`` (one mean per group). Error bars: ± one std over seeds."""
    fig, axes = _grid(len(panels), width=5.5)
    for ax, (ptitle, groups, bars) in zip(axes, panels, strict=True):
        x = np.arange(len(groups))
        w = 0.8 / max(1, len(bars))
        for i, (label, means, stds) in enumerate(bars):
            m = np.array([np.nan if v is None else v for v in means], dtype=float)
            s = np.array([0.0 if v is None else v for v in stds], dtype=float)
            ax.bar(x + (i - (len(bars) - 1) / 2) * w, m, w, yerr=s, capsize=3, label=label)
        if hline is not None:
            ax.axhline(hline, color="gray", ls=":", lw=1, label="chance")
        ax.set_xticks(x, groups)
        ax.set_title(ptitle)
        ax.set_ylabel(ylabel)
    _finish(fig, axes, path, title)


def bn_paper_figure(acc_series, pct_panels, path, title: str = "") -> None:
    """Ioffe & Szegedy's Figure 1: (a) test accuracy over steps, with and without BN;
    (b, c) the 15th, 50th and 85th percentiles of one sigmoid input over training.

    ``acc_series``: ``(label, steps, runs)``, the runs' curves on the same steps (line: their
    mean; band: their minimum to maximum); ``pct_panels``:
    ``(panel_title, steps, {"p15": [...], "p50": [...], "p85": [...]})`` (one seed).
    """
    fig, axes = _grid(1 + len(pct_panels), width=4.6)
    ax = axes[0]
    for i, (label, steps, runs) in enumerate(acc_series):
        n = min(len(r) for r in runs)
        y = 100 * np.array([r[:n] for r in runs], dtype=float)
        (line,) = ax.plot(steps[:n], y.mean(axis=0), _STYLES[i % 4], label=label)
        if len(runs) > 1:
            ax.fill_between(steps[:n], y.min(axis=0), y.max(axis=0), alpha=0.15,
                            color=line.get_color(), lw=0)
    ax.set_title("(a) test accuracy")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    lo = min((min(v for v in p[k] if v is not None) for _, _, p in pct_panels
              for k in ("p15",)), default=-1)
    hi = max((max(v for v in p[k] if v is not None) for _, _, p in pct_panels
              for k in ("p85",)), default=1)
    pad = 0.05 * (hi - lo or 1)
    for ax, (ptitle, steps, pct) in zip(axes[1:], pct_panels, strict=True):
        for k, ls in (("p85", "--"), ("p50", "-"), ("p15", ":")):
            ax.plot(steps, pct[k], ls, color="k", label=f"{k[1:]}th percentile")
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(ptitle)
        ax.set_xlabel("training step")
        ax.set_ylabel("sigmoid input (unit 0, test set)")
    _finish(fig, axes, path, title)
