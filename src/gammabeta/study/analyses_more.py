"""The analyses of the gamma-l1, bn-only, zero-gamma and sync-bn studies (see
:mod:`.analyses` for the others and the registry).

As there, every comparison of two settings goes into the report's :class:`.stats.Family`
before any sentence that states a verdict is written.
"""

from __future__ import annotations

import numpy as np

from . import figures as F
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
    summary,
    table,
)
from .report import labels as _labels
from .report import pct as _pct
from .stats import Family

__all__ = ["gamma_l1", "bn_only", "zero_gamma", "sync_bn"]


def gamma_l1(spec, rows, out):
    sec, text, hists, prune_panels, fam, nets = ["## Results"], [], [], [], Family(), []
    for net in _labels(rows, "net"):
        sub = [r for r in rows if r["axes"]["net"] == net]
        g = groups(sub, "l1_gamma")
        info = {}
        for (lam,), rs in g.items():
            gam = np.abs(np.concatenate([np.asarray(r.get("gamma") or [], float) for r in rs]))
            info[lam] = (summary(rs), float(np.mean(gam < 1e-2)), float(np.median(gam)), gam)
            hists.append((f"{net}, λ = {lam}", gam))
        fr = [p["fraction"] for p in (sub[0].get("prune") or [])]

        def pr(rs, i, key):
            return summary([{"a": (r["prune"][i].get(key) if r.get("prune") else None)}
                            for r in rs], "a")

        sec += [f"### {net}", table(["λ", "test accuracy (%)", "share |γ| < 0.01",
                                     "median |γ|"],
                                    [[lam, fmt(s), _pct(sh), f"{md:.3g}"]
                                     for lam, (s, sh, md, _) in info.items()])]
        if fr:
            sec.append(table(["λ", *[f"prune {100 * f:.0f}%" for f in fr]],
                             [[lam, *[f"{fmt(pr(rs, i, 'accuracy'))} / "
                                      f"{fmt(pr(rs, i, 'finetuned_accuracy'))}"
                                      for i in range(len(fr))]] for (lam,), rs in g.items()]))
            prune_panels.append((net, [
                (f"λ = {lam}{' + fine-tune' if key != 'accuracy' else ''}", fr,
                 [100 * (pr(rs, i, key)["mean"] or 0) for i in range(len(fr))],
                 [100 * pr(rs, i, key)["std"] for i in range(len(fr))],
                 f"C{j}" + ("o-", "s--")[key != "accuracy"])
                for j, ((lam,), rs) in enumerate(g.items())
                for key in ("accuracy", "finetuned_accuracy")]))
        lams = list(info)
        c = fam.add(info[lams[-1]][0], info[lams[0]][0], f"{net}: λ = {lams[-1]} vs λ = {lams[0]}")
        nets.append((net, g, info, fr, c, pr))
    for net, g, info, fr, c, pr in nets:  # the sentences, once the family is complete
        lams = list(info)
        sh0, md0 = info[lams[0]][1:3]
        shl, mdl = info[lams[-1]][1:3]
        claim = ("does not hold here" if sh0 < 0.05 else "holds in part" if sh0 < 0.3
                 else "holds here")
        text.append(f"**{net}.** Without a penalty (λ = {lams[0]}), {_pct(sh0)} of the channels "
                    f"end with |γ| < 0.01 (median |γ| = {md0:.3g}): the claim that γ acts as "
                    f"an L1 regularizer by itself {claim}.")
        text.append(f"- With λ = {lams[-1]}: {_pct(shl)} below 0.01 (median {mdl:.3g}); "
                    f"accuracy {diff_text(c, fam)} against λ = {lams[0]}.")
        if fr:
            for (lam,), rs in g.items():
                fine = [f for i, f in enumerate(fr)
                        if (pr(rs, i, "accuracy")["mean"] or 0) >= info[lam][0]["mean"] - 0.01]
                text.append(f"- λ = {lam}: up to {100 * max(fine or [0]):.0f}% of the channels "
                            "can be pruned losing ≤ 1 point without fine-tuning.")
    F.hist_panels(hists, out / "gamma_hist.png", title="|γ| after training (all seeds)")
    figs = ["gamma_hist.png"]
    if prune_panels:
        F.xy_panels(prune_panels, out / "pruning.png", "fraction of BN channels pruned",
                    "test accuracy (%)", title="Pruning the smallest |γ|", hline=100 * chance(rows))
        figs.append("pruning.png")
    return [*sec, *conclusion(fam, text)], figs


def bn_only(spec, rows, out):
    sec, text, panels, fam, nets = ["## Results"], [], [], Family(), []
    modes = _labels(rows, "trainable")
    for net in _labels(rows, "net"):
        sub = [r for r in rows if r["axes"]["net"] == net]
        g = groups(sub, "trainable", "lr")
        st = {k: summary(v) for k, v in g.items()}
        lrs = _labels(sub, "lr")
        sec += [f"### {net}", table(
            ["trained", "peak lr", "test accuracy (%)", "trainable parameters"],
            [[*k, fmt(st[k]), f"{v[0]['trainable_params']:,} of {v[0]['total_params']:,}"]
             for k, v in g.items()])]
        best = {m: max((st[m, lr] for lr in lrs), key=lambda s: s["mean"] or -1) for m in modes}
        bl = {m: max(lrs, key=lambda lr, m=m: st[m, lr]["mean"] or -1) for m in modes}
        panels.append((net, lrs, [(m, [100 * (st[m, lr]["mean"] or 0) for lr in lrs],
                                   [100 * st[m, lr]["std"] for lr in lrs]) for m in modes]))
        cs = ((fam.add(best[modes[1]], best[modes[2]], f"{net}: {modes[1]} (lr {bl[modes[1]]}) "
                       f"vs {modes[2]} (lr {bl[modes[2]]})"),
               fam.add(best[modes[1]], best[modes[0]], f"{net}: {modes[1]} (lr {bl[modes[1]]}) "
                       f"vs {modes[0]} (lr {bl[modes[0]]})")) if len(modes) == 3 else None)
        nets.append((net, best, bl, cs))
    for net, best, bl, cs in nets:  # the sentences, once the family is complete
        text.append(f"**{net}** (each at its better learning rate): " + "; ".join(
            f"{m}: {fmt(best[m])}% (lr {bl[m]})" for m in modes) + ".")
        if cs:
            c, c_all = cs
            real = fam.significant(c)
            text.append(f"- {modes[1]} vs {modes[2]}: {diff_text(c, fam)} — " + (
                "γ and β are worth more than as many random weights, as Frankle et al. found."
                if real and c.diff > 0 else "γ and β are not better than as many random "
                "weights here." if not real else "as many random weights do better here."))
            text.append(f"- {modes[1]} vs training everything: {diff_text(c_all, fam)}; chance "
                        f"is {_pct(chance(rows))}.")
    F.bar_panels([(n, [f"lr {lr}" for lr in lrs], bars) for n, lrs, bars in panels],
                 out / "bn_only.png", title=spec.title, hline=100 * chance(rows))
    return [*sec, *conclusion(fam, text)], ["bn_only.png"]


def zero_gamma(spec, rows, out):
    sec, text, panels, fam, nets = ["## Results"], [], [], Family(), []
    rows_t = []
    for net in _labels(rows, "net"):
        sub = [r for r in rows if r["axes"]["net"] == net]
        g = groups(sub, "last_gamma")
        top = 0.9 * best_curve_accuracy(sub)
        st = {k[0]: (summary(v), acc_at(v, 0.1), steps_summary(v, top)) for k, v in g.items()}
        dead = {k[0]: float(np.mean(np.concatenate([np.asarray(r.get("gamma") or [1.0]) == 0
                                                    for r in v]))) for k, v in g.items()}
        rows_t += [[net, k, fmt(a), fmt(e), s, _pct(dead[k])] for k, (a, e, s) in st.items()]
        panels.append((net, curve_series({k[0]: v for k, v in g.items()})))
        labs = list(st)
        if len(labs) == 2:
            (a1, e1, _), (a0, e0, _) = st[labs[0]], st[labs[1]]
            nets.append((net, top, st, dead, labs,
                         fam.add(a0, a1, f"{net}: final, {labs[1]} vs {labs[0]}"),
                         fam.add(e0, e1, f"{net}: at 10% of training, {labs[1]} vs {labs[0]}")))
    for net, top, st, dead, labs, c, c_early in nets:  # once the family is complete
        s1, s0 = st[labs[0]][2], st[labs[1]][2]
        real = fam.significant(c)
        text.append(f"**{net}.** Final accuracy, {labs[1]} vs {labs[0]}: {diff_text(c, fam)}"
                    f"; after 10% of training: {diff_text(c_early, fam)}; steps to "
                    f"{100 * top:.1f}%: {s0} vs {s1}. " + (
                        "Zero-γ helps here." if real and c.diff > 0 else
                        "Zero-γ hurts here." if real else
                        "Zero-γ makes no difference beyond seed noise at the end."))
        if dead[labs[1]] > 0:
            text.append(f"- {_pct(dead[labs[1]])} of all γ of the {net} are still exactly "
                        "0 after training with zero-γ: where the zeroed BN is followed by "
                        "a ReLU inside the block, γ = β = 0 gives ReLU(0) = 0 with zero "
                        "gradient, so those γ never move and their blocks stay switched "
                        "off; the trick assumes the block ends with the BN.")
    sec.append(table(["network", "last γ of each block", "test accuracy (%)",
                      "at 10% of training", "steps to 90% of best", "γ exactly 0 at the end"],
                     rows_t))
    fig = curves_figure(panels, out, "last γ", spec.title,
                        "one panel per network, both on the same y axis")
    return [*sec, *conclusion(fam, text)], [fig]


def _gap(rows, which: str) -> tuple[float | None, float]:
    vals = [r["bn_gap"][which] for r in rows if (r.get("bn_gap") or {}).get(which) is not None]
    return (float(np.mean(vals)) if vals else None,
            float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)


def sync_bn(spec, rows, out):
    """Per-worker BatchNorm against SyncBatchNorm at small per-worker batches."""
    g = groups(rows, "setup", "bn")
    body, text, series = [], [], {}
    for (_setup, bn), rs in g.items():
        ranks = int(rs[0]["options"].get("ranks", 1))
        per_worker = int(rs[0]["config"]["batch_size"]) // ranks
        acc = summary(rs)
        (gm, _), (gv, gv_sd) = _gap(rs, "mean"), _gap(rs, "var")
        body.append([ranks, per_worker, bn, fmt(acc), "-" if gm is None else f"{gm:.3f}",
                     "-" if gv is None else f"{gv:.3f}"])
        s = series.setdefault((ranks, bn), {"x": [], "acc": [], "acc_sd": [], "gv": [],
                                            "gv_sd": []})
        s["x"].append(per_worker)
        s["acc"].append(None if acc["mean"] is None else 100 * acc["mean"])
        s["acc_sd"].append(100 * acc["std"])
        s["gv"].append(gv)
        s["gv_sd"].append(gv_sd)
    fam, pairs = Family(), []
    for setup in _labels(rows, "setup"):
        sub = {k[1]: v for k, v in g.items() if k[0] == setup}
        labs = list(sub)
        if len(labs) == 2:
            pairs.append((setup, sub, labs, fam.add(summary(sub[labs[1]]), summary(sub[labs[0]]),
                                                    f"{setup}: {labs[1]} vs {labs[0]}")))
    for setup, sub, labs, c in pairs:  # the sentences, once the family is complete
        ga, gb = _gap(sub[labs[1]], "var")[0], _gap(sub[labs[0]], "var")[0]
        gaps = (f"; running_var off by {ga:.3f} vs {gb:.3f} of the population variance"
                if ga is not None and gb is not None else "")
        text.append(f"- {setup}: {labs[1]} vs {labs[0]}: {diff_text(c, fam)}{gaps}.")
    styles = ["o-", "s--", "^-", "v--", "D-", "x--"]
    panels = [("test accuracy (%)", [(f"{r} ranks, {bn}", s["x"], s["acc"], s["acc_sd"],
                                      styles[i % 6]) for i, ((r, bn), s) in
                                     enumerate(series.items())]),
              ("|running_var − population var| / var", [
                  (f"{r} ranks, {bn}", s["x"], s["gv"], s["gv_sd"], styles[i % 6])
                  for i, ((r, bn), s) in enumerate(series.items())])]
    F.xy_panels(panels, out / "sync_bn.png", xlabel="samples per worker", ylabel="",
                title=f"{spec.title} (error bars: ± 1 std over seeds)", logx=True)
    body = [table(["ranks", "per worker", "BatchNorm", "test accuracy (%)",
                   "running_mean gap (σ)", "running_var gap (rel.)"], body)]
    return ["## Results", *body, *conclusion(fam, text or ["- No finished pairs."])], \
        ["sync_bn.png"]


