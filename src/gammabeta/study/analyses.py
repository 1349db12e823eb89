"""The analyses behind the built-in studies: tables, figures and conclusions from the rows.

Each function takes ``(spec, rows, out)`` and returns ``(markdown sections, figure files)``;
each sentence of a conclusion is picked by comparing the numbers (see :mod:`.report`). Every
comparison of two settings is first added to the report's :class:`.stats.Family`, and only
then are the sentences written, from the Holm-adjusted verdicts. gamma-beta, weight-scale and
bn-paper are here; the others are in :mod:`.analyses_more`.
"""

from __future__ import annotations

import numpy as np

from . import figures as F
from .analyses_more import bn_only, gamma_l1, sync_bn, zero_gamma
from .report import (
    acc_at,
    best_curve_accuracy,
    chance,
    conclusion,
    curve_series,
    curves_figure,
    diff_text,
    fmt,
    groups,
    steps_summary,
    steps_to,
    summary,
    table,
)
from .report import labels as _labels
from .report import pct as _pct
from .stats import Family

__all__ = ["ANALYSES"]


def gamma_beta(spec, rows, out):
    sec, text, panels, fam, nets = ["## Results"], [], [], Family(), []
    default = ("ones", "zeros")
    for net in _labels(rows, "net"):  # tables, curves and every comparison first
        sub = [r for r in rows if r["axes"]["net"] == net]
        g = groups(sub, "gamma", "beta")
        top = 0.9 * best_curve_accuracy(sub)
        st = {k: summary(v) for k, v in g.items()}
        sec += [f"### {net}", table(["γ init", "β init", "test accuracy (%)",
                                     f"steps to {100 * top:.1f}% (90% of best)"],
                                    [[*k, fmt(st[k]), steps_summary(v, top)]
                                     for k, v in g.items()])]
        for beta in _labels(sub, "beta"):
            panels.append((f"{net}, β = {beta}", curve_series(
                {k[0]: v for k, v in g.items() if k[1] == beta})))
        ok = {k: s for k, s in st.items() if s["mean"] is not None}
        vs = {k: fam.add(ok[k], ok[default], f"{net}: γ = {k[0]}, β = {k[1]} vs γ = 1, β = 0")
              for k in ok if default in ok and k != default}
        nets.append((net, sub, g, top, ok, vs))
    for net, sub, g, top, ok, vs in nets:  # then the sentences, from the adjusted verdicts
        best = max(ok, key=lambda k: ok[k]["mean"])
        worst = min(ok, key=lambda k: ok[k]["mean"])
        text.append(f"**{net}.** Best: γ = {best[0]}, β = {best[1]} ({fmt(ok[best])}%); "
                    f"worst: γ = {worst[0]}, β = {worst[1]} ({fmt(ok[worst])}%).")
        if default in ok:
            better = [k for k, c in vs.items() if fam.significant(c) and c.diff > 0]
            verdict = ("the usual advice holds here: no setting beats γ = 1, β = 0 beyond seed "
                       "noise" if not better else "the usual advice does not hold here: " +
                       "; ".join(f"γ = {k[0]}, β = {k[1]} beats it by "
                                 f"{diff_text(vs[k], fam)}" for k in better))
            text.append(f"- γ = 1, β = 0 reached {fmt(ok[default])}%; {verdict}.")
            for gam in [k[0] for k in ok if k[1] == "zeros" and k[0] != "ones"]:
                k = (gam, "zeros")
                s_def, s_k = steps_summary(g[default], top), steps_summary(g[k], top)
                text.append(f"- γ = {gam} (β = 0) vs γ = 1: {diff_text(vs[k], fam)}; "
                            f"steps to {100 * top:.1f}%: {s_k} vs {s_def}.")
        z = ok.get(("zeros", "zeros"))
        if z is not None:
            stuck = z["mean"] < chance(sub) + 0.05
            text.append(f"- γ = 0 with β = 0: {fmt(z)}%" + (
                " — chance level: every BN output is 0, so the ReLU after it passes no gradient "
                "and γ, β and every weight before the classifier stay where they started."
                if stuck else " — it trains nevertheless."))
            zb = [k for k in ok if k[0] == "zeros" and k[1] != "zeros"]
            if zb and stuck:
                moved = ok[zb[0]]["mean"] >= chance(sub) + 0.05
                text.append(f"- A random β (γ = 0, β = {zb[0][1]}) "
                            f"{'unblocks it' if moved else 'does not unblock it'}: "
                            f"{fmt(ok[zb[0]])}%.")
        live = [s["mean"] for k, s in ok.items() if k[0] != "zeros"]
        text.append(f"- Spread over all settings with γ ≠ 0: "
                    f"{100 * (max(live) - min(live)):.1f} points.")
    fig = curves_figure(panels, out, "γ init", spec.title, "one panel per network and β "
                        "initialization, all panels on the same y axis")
    return [*sec, *conclusion(fam, text)], [fig]


def _verdict(a: float, b: float) -> str:
    if a < 3 and a < b / 2:
        return "holds: with BN the scale of W barely matters"
    if a < b:
        return (f"holds only in part: BN shrinks the sensitivity from {b:.1f} to {a:.1f} "
                "points, but the scale still matters")
    return f"does not hold: with BN the spread is {a:.1f} points, without {b:.1f}"


def weight_scale(spec, rows, out):
    ch = chance(rows)
    scales = sorted({r["options"]["weight_scale"] for r in rows})
    axes = ["init", "norm", *(["scaled"] if "scaled" in spec.axes else [])]
    g = groups(rows, *axes)
    by = {(*k, s): summary([r for r in rs if r["options"]["weight_scale"] == s], chance=ch)
          for k, rs in g.items() for s in scales}
    spread = {k: float(np.ptp([by[(*k, s)]["mean"] for s in scales])) for k in g}
    sec = ["## Results", "Test accuracy (%), mean ± std over seeds; a run whose loss became "
           "NaN/inf is marked diverged and counted at chance accuracy "
           f"({_pct(ch)}) in the means. Spread: highest minus lowest mean over the scales.",
           table([*axes, *[f"×{s:g}" for s in scales], "spread (points)"],
                 [[*k, *[fmt(by[(*k, s)]) for s in scales], f"{100 * spread[k]:.1f}"]
                  for k in g])]
    text, fam, at1 = [], Family(), {}
    variants = _labels(rows, "scaled") if "scaled" in axes else [None]
    for var in variants:  # the comparisons first: the best vs the worst init at ×1
        for n in _labels(rows, "norm"):
            acc = {k[0]: by[(*k, 1)] for k in g if k[1] == n and (var is None or k[2] == var)
                   and 1 in scales}
            if len(acc) > 1:
                hi, lo = (f(acc, key=lambda i, acc=acc: acc[i]["mean"]) for f in (max, min))
                at1[var, n] = (hi, lo, fam.add(acc[hi], acc[lo], f"{var + ', ' if var else ''}"
                                               f"{n}, at ×1: {hi} vs {lo}"))
    for var in variants:
        worst = {}
        head = f"**Scaled: {var}.**" if var else ""
        lines = []
        for n in _labels(rows, "norm"):
            keys = [k for k in g if k[1] == n and (var is None or k[2] == var)]
            wk = max(keys, key=lambda k: spread[k])
            lo = min(scales, key=lambda s, wk=wk: by[(*wk, s)]["mean"])
            worst[n] = 100 * spread[wk]
            div = sum(by[(*k, s)]["diverged"] for k in keys for s in scales)
            lines.append(f"- {n}: over ×{scales[0]:g}…×{scales[-1]:g} the mean accuracy varies "
                         f"by up to {100 * spread[wk]:.1f} points ({wk[0]}; lowest at ×{lo:g}: "
                         f"{fmt(by[(*wk, lo)])}%); {div} run(s) diverged.")
            if (var, n) in at1:
                hi_i, lo_i, c = at1[var, n]
                lines.append(f"- {n}, at ×1: {hi_i} vs {lo_i}: {diff_text(c, fam)}.")
        if "BN" in worst and "no BN" in worst:
            head += (" The claim that BN makes the weight initialization unimportant "
                     f"{_verdict(worst['BN'], worst['no BN'])}.")
        text += [head.strip(), *lines]
    text.append("- BN divides each hidden pre-activation by its batch std, so those layers' "
                "outputs do not depend on the scale of W; what remains is the effective "
                "learning rate (a step of the same size changes a large W relatively little, "
                "a small W a lot) and the output layer, which no BN follows.")
    styles = ["o-", "s--", "^:", "d-."]
    panels = []
    for i in _labels(rows, "init"):
        series = []
        for j, k in enumerate(k for k in g if k[0] == i):
            series.append((", ".join(k[1:]), scales, [100 * by[(*k, s)]["mean"] for s in scales],
                           [100 * by[(*k, s)]["std"] for s in scales], styles[j % 4]))
        panels.append((f"init: {i}", series))
    F.xy_panels(panels, out / "scale.png", "weight std multiplier s", "test accuracy (%)",
                title=spec.title, logx=True, hline=100 * ch)
    return [*sec, *conclusion(fam, text)], ["scale.png"]


def bn_paper(spec, rows, out):
    g = groups(rows, "norm")
    labels = list(g)
    st = {k: summary(v) for k, v in g.items()}
    ref = st[labels[0]]["mean"] or 0.0
    sec = ["## Results", table(
        ["network", "final test accuracy (%)", "at 10% of steps", "at 25%", "at 50%",
         f"steps to {_pct(ref)} (final of {labels[0][0]})"],
        [[k[0], fmt(st[k]), fmt(acc_at(v, 0.1)), fmt(acc_at(v, 0.25)), fmt(acc_at(v, 0.5)),
          steps_summary(v, ref)] for k, v in g.items()])]
    pct, move = [], {}
    for k, v in g.items():
        d = v[0].get("diagnostics") or {}
        layer = (d.get("layers") or [None])[0]
        u = (d.get("units") or {}).get(layer, {}).get("0")
        if not u:
            continue
        pct.append((f"({'bc'[len(pct) % 2]}) {k[0]} (seed {v[0]['seed']})", d["steps"], u))
        m, w = np.array(u["p50"], float), np.array(u["p85"], float) - np.array(u["p15"], float)
        late = np.asarray(d["steps"]) >= 0.1 * d["steps"][-1]  # after the first 10%
        move[k[0]] = (m[0], m[-1], w[0], w[-1],
                      np.ptp(m[late]) / max(float(np.mean(w[late])), 1e-12))
    sec.append(table(["network", "median at start → end", "15–85 width at start → end",
                      "range of the median after 10% of training / mean width"],
                     [[k, f"{a:.3g} → {b:.3g}", f"{c:.3g} → {e:.3g}", f"{r:.3g}"]
                      for k, (a, b, c, e, r) in move.items()]))
    text, fam = [], Family()
    if len(labels) == 2:
        c = fam.add(st[labels[1]], st[labels[0]], f"final, {labels[1][0]} vs {labels[0][0]}")
        verdict = ("as in the paper, BN ends higher" if fam.significant(c) and c.diff > 0 else
                   "unlike the paper, BN does not end higher here")
        text.append(f"- Final test accuracy, {labels[1][0]} vs {labels[0][0]}: "
                    f"{diff_text(c, fam)}; {verdict}.")
        s_bn = [steps_to(r, ref) for r in g[labels[1]]]
        if ref and all(s is not None for s in s_bn):
            total = g[labels[0]][0]["curve"]["step"][-1]
            text.append(f"- The network {labels[1][0]} reached the final accuracy of the "
                        f"network {labels[0][0]} ({_pct(ref)}) after {np.mean(s_bn):.0f} of "
                        f"{total} steps.")
        if len(move) == 2:
            (n0, m0), (n1, m1) = list(move.items())
            steadier = m1[4] < m0[4]
            text.append(f"- After the first 10% of training, the median of the sigmoid input "
                        f"moved over {m0[4]:.3g} times its mean 15–85 width {n0} and "
                        f"{m1[4]:.3g} times "
                        f"{n1}: " + (
                            "BN keeps the distribution steadier, as in Figure 1." if steadier
                            else "here BN does not keep it steadier (Santurkar et al. 2018 "
                            "also found that BN's benefit does not come from steadier layer "
                            "inputs)."))
    acc = [(k[0], v[0]["curve"]["step"], [r["curve"]["test_accuracy"] for r in v])
           for k, v in g.items()]
    F.bn_paper_figure(acc, pct, out / "figure1.png", title=spec.title.split(":")[0])
    seeds = sorted({len(v) for v in g.values()})
    cap = ("(a) test accuracy (%) over training steps: " + (
        f"lines: mean over {'–'.join(map(str, seeds))} seeds; band: min–max over the seeds"
        if seeds[-1] > 1 else "one seed") + "; (b, c) the 15th, 50th and 85th percentiles of "
        "the input to one sigmoid (unit 0) on the test set over training, one seed.")
    return [*sec, *conclusion(fam, text)], [("figure1.png", cap)]


ANALYSES = {"gamma-beta": gamma_beta, "weight-scale": weight_scale, "bn-paper": bn_paper,
            "gamma-l1": gamma_l1, "bn-only": bn_only, "zero-gamma": zero_gamma,
            "sync-bn": sync_bn}
