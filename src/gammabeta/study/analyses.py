"""The analyses behind the built-in studies: tables, figures and conclusions from the rows.

Each function takes ``(spec, rows, out)`` and returns ``(markdown sections, figure files)``;
each sentence of a conclusion is picked by comparing the numbers (see :mod:`.report`).
"""

from __future__ import annotations

import numpy as np

from . import figures as F
from .report import (
    acc_at,
    best_curve_accuracy,
    chance,
    compare,
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

__all__ = ["ANALYSES"]


def _labels(rows, axis: str) -> list:
    return list(dict.fromkeys(r["axes"][axis] for r in rows))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def gamma_beta(spec, rows, out):
    sec, text, panels = ["## Results"], [], []
    for net in _labels(rows, "net"):
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
        default = ("ones", "zeros")
        best = max(ok, key=lambda k: ok[k]["mean"])
        worst = min(ok, key=lambda k: ok[k]["mean"])
        text.append(f"**{net}.** Best: γ = {best[0]}, β = {best[1]} ({fmt(ok[best])}%); "
                    f"worst: γ = {worst[0]}, β = {worst[1]} ({fmt(ok[worst])}%).")
        if default in ok:
            better = [k for k in ok if k != default and compare(ok[k], ok[default])[1]
                      and compare(ok[k], ok[default])[0] > 0]
            verdict = ("the usual advice holds here: no setting beats γ = 1, β = 0 beyond seed "
                       "noise" if not better else "the usual advice does not hold here: " +
                       "; ".join(f"γ = {k[0]}, β = {k[1]} beats it by "
                                 f"{diff_text(ok[k], ok[default])}" for k in better))
            text.append(f"- γ = 1, β = 0 reached {fmt(ok[default])}%; {verdict}.")
            for gam in [k[0] for k in ok if k[1] == "zeros" and k[0] != "ones"]:
                k = (gam, "zeros")
                s_def, s_k = steps_summary(g[default], top), steps_summary(g[k], top)
                text.append(f"- γ = {gam} (β = 0) vs γ = 1: {diff_text(ok[k], ok[default])}; "
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
    return [*sec, "## Conclusion", *text], [fig]


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
    text = []
    variants = _labels(rows, "scaled") if "scaled" in axes else [None]
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
            at1 = {k[0]: by[(*k, 1)] for k in keys} if 1 in scales else {}
            if len(at1) > 1:
                hi_i = max(at1, key=lambda i: at1[i]["mean"])
                lo_i = min(at1, key=lambda i: at1[i]["mean"])
                lines.append(f"- {n}, at ×1: {hi_i} vs {lo_i}: "
                             f"{diff_text(at1[hi_i], at1[lo_i])}.")
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
    return [*sec, "## Conclusion", *text], ["scale.png"]


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
    text = []
    if len(labels) == 2:
        a, b = st[labels[1]], st[labels[0]]
        d, real = compare(a, b)
        verdict = ("as in the paper, BN ends higher" if real and d > 0 else
                   "unlike the paper, BN does not end higher here")
        text.append(f"- Final test accuracy, {labels[1][0]} vs {labels[0][0]}: "
                    f"{diff_text(a, b)}; {verdict}.")
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
    return [*sec, "## Conclusion", *text], [("figure1.png", cap)]


def gamma_l1(spec, rows, out):
    sec, text, hists, prune_panels = ["## Results"], [], [], []
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
        s0, sh0, md0, _ = info[lams[0]]
        sl, shl, mdl, _ = info[lams[-1]]
        claim = ("does not hold here" if sh0 < 0.05 else "holds in part" if sh0 < 0.3
                 else "holds here")
        text.append(f"**{net}.** Without a penalty (λ = {lams[0]}), {_pct(sh0)} of the channels "
                    f"end with |γ| < 0.01 (median |γ| = {md0:.3g}): the claim that γ acts as "
                    f"an L1 regularizer by itself {claim}.")
        text.append(f"- With λ = {lams[-1]}: {_pct(shl)} below 0.01 (median {mdl:.3g}); "
                    f"accuracy {diff_text(sl, s0)} against λ = {lams[0]}.")
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
    return [*sec, "## Conclusion", *text], figs


def bn_only(spec, rows, out):
    sec, text, panels = ["## Results"], [], []
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
        text.append(f"**{net}** (each at its better learning rate): " + "; ".join(
            f"{m}: {fmt(best[m])}% (lr {bl[m]})" for m in modes) + ".")
        if len(modes) == 3:
            a, b, r = best[modes[0]], best[modes[1]], best[modes[2]]
            d, real = compare(b, r)
            text.append(f"- {modes[1]} vs {modes[2]}: {diff_text(b, r)} — " + (
                "γ and β are worth more than as many random weights, as Frankle et al. found."
                if real and d > 0 else "γ and β are not better than as many random weights "
                "here." if not real else "as many random weights do better here."))
            text.append(f"- {modes[1]} vs training everything: {diff_text(b, a)}; chance is "
                        f"{_pct(chance(rows))}.")
    F.bar_panels([(n, [f"lr {lr}" for lr in lrs], bars) for n, lrs, bars in panels],
                 out / "bn_only.png", title=spec.title, hline=100 * chance(rows))
    return [*sec, "## Conclusion", *text], ["bn_only.png"]


def zero_gamma(spec, rows, out):
    sec, text, panels = ["## Results"], [], []
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
            (a1, e1, s1), (a0, e0, s0) = st[labs[0]], st[labs[1]]
            d, real = compare(a0, a1)
            text.append(f"**{net}.** Final accuracy, {labs[1]} vs {labs[0]}: {diff_text(a0, a1)}"
                        f"; after 10% of training: {diff_text(e0, e1)}; steps to "
                        f"{100 * top:.1f}%: {s0} vs {s1}. " + (
                            "Zero-γ helps here." if real and d > 0 else
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
    return [*sec, "## Conclusion", *text], [fig]


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
    for setup in _labels(rows, "setup"):
        sub = {k[1]: v for k, v in g.items() if k[0] == setup}
        labs = list(sub)
        if len(labs) == 2:
            a, b = (summary(sub[labs[1]]), summary(sub[labs[0]]))
            ga, gb = _gap(sub[labs[1]], "var")[0], _gap(sub[labs[0]], "var")[0]
            gaps = (f"; running_var off by {ga:.3f} vs {gb:.3f} of the population variance"
                    if ga is not None and gb is not None else "")
            text.append(f"- {setup}: {labs[1]} vs {labs[0]}: {diff_text(a, b)}{gaps}.")
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
    return ["## Results", *body, "## Conclusion", *(text or ["- No finished pairs."])], \
        ["sync_bn.png"]


ANALYSES = {"gamma-beta": gamma_beta, "weight-scale": weight_scale, "bn-paper": bn_paper,
            "gamma-l1": gamma_l1, "bn-only": bn_only, "zero-gamma": zero_gamma,
            "sync-bn": sync_bn}
