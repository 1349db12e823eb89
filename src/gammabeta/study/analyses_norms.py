"""The analyses of the normalization-family studies: small-gamma, small-batch, precise-bn and
gamma-beta-norms. Same contract as :mod:`.analyses`: ``(spec, rows, out) -> (markdown
sections, figures)``; every comparison is added to the report's :class:`.stats.Family` before
any sentence is written from the Holm-adjusted verdicts.
"""

from __future__ import annotations

import re

from . import figures as F
from .report import (
    best_curve_accuracy,
    chance,
    conclusion,
    curve_series,
    curves_figure,
    diff_text,
    fmt,
    generic_figure,
    groups,
    steps_summary,
    summary,
    table,
)
from .report import labels as _labels
from .stats import Family

__all__ = ["NORM_ANALYSES"]


def _ok(st: dict) -> dict:
    return {k: s for k, s in st.items() if s["mean"] is not None}


def small_gamma(spec, rows, out):
    """γ₀ × learning-rate factor on γ, per network; every setting against γ₀ = 1, ×1 (paired
    by seed), Davis & Frank's recipe (γ₀ = 0.1, ×0.01) named."""
    sec, text, fam, bars, nets = ["## Results"], [], Family(), [], []
    for net in _labels(rows, "net"):
        sub = [r for r in rows if r["axes"]["net"] == net]
        g = groups(sub, "gamma", "gamma_lr")
        st = _ok({k: summary(v) for k, v in g.items()})
        gammas, factors = _labels(sub, "gamma"), _labels(sub, "gamma_lr")
        sec += [f"### {net}", table(["γ₀", *factors],
                                    [[gm, *(fmt(st[(gm, f)]) if (gm, f) in st else "diverged"
                                            for f in factors)] for gm in gammas])]
        g0 = [_number(gm) for gm in gammas]
        bars.append((net, [(f, [x for x, gm in zip(g0, gammas, strict=True) if (gm, f) in st],
                            [100 * st[(gm, f)]["mean"] for gm in gammas if (gm, f) in st],
                            [100 * st[(gm, f)]["std"] for gm in gammas if (gm, f) in st], "o-")
                        for f in factors]))
        base = (gammas[0], factors[0])
        vs = {k: fam.add(st[k], st[base], f"{net}: {k[0]}, {k[1]} vs {base[0]}, {base[1]}")
              for k in st if base in st and k != base}
        nets.append((net, st, base, vs, (gammas[-1], factors[-1])))
    for net, st, base, vs, recipe in nets:
        if base not in st:
            continue
        text.append(f"**{net}.** γ₀ = 1 with the same learning rate (the default): "
                    f"{fmt(st[base])}%.")
        if recipe in vs:
            c = vs[recipe]
            better = fam.significant(c) and c.diff > 0
            worse = fam.significant(c) and c.diff < 0
            text.append(f"- Davis & Frank's recipe ({recipe[0]}, {recipe[1]}): {fmt(st[recipe])}%,"
                        f" {diff_text(c, fam)}: " + (
                            "it helps here." if better else "it is worse here." if worse else
                            "no difference beyond seed noise on this network."))
        best = max(st, key=lambda k: st[k]["mean"])
        text.append(f"- Best setting: {best[0]}, {best[1]} ({fmt(st[best])}%); settings beyond "
                    "seed noise from the default: " + (", ".join(
                        f"{k[0]}, {k[1]} ({100 * c.diff:+.1f} pts)" for k, c in vs.items()
                        if fam.significant(c)) or "none") + ".")
    F.xy_panels(bars, out / "accuracy.png", "γ₀ (log scale)", "test accuracy (%)",
                title=spec.title, logx=True)
    cap = ("Final test accuracy (%) against γ's initial value, one line per learning-rate "
           "factor on γ, one panel per network (each with its own y range); error bars ± 1 std "
           "over seeds.")
    return [*sec, *conclusion(fam, text)], [("accuracy.png", cap)]


def _batch(label: str) -> int:
    return int(re.findall(r"\d+", label)[0])


def _number(label: str) -> float:
    """The first number in a label: ``"γ₀ = 0.5"`` → 0.5."""
    return float(re.findall(r"\d+(?:\.\d+)?", label.split("=")[-1])[0])


def small_batch(spec, rows, out):
    """Accuracy per normalization × batch size; each norm against BatchNorm at every batch
    size, and BatchNorm's smallest batch against its largest."""
    norms, batches = _labels(rows, "norm"), _labels(rows, "batch")
    g = groups(rows, "norm", "batch")
    st = _ok({k: summary(v) for k, v in g.items()})
    sec = ["## Results", "Final test accuracy (%), mean ± std over seeds:",
           table(["batch", *norms], [[b, *(fmt(st[(n, b)]) if (n, b) in st else "diverged"
                                           for n in norms)] for b in batches])]
    fam, text, ref = Family(), [], norms[0]
    vs = {(n, b): fam.add(st[(n, b)], st[(ref, b)], f"batch {_batch(b)}: {n} vs {ref}")
          for b in batches for n in norms if n != ref and (n, b) in st and (ref, b) in st}
    lo, hi = (ref, batches[0]), (ref, batches[-1])
    drop = fam.add(st[lo], st[hi], f"{ref}: batch {_batch(lo[1])} vs batch "
                   f"{_batch(hi[1])}") if lo in st and hi in st and lo != hi else None
    if drop is not None:
        lost = fam.significant(drop) and drop.diff < 0
        text.append(f"- {ref} at batch {_batch(lo[1])} vs batch {_batch(hi[1])}: "
                    f"{diff_text(drop, fam)}: " + (
                        "BatchNorm loses accuracy at the smallest batch, the shape of the "
                        "GroupNorm paper's Figure 1." if lost else
                        "BatchNorm does not lose accuracy at the smallest batch here; the "
                        "GroupNorm paper's Figure 1 (BN's error rising sharply at small "
                        "batches) does not reproduce on this network and data."))
    for n in norms[1:]:
        won = [b for b in batches if (n, b) in vs and fam.significant(vs[(n, b)])
               and vs[(n, b)].diff > 0]
        lost = [b for b in batches if (n, b) in vs and fam.significant(vs[(n, b)])
                and vs[(n, b)].diff < 0]
        text.append(f"- {n} vs {ref}: better beyond seed noise at "
                    f"{', '.join(str(_batch(b)) for b in won) or 'no batch size'}; worse at "
                    f"{', '.join(str(_batch(b)) for b in lost) or 'no batch size'}.")
    best = {b: max((n for n in norms if (n, b) in st), key=lambda n: st[(n, b)]["mean"])
            for b in batches if any((n, b) in st for n in norms)}
    text.append("- Highest mean per batch size: " + "; ".join(
        f"{_batch(b)}: {n} ({fmt(st[(n, b)])}%)" for b, n in best.items()) + ".")
    series = [(n, [_batch(b) for b in batches if (n, b) in st],
               [100 * st[(n, b)]["mean"] for b in batches if (n, b) in st],
               [100 * st[(n, b)]["std"] for b in batches if (n, b) in st], "o-")
              for n in norms]
    F.xy_panels([("MNIST-1D CNN", series)], out / "accuracy.png", "batch size (log scale)",
                "test accuracy (%)", title=spec.title, logx=True)
    cap = ("Final test accuracy (%) against the batch size, one line per normalization; error "
           "bars ± 1 std over seeds.")
    return [*sec, *conclusion(fam, text)], [("accuracy.png", cap)]


def precise_bn(spec, rows, out):
    """EMA vs PreciseBN test accuracy (paired: the same run) per momentum × batch size."""
    g = groups(rows, "momentum", "batch")
    fam, cells = Family(), {}
    for k, v in g.items():
        ema, pre = summary(v, "test_accuracy"), summary(v, "precise_test_accuracy")
        if ema["mean"] is None or pre["mean"] is None:
            continue
        gap_e = summary([{"x": r["bn_gap"]["mean"], "seed": r["seed"]} for r in v
                         if r.get("bn_gap")], "x")
        gap_p = summary([{"x": r["precise_bn_gap"]["mean"], "seed": r["seed"]} for r in v
                         if r.get("precise_bn_gap")], "x")
        cells[k] = (ema, pre, gap_e, gap_p, fam.add(pre, ema, f"{k[0]}, {k[1]}: PreciseBN vs "
                                                              "EMA"))
    sec = ["## Results", "Test accuracy (%) with the running (EMA) statistics and with PreciseBN "
           "statistics, and the distance of each to the population statistics (mean over BN "
           "channels of |running mean − μ| / σ):",
           table(["BN momentum", "batch", "EMA", "PreciseBN", "PreciseBN − EMA",
                  "distance, EMA", "distance, PreciseBN"],
                 [[*k, fmt(e), fmt(p), diff_text(c, fam), fmt(ge, 1, 3), fmt(gp, 1, 3)]
                  for k, (e, p, ge, gp, c) in cells.items()])]
    helped = [k for k, (*_, c) in cells.items() if fam.significant(c) and c.diff > 0]
    hurt = [k for k, (*_, c) in cells.items() if fam.significant(c) and c.diff < 0]
    text = [f"- PreciseBN is better beyond seed noise in {len(helped)} of {len(cells)} settings"
            + (f" ({'; '.join(', '.join(k) for k in helped)})" if helped else "")
            + f", worse in {len(hurt)}" + (f" ({'; '.join(', '.join(k) for k in hurt)})"
                                           if hurt else "") + "."]
    if cells:
        big = max(cells, key=lambda k: cells[k][4].diff or 0)
        text.append(f"- The largest gain: {', '.join(big)}: {diff_text(cells[big][4], fam)}.")
    moms, bs = _labels(rows, "momentum"), _labels(rows, "batch")
    panels = []
    for m in moms:
        have = [b for b in bs if (m, b) in cells]
        panels.append((m, [(name, [_batch(b) for b in have],
                            [100 * cells[(m, b)][i]["mean"] for b in have],
                            [100 * cells[(m, b)][i]["std"] for b in have], style)
                           for i, name, style in ((0, "EMA", "o-"), (1, "PreciseBN", "s--"))]))
    F.xy_panels(panels, out / "accuracy.png", "batch size (log scale)", "test accuracy (%)",
                title=spec.title, logx=True)
    cap = ("Test accuracy (%) with EMA and with PreciseBN statistics against the batch size, "
           "one panel per BN momentum; error bars ± 1 std over seeds.")
    return [*sec, *conclusion(fam, text)], [("accuracy.png", cap)]


def gamma_beta_norms(spec, rows, out):
    """gamma-beta for LayerNorm/GroupNorm: every γ/β setting against γ = 1, β = 0 (paired),
    per network and normalization."""
    sec, text, panels, fam, cells = ["## Results"], [], [], Family(), []
    default = ("ones", "zeros")
    for net in _labels(rows, "net"):
        for norm in _labels(rows, "norm"):
            sub = [r for r in rows if r["axes"]["net"] == net and r["axes"]["norm"] == norm]
            g = groups(sub, "gamma", "beta")
            st = _ok({k: summary(v) for k, v in g.items()})
            top = 0.9 * best_curve_accuracy(sub)
            sec += [f"### {net}, {norm}", table(
                ["γ init", "β init", "test accuracy (%)", f"steps to {100 * top:.1f}%"],
                [[*k, fmt(st[k]) if k in st else "diverged", steps_summary(v, top)]
                 for k, v in g.items()])]
            for beta in _labels(sub, "beta"):
                panels.append((f"{net}, {norm}, β = {beta}", curve_series(
                    {k[0]: v for k, v in g.items() if k[1] == beta})))
            vs = {k: fam.add(st[k], st[default], f"{net}, {norm}: γ = {k[0]}, β = {k[1]} vs "
                                                 "γ = 1, β = 0")
                  for k in st if default in st and k != default}
            cells.append((net, norm, sub, st, vs))
    for net, norm, sub, st, vs in cells:
        if default not in st:
            continue
        better = [k for k, c in vs.items() if fam.significant(c) and c.diff > 0]
        worse = [k for k, c in vs.items() if fam.significant(c) and c.diff < 0]
        text.append(f"**{net}, {norm}.** γ = 1, β = 0: {fmt(st[default])}%; " + (
            "the usual advice holds: nothing beats it beyond seed noise" if not better else
            "the usual advice does not hold: " + "; ".join(
                f"γ = {k[0]}, β = {k[1]} beats it by {diff_text(vs[k], fam)}" for k in better))
            + "; worse beyond seed noise: " + (", ".join(
                f"γ = {k[0]}, β = {k[1]} ({100 * vs[k].diff:+.1f} pts)" for k in worse)
                or "none") + ".")
        z = st.get(("zeros", "zeros"))
        if z is not None:
            stuck = z["mean"] < chance(sub) + 0.05
            text.append(f"- γ = 0, β = 0: {fmt(z)}%" + (
                " — chance level: the normalized output is 0 everywhere, so no gradient passes "
                "the ReLU after it (as with BatchNorm)." if stuck else " — it trains."))
    fig = curves_figure(panels, out, "γ init", spec.title, "one panel per network, "
                        "normalization and β initialization, all on the same y axis")
    return [*sec, *conclusion(fam, text)], [fig]


def norm_choice(spec, rows, out):
    """Every ``--norm`` per network (the ``setup`` labels read ``"NET, NORM"``): accuracy,
    and each norm against BatchNorm on the same seeds."""
    by_net: dict = {}
    for r in rows:
        net, norm = r["axes"]["setup"].split(", ", 1)
        by_net.setdefault(net, {}).setdefault(norm, []).append(r)
    fam, sec, text, cells = Family(), ["## Results"], [], []
    for net, norms in by_net.items():
        st = _ok({n: summary(v) for n, v in norms.items()})
        vs = {n: fam.add(st[n], st["BatchNorm"], f"{net}: {n} vs BatchNorm")
              for n in st if n != "BatchNorm" and "BatchNorm" in st}
        cells.append((net, norms, st, vs))
    for net, norms, st, vs in cells:
        sec += [f"### {net}", table(["norm", "test accuracy (%)", "vs BatchNorm"],
                                    [[n, fmt(st[n]) if n in st else "diverged",
                                      diff_text(vs[n], fam) if n in vs else "-"]
                                     for n in norms])]
        best = max(st, key=lambda n: st[n]["mean"])
        text.append(f"- {net}: highest mean {best} ({fmt(st[best])}%); different from "
                    "BatchNorm beyond seed noise: " + (", ".join(
                        f"{n} ({100 * c.diff:+.1f} pts)" for n, c in vs.items()
                        if fam.significant(c)) or "none") + ".")
    fig = generic_figure(["setup"], rows, out, spec.title)
    return [*sec, *conclusion(fam, text)], [fig]


NORM_ANALYSES = {"small-gamma": small_gamma, "small-batch": small_batch,
                 "precise-bn": precise_bn, "gamma-beta-norms": gamma_beta_norms,
                 "norm-choice": norm_choice}
