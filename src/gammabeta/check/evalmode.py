"""Evaluation mode: the layer's own running statistics, its own conventions.

* ``eval_mode``: after a few training steps, the evaluation output must be
  ``γ·(x − running_mean)/√(running_var + ε) + β`` with the statistics the layer *holds* (read
  back), so any convention for how they were accumulated is irrelevant here. An implementation
  that keeps ε folded into the stored variance (``running_var = var + ε``, eval dividing by
  √running_var) is consistent and passes with a note.
* ``eval_after_training``: one training step, then evaluation, against the running statistics
  the layer *should* hold under its own detected conventions (new-batch weight, biased or
  unbiased variance, start values, folded ε): it catches statistics that are stored in one place
  and read from another.
* ``train_eq_eval`` (layer and group norm): no running statistics, so both modes must agree.
"""

from __future__ import annotations

import numpy as np

from . import diagnose as dg
from .context import TOL, TOL_HYP, cmp_finding
from .reference import eval_ref, running_after, stats

__all__ = ["check_eval_mode", "check_eval_after_training", "check_train_eq_eval"]

BATCH_STATS = ("eval output equals the batch-statistics output: eval mode still uses batch "
               "statistics")


def _trained(ctx, tag, steps=3):
    """A fresh layer after a few training steps, and an evaluation batch."""
    rng = ctx.rng(tag)
    g, b = ctx.params(rng)
    ctx.reset(g, b)
    for _ in range(steps):
        ctx.forward(ctx.batch(rng), True)
    # an eval batch far from the training statistics, so the two kinds of output differ
    return ctx.batch(rng, loc=(3, 6), scale=(2, 4))


def _eval_hypotheses(ctx, xe, rm, rv):
    """Evaluation outputs of classic mistakes, given the statistics the layer holds."""
    g, b, eps = ctx.gamma, ctx.beta, ctx.eps
    bs = (1, -1) + (1,) * (xe.ndim - 2)
    gb, bb, rmb, rvb = (a.reshape(bs) for a in (g, b, rm, rv))
    with np.errstate(all="ignore"):
        return [
            (ctx.ref(xe)["y"], BATCH_STATS),
            (gb * (xe - rmb) / (rvb + eps) + bb,
             "eval divides by running_var + ε instead of √(running_var + ε)"),
            (gb * (xe - rmb) / (np.sqrt(rvb) + eps) + bb,
             "ε is outside the square root in eval: divide by √(running_var + ε), not "
             "√running_var + ε"),
            (gb * (xe - rmb) / np.sqrt(rvb) + bb,
             "ε is missing in eval: divide by √(running_var + ε)"),
            ((xe - rmb) / np.sqrt(rvb + eps),
             "eval drops γ and β: the output is the normalized x̂ only"),
            (gb * (xe - rmb) / np.sqrt(rvb + eps),
             "eval drops β"),
            (gb * (xe - rmb) / np.sqrt(rvb + eps) - bb,
             "eval subtracts β instead of adding it: γ·x̂ − β"),
            (gb * (xe - rmb) / (np.sqrt(rvb) + eps) - bb,
             "eval subtracts β instead of adding it, and ε is outside the square root"),
            (gb * (xe - rmb) / rvb + bb,
             "eval divides by running_var itself (as if it held the standard deviation)"),
            (gb * (xe - rvb) / np.sqrt(rmb + eps) + bb,
             "eval swaps running_mean and running_var"),
            (xe, "eval returns its input unchanged"),
        ]


def check_eval_mode(ctx) -> None:
    """Evaluation output against the formula with the layer's own statistics."""
    title = "evaluation mode"
    if not ctx.has_eval:
        ctx.add("eval_mode", "warn", title, "no way to switch the layer to evaluation mode was "
                "found (train()/eval(), a training/mode attribute, forward(x, training=...) or "
                "a keyword such as train_flg, inference, eval); evaluation was not checked",
                cause="name the switch with --mode-attr if the layer has one")
        return
    xe = _trained(ctx, "eval_mode")
    rm, rv = ctx.running_stats()
    y = ctx.forward(xe, False)
    rm2, rv2 = ctx.running_stats()
    if rm is None or rv is None:
        if dg.best_match(y, [(ctx.ref(xe)["y"], BATCH_STATS)], TOL_HYP):
            ctx.add("eval_mode", "fail", title, "eval output differs from the running-statistics "
                    "formula", cause=BATCH_STATS)
        else:
            ctx.add("eval_mode", "skip", title, "no running statistics to compare with")
        return
    want = eval_ref(xe, ctx.gamma, ctx.beta, ctx.eps, rm, rv)
    folded = ctx.running.get("fold_eps")
    if folded and dg.compare(y, eval_ref(xe, ctx.gamma, ctx.beta, 0.0, rm, rv))["err"] <= TOL:
        ctx.running["eval_folded"] = True
        ctx.add("eval_mode", "pass", title,
                "eval output is γ·(x − running_mean)/√running_var + β, with ε already folded "
                "into the stored running_var (consistent with the running update)")
    elif cmp_finding(ctx, "eval_mode", title, y, want, TOL,
                     "eval output is γ·(x − running_mean)/√(running_var + ε) + β with the "
                     "layer's own running statistics",
                     "eval output is not γ·(x − running_mean)/√(running_var + ε) + β with the "
                     "layer's own running statistics", hyps=_eval_hypotheses(ctx, xe, rm, rv)):
        pass
    else:
        return
    if not (np.array_equal(rm, rm2) and np.array_equal(rv, rv2)):
        f = ctx.report.findings[-1]
        f.status, f.message = "fail", "a forward pass in eval mode changed the running statistics"
        f.cause = "eval mode updates the running statistics (it should only read them)"
        return
    _small_variance_eval(ctx, xe)


def _small_variance_eval(ctx, xe) -> None:
    """Eval with running variances near ε, where √(v + ε), √v + ε and √v differ visibly."""
    rng = ctx.rng("eval_small_variance")
    rm = rng.uniform(-1, 1, ctx.c)
    rv = rng.uniform(1, 4, ctx.c) * max(ctx.eps, 1e-6)
    meta, _ = ctx.sb.call("set_running", {}, {"running_mean": rm, "running_var": rv},
                          what="setting the running statistics")
    if not meta.get("done"):
        return
    y = ctx.forward(xe, False)
    got_rm, got_rv = ctx.running_stats()
    if not (np.allclose(got_rm, rm) and np.allclose(got_rv, rv)):
        return  # the statistics are not kept where they were written: nothing to conclude
    eps = 0.0 if ctx.running.get("eval_folded") else ctx.eps
    want = eval_ref(xe, ctx.gamma, ctx.beta, eps, rm, rv)
    if dg.compare(y, want)["err"] <= TOL:
        ctx.report.findings[-1].message += "; also with running_var near ε"
        return
    cause = dg.best_match(y, _eval_hypotheses(ctx, xe, rm, rv), TOL_HYP)
    if cause is None:
        return  # not interpretable: the first comparison stands
    f = ctx.report.findings[-1]
    c = dg.compare(y, want)
    f.status, f.cause = "fail", cause
    f.message = ("eval output is not γ·(x − running_mean)/√(running_var + ε) + β when "
                 f"running_var is near ε (running_var ≈ {rv.min():.2g}…{rv.max():.2g})")
    f.max_error, f.index, f.got, f.expected = c["err"], c["index"], c["got"], c["want"]


def check_eval_after_training(ctx) -> None:
    """Evaluation after one training step against the layer's own conventions."""
    title = "eval after one training step"
    fit = ctx.running
    if not ctx.has_eval or fit.get("missing"):
        ctx.add("eval_after_training", "skip", title, "no evaluation mode or running statistics")
        return
    if fit.get("cumulative"):
        ctx.add("eval_after_training", "skip", title, "the running statistics are a cumulative "
                "average; eval_mode checked evaluation with them")
        return
    if not fit.get("consistent"):
        ctx.add("eval_after_training", "skip", title,
                "not run: the running statistics are not a running average (see running_stats)")
        return
    rng = ctx.rng("eval_after_training")
    g, b = ctx.params(rng)
    x1 = ctx.batch(rng)
    xe = ctx.batch(rng, loc=(-1, 1), scale=(0.5, 1.5))
    ctx.reset(g, b)
    ctx.forward(x1, True)
    y = ctx.forward(xe, False)
    w, unbiased = fit["w"], fit["unbiased"]
    fold = ctx.eps if fit.get("fold_eps") else 0.0
    r0 = fit.get("r0") or (0.0, 1.0)
    if isinstance(r0, str):  # the statistics start as the first batch's
        s0 = stats(x1)
        r0 = (s0["mean_c"], (s0["unbiased_c"] if unbiased else s0["var_c"]) + fold)
    rm, rv = running_after([x1], w=w, unbiased=unbiased, r0=r0, fold_eps=fold)
    eps = 0.0 if fit.get("eval_folded") else ctx.eps
    want = eval_ref(xe, ctx.gamma, ctx.beta, eps, rm, rv)
    s = stats(x1)
    var1 = s["unbiased_c"] if unbiased else s["var_c"]
    hyps = [(ctx.ref(xe)["y"], BATCH_STATS),
            (eval_ref(xe, ctx.gamma, ctx.beta, eps, s["mean_c"], var1),
             "eval uses the last batch's statistics (running statistics = last batch)")]
    conv = (f"new-batch weight {w:.3g}, {'unbiased' if unbiased else 'biased'} variance, "
            "start values and ε as detected")
    cmp_finding(ctx, "eval_after_training", title, y, want, TOL,
                f"eval after one step matches the reference ({conv})",
                f"eval output after one training step differs from the reference ({conv})",
                hyps=hyps)


def check_train_eq_eval(ctx) -> None:
    """Layer/group norm: training and evaluation outputs agree (no running statistics)."""
    title = "evaluation mode"
    if not ctx.has_eval or ctx.info.get("style") != "class" or not ctx.info.get("mode"):
        ctx.add("train_eq_eval", "skip", title, "no evaluation mode to compare")
        return
    rng = ctx.rng("train_eq_eval")
    g, b = ctx.params(rng)
    ctx.reset(g, b)
    for _ in range(2):
        ctx.forward(ctx.batch(rng), True)
    x = ctx.batch(rng, loc=(3, 6), scale=(2, 4))
    y_eval = ctx.forward(x, False)
    cmp_finding(ctx, "train_eq_eval", title, y_eval, ctx.ref(x)["y"], TOL,
                "evaluation output equals the per-sample formula (no running statistics)",
                f"evaluation output differs from training output: {ctx.norm.title} has no "
                "running statistics, both modes must normalize each sample by its own "
                "statistics")
