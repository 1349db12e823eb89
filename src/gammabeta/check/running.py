"""Running statistics: which average the layer keeps, fitted from what it stores.

After each training step the layer's running mean r_k is read back and the weight w of the new
batch is fitted by least squares to r_k = (1 − w)·r_{k−1} + w·b_k (steps 2..K, so the unknown
start value does not matter); for the variance both b = unbiased and b = biased batch variance
are tried. From the fit follow, without reading any source:

* the momentum convention (a second run with momentum 0.2 gives w = 0.2 for PyTorch's, 0.8 for
  Keras's), and whether the default weights the new batch by more than half (swapped);
* whether running_var stores the unbiased variance (PyTorch) or the biased one (cs231n), and
  whether ε is folded into it (stores var + ε);
* the start values r_0 = (r_1 − w·b_1)/(1 − w) (PyTorch: 0 and 1; the cs231n template: 0 and 0);
* w = 1 (the running statistics are just the last batch's) and a momentum argument that is
  ignored (the probe run gets the same weight as the default run).

Conventions (Keras's momentum, the biased variance, running_var starting at 0, folded ε) are
NOTEs: they are consistent, and the evaluation checks then use them. Only an update that is
not a running average, or one that ignores the momentum it is given, FAILs.
"""

from __future__ import annotations

import numpy as np

from .diagnose import compare
from .reference import running_after, stats
from .sandbox import UserFailure

__all__ = ["check_running"]

FIT_TOL = 1e-4
PROBE = 0.2


def _fit(obs, targets):
    """Least-squares new-batch weight w and the relative residual, from steps 2..K."""
    prev, cur, tb = obs[:-1], obs[1:], targets[1:]
    d = np.concatenate([t - p for t, p in zip(tb, prev, strict=True)])
    e = np.concatenate([c - p for c, p in zip(cur, prev, strict=True)])
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(e))):
        return float("nan"), float("inf")
    dd = float(d @ d)
    if dd == 0.0:
        return float("nan"), float("inf")
    w = float(d @ e) / dd
    return w, float(np.linalg.norm(e - w * d) / np.sqrt(dd))


def _steps(ctx, gamma, beta, batches, momentum):
    """Reset, train on ``batches``; returns reset info, start arrays and (mean, var) per step."""
    meta, arrays = ctx.reset(gamma, beta, momentum=momentum)
    if momentum is not None and not meta.get("momentum_set"):
        raise UserFailure("config", "no way to pass a momentum", where="momentum")
    ctx.running["paths"] = meta.get("paths")
    seq = []
    for xb in batches:
        ctx.forward(xb, True)
        seq.append(ctx.running_stats())
    return meta, arrays, seq


def _analyse(seq, batches, eps: float = 0.0) -> dict:
    """Fit the mean and variance updates (biased or unbiased, ε folded in or not); infer the
    start values."""
    s = [stats(xb) for xb in batches]
    w_m, res_m = _fit([r[0] for r in seq], [t["mean_c"] for t in s])
    fits = {(u, f): _fit([r[1] for r in seq],
                         [t["unbiased_c" if u else "var_c"] + f for t in s])
            for u in (True, False) for f in ((0.0, eps) if eps > 0 else (0.0,))}
    (unbiased, fold) = min(fits, key=lambda k: (fits[k][1], k[1]))
    w_v, res_v = fits[(unbiased, fold)]
    plain = fits[(unbiased, 0.0)][1]
    out = {"w_mean": w_m, "res_mean": res_m, "w_var": w_v, "res_var": res_v,
           "unbiased": unbiased, "fold_eps": fold > 0 and plain > 100 * res_v + 1e-12,
           "w": w_m}
    out["consistent"] = (res_m < FIT_TOL and res_v < FIT_TOL and abs(w_m - w_v) < 1e-3
                         and -1e-9 <= w_m <= 1 + 1e-9)
    if out["consistent"] and w_m < 0.98:
        b1 = s[0]
        out["r0_mean"] = (seq[0][0] - w_m * b1["mean_c"]) / (1 - w_m)
        var1 = b1["unbiased_c" if unbiased else "var_c"] + (fold if out["fold_eps"] else 0.0)
        out["r0_var"] = (seq[0][1] - w_m * var1) / (1 - w_m)
    return out


def _cumulative(seq, batches) -> bool:
    """Is running_k the plain average of the first k batch statistics (momentum=None)?"""
    s = [stats(xb) for xb in batches]
    for k, (rm, rv) in enumerate(seq, start=1):
        mean = np.mean([t["mean_c"] for t in s[:k]], axis=0)
        if not np.allclose(rm, mean, rtol=1e-5, atol=1e-7):  # float32 buffers too
            return False
        if not any(np.allclose(rv, np.mean([t[v] for t in s[:k]], axis=0), rtol=1e-5,
                               atol=1e-7) for v in ("unbiased_c", "var_c")):
            return False
    return True


def _fits_std(seq, batches, eps: float) -> bool:
    """Does running_var follow a running average of the batch standard deviation?"""
    s = [stats(xb) for xb in batches]
    for add in (0.0, eps):
        for k in ("var_c", "unbiased_c"):
            _, res = _fit([r[1] for r in seq], [np.sqrt(t[k] + add) for t in s])
            if res < FIT_TOL:
                return True
    return False


def _convention(w_probe: float | None, w_default: float) -> str:
    """pytorch, keras, ignored or unknown, from the probe run's weight."""
    if w_probe is None or not np.isfinite(w_probe):
        return "unknown"
    if abs(w_probe - PROBE) < 1e-3:
        return "pytorch"
    if abs(w_probe - (1 - PROBE)) < 1e-3:
        return "keras"
    if abs(w_probe - w_default) < 1e-3:
        return "ignored"
    return "unknown"


def check_running(ctx) -> None:
    """Findings running_stats, momentum_convention, running_var_unbiased, running_init."""
    rng = ctx.rng("running")
    gamma, beta = ctx.params(rng)
    batches = [ctx.batch(rng, loc=(-4, 4), scale=(0.5, 3)) for _ in range(4)]
    title = "running statistics"
    # probe the convention: how much weight does momentum=0.2 give the new batch?
    w_probe, probe_note = None, None
    try:
        pmeta, _, pseq = _steps(ctx, gamma, beta, batches[:3], PROBE)
        ctx.running["momentum_via"] = pmeta.get("momentum_via", "")
        if all(r[0] is not None and r[1] is not None for r in pseq):
            w_probe = _analyse(pseq, batches[:3], ctx.eps)["w_mean"]
    except UserFailure as e:
        if e.kind != "config":
            raise
        probe_note = e.message
    # the default run
    note = None
    try:
        meta, start, seq = _steps(ctx, gamma, beta, batches, None)
    except UserFailure as e:
        conv = _convention(w_probe, float("nan"))
        if not (e.etype == "KeyError" and "momentum" in e.message and conv in ("pytorch", "keras")):
            raise
        nominal = 0.1 if conv == "pytorch" else 0.9
        note = f"bn_param without 'momentum' raised KeyError; used momentum={nominal}"
        meta, start, seq = _steps(ctx, gamma, beta, batches, nominal)
        meta["momentum"] = nominal
    if meta.get("momentum_filled") and _convention(w_probe, float("nan")) == "keras":
        # a required momentum the checker filled with PyTorch's 0.1: Keras's value instead
        note = "the constructor requires a momentum; used momentum=0.9 (its convention)"
        ctx.default_momentum = 0.9  # every later fresh layer gets it too
        meta, start, seq = _steps(ctx, gamma, beta, batches, 0.9)
        meta["momentum"] = 0.9
    if any(r[0] is None or r[1] is None for r in seq):
        where = ("bn_param has no 'running_mean'/'running_var' after a training step: the "
                 "forward pass must store them there" if ctx.info.get("style") != "class" else
                 "no running statistics attribute found (tried running_mean, moving_mean, "
                 "running_var, moving_var, ...); name them with --running-mean-attr and "
                 "--running-var-attr")
        ctx.add("running_stats", "fail", title, where,
                cause="without running statistics evaluation mode cannot work")
        ctx.running["missing"] = True
        return
    fit = _analyse(seq, batches, ctx.eps)
    ctx.running.update(fit)
    ctx.running["first_batch"] = batches[0]
    details = [note] if note else []
    w = fit["w"]
    if not fit["consistent"] and _cumulative(seq, batches):
        ctx.running.update(consistent=False, cumulative=True)
        ctx.add("running_stats", "pass", title,
                "the running statistics are the cumulative average of every batch so far "
                "(PyTorch's momentum=None)", details=details)
        return
    if not fit["consistent"]:
        if abs(fit["w_mean"] - 1) < 1e-6 and fit["res_mean"] < FIT_TOL:
            msg, cause = ("the running statistics equal the last batch's statistics after every "
                          "step", "running statistics are overwritten with the current batch's "
                          "(no running average: the momentum/decay term is missing)")
        elif abs(fit["w_mean"]) < 1e-9 and abs(fit["w_var"]) < 1e-9 and fit["res_mean"] < FIT_TOL:
            msg, cause = ("running statistics never change during training",
                          "the update is computed but not stored (or momentum 1 on the old value)")
        elif fit["res_mean"] < FIT_TOL and fit["res_var"] < FIT_TOL:
            msg = (f"running_mean and running_var use different weights for the new batch "
                   f"({fit['w_mean']:.4g} and {fit['w_var']:.4g})")
            cause = "the two running averages are updated with different momenta"
        elif fit["res_mean"] < FIT_TOL and _fits_std(seq, batches, ctx.eps):
            msg = ("running_var is a running average of the batch standard deviation, not of "
                   "the variance")
            cause = ("running_var accumulates σ (np.std or √(σ² + ε)) instead of σ²: evaluation "
                     "then normalizes with the wrong scale")
        else:
            msg = ("running statistics match neither momentum convention: no weight w fits "
                   "running ← (1−w)·running + w·batch")
            bad = "running_mean" if fit["res_mean"] >= FIT_TOL else "running_var"
            cause = (f"{bad} is not a running average of the batch "
                     f"{'mean' if bad == 'running_mean' else 'variance (biased or unbiased)'}")
        details.append(f"best fit: w = {fit['w_mean']:.4g} for the mean (relative residual "
                       f"{fit['res_mean']:.2g}), w = {fit['w_var']:.4g} for the variance "
                       f"({fit['res_var']:.2g})")
        ctx.add("running_stats", "fail", title, msg, cause=cause, details=details)
        return
    if abs(w - 1) < 1e-6:
        ctx.add("running_stats", "fail", title,
                "the running statistics equal the last batch's statistics after every step",
                cause="running statistics are overwritten with the current batch's (no running "
                      "average: the momentum/decay term is missing)", details=details)
        ctx.running["consistent"] = False
        return
    ctx.add("running_stats", "pass", title,
            f"running averages with new-batch weight {w:.4g} over 4 steps (relative residual "
            f"{max(fit['res_mean'], fit['res_var']):.1g})", details=details)
    if fit["fold_eps"]:
        ctx.add("running_var_eps", "note", "ε in running_var",
                f"running_var stores the batch variance + ε (ε = {ctx.eps:g} folded in)",
                cause="a convention: consistent as long as eval then divides by √running_var "
                      "without adding ε again (see eval_mode)")
    _momentum_finding(ctx, w, w_probe, meta.get("momentum"), probe_note,
                      ctx.running.get("momentum_via", ""))
    _unbiased_finding(ctx, fit, batches, seq)
    _init_finding(ctx, fit, start)


def _momentum_finding(ctx, w, w_probe, m_attr, probe_note, via="") -> None:
    """The momentum_convention finding."""
    conv = _convention(w_probe, w)
    ctx.running["convention"] = conv
    if m_attr is None:
        m_attr = {"pytorch": w, "keras": 1 - w}.get(conv)
    m = f"momentum={m_attr:.4g}" if m_attr is not None else "the default momentum"
    title = "momentum convention"
    if w > 0.5:
        msg = (f"with {m} the running statistics weight the new batch by {w:.4g} and the "
               f"history by only {1 - w:.4g}")
        if conv == "keras":
            cause = (f"momentum convention swapped: {m_attr:.4g} is PyTorch's value (the weight "
                     "of the new batch), but the code uses momentum the Keras/cs231n way (the "
                     "weight of the running value: running = m·running + (1−m)·batch)")
        elif conv == "pytorch":
            cause = (f"momentum convention swapped: {m_attr:.4g} is Keras's value (the weight of "
                     "the running value), but the code uses momentum the PyTorch way (the "
                     "weight of the new batch: running = (1−m)·running + m·batch)")
        else:
            cause = ("momentum convention swapped: a running average should weight the history "
                     "more (PyTorch: momentum=0.1 on the new batch; Keras: 0.99 on the old)")
        ctx.add("momentum_convention", "fail", title, msg, cause=cause)
    elif conv == "keras":
        ctx.add("momentum_convention", "note", title,
                f"momentum is the weight of the running value (Keras/cs231n convention: "
                f"running = m·running + (1−m)·batch); {m} weights the new batch by {w:.4g}, "
                f"like PyTorch's momentum={w:.4g}",
                cause="consistent, not a failure: PyTorch's momentum is 1 − this one")
    elif conv == "pytorch":
        ctx.add("momentum_convention", "pass", title,
                f"momentum is the weight of the new batch (PyTorch's convention); {m} "
                f"weights the new batch by {w:.4g}")
    elif conv == "ignored":
        where = {"constructor": "the constructor's momentum argument",
                 "bn_param": "bn_param['momentum']",
                 "attribute": "the momentum attribute"}.get(via, "the momentum given")
        ctx.add("momentum_convention", "fail", title,
                f"momentum={PROBE} passed through {where} has no effect: the new batch always "
                f"gets weight {w:.4g}",
                cause=f"momentum is ignored: {where} is not used by the running-statistics "
                      "update (a hard-coded value, or a misspelt attribute)")
    else:
        why = f" ({probe_note})" if probe_note else ""
        ctx.add("momentum_convention", "pass", title,
                f"the new batch gets weight {w:.4g}; convention not probed{why}")


def _unbiased_finding(ctx, fit, batches, seq) -> None:
    """The running_var_unbiased finding."""
    title = "unbiased running variance"
    m = stats(batches[0])["m"]
    if fit["unbiased"]:
        ctx.add("running_var_unbiased", "pass", title,
                "running_var stores the unbiased batch variance (×m/(m−1)), as PyTorch does")
        return
    r0 = (0.0, 1.0)
    if "r0_mean" in fit:
        r0 = (0.0, float(np.mean(fit["r0_var"])))
    _, want = running_after(batches, w=fit["w"], unbiased=True, r0=r0,
                            fold_eps=ctx.eps if fit["fold_eps"] else 0.0)
    status = "fail" if ctx.opts.strict_pytorch else "note"
    ctx.add("running_var_unbiased", status, title,
            "running_var matches the biased batch variance (differs from PyTorch"
            + ("; --strict-pytorch makes this a failure)" if status == "fail" else
               "; a convention, both are defensible)"),
            cause=(f"running_var matches the biased batch variance: PyTorch stores the unbiased "
                   f"one, n/(n−1) larger (n = {m} here: ×{m / (m - 1):.4g})"),
            cmp=compare(seq[-1][1], want))


def _init_finding(ctx, fit, start) -> None:
    """The running_init finding."""
    title = "running statistics start values"
    w = fit["w"]
    direct = start.get("running_mean") is not None and start.get("running_var") is not None
    if direct:
        rm0 = start["running_mean"].astype(np.float64).reshape(-1)
        rv0 = start["running_var"].astype(np.float64).reshape(-1)
        how = "at construction"
    elif "r0_mean" in fit:
        rm0, rv0, how = fit["r0_mean"], fit["r0_var"], "inferred from the first training step"
    else:
        ctx.add("running_init", "skip", title,
                "start values cannot be inferred (the first step overwrites them)")
        return
    ok_m = np.allclose(rm0, 0.0, atol=1e-6)
    fold = ctx.eps if fit.get("fold_eps") else 0.0
    ok_v = np.allclose(rv0, 1.0, atol=1e-6, rtol=1e-6) or (
        fold and np.allclose(rv0, 1.0 + fold, atol=1e-6, rtol=1e-6))
    if ok_m and (ok_v or np.allclose(rv0, 0.0, atol=1e-6)):
        ctx.running["r0"] = (0.0, rv0.copy())
    if ok_m and ok_v:
        ctx.add("running_init", "pass", title,
                f"running_mean starts at 0 and running_var at 1 ({how})")
        return
    if ok_m and np.allclose(rv0, 0.0, atol=1e-6):
        ctx.add("running_init", "note", title,
                f"running_var starts at 0 ({how}); PyTorch starts it at 1",
                cause=(f"a convention (the cs231n template's default): it matters only right "
                       f"after training starts, when running_var is about {w:.3g}·var after one "
                       f"step (weight {w:.3g}), so evaluation then divides by a too-small "
                       "variance; starting at 1 avoids that"))
        return
    s1 = stats(ctx.running["first_batch"]) if ctx.running.get("first_batch") is not None \
        else None
    if s1 is not None and np.allclose(rm0, s1["mean_c"], atol=1e-6) and any(
            np.allclose(rv0, s1[k] + fold, atol=1e-6) for k in ("var_c", "unbiased_c")):
        ctx.running["r0"] = "first_batch"
        ctx.add("running_init", "note", title,
                f"the running statistics start as the first training batch's statistics ({how})",
                cause="a convention: PyTorch starts at mean 0 and variance 1; starting from the "
                      "first batch avoids the early bias of those start values")
        return
    bad, arr, want = (("running_var", rv0, 1.0) if not ok_v else ("running_mean", rm0, 0.0))
    ctx.add("running_init", "fail", title,
            f"{bad} starts at {np.array2string(arr, precision=4)} ({how}); expected {want:g}",
            cause=f"{bad} is initialized to the wrong value; PyTorch uses mean 0 and variance 1",
            cmp=compare(arr, np.full_like(arr, want)))
