"""Study outputs: results.csv, results.json, figures and report.md with a generated conclusion.

Every number in a report comes from the rows of the runs; every sentence of a conclusion is
chosen by comparing those numbers, so a claim that does not hold is reported as such. Two
settings are compared with a t-test over seeds (:mod:`.stats`): paired by seed when both ran
on the same seeds, Welch's otherwise, with the 95% confidence interval of the difference and
an effect size. All the comparisons of one report form one family: a difference is called
"beyond seed noise" when its Holm–Bonferroni adjusted p-value is below α = 0.05, and the
report says how many comparisons it makes and lists them (:func:`conclusion`). The tests
measure the variation over seeds (whatever the seed changes: initialization, data order,
split); they do not add the sampling error of a finite test set.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..io import atomic_write_text
from .stats import ALPHA, Comparison, Family
from .stats import fmt_p as _p

__all__ = ["REPORTS", "reports", "write_outputs", "summary", "fmt", "table", "diff_text",
           "conclusion", "groups"]

# The analyses a study file may name with ``report = "..."`` (study/analyses.py has the rest).
REPORTS = ("generic", "gamma-beta", "weight-scale", "bn-paper", "gamma-l1", "bn-only",
           "zero-gamma", "sync-bn", "small-gamma", "small-batch", "precise-bn", "gamma-beta-norms",
           "norm-choice")


def groups(rows, *axes) -> dict:
    """Rows grouped by their labels on ``axes`` (grid order kept)."""
    out: dict[tuple, list] = {}
    for r in rows:
        out.setdefault(tuple(r["axes"][a] for a in axes), []).append(r)
    return out


def summary(rows, key: str = "test_accuracy", chance: float | None = None) -> dict:
    """Mean, std, n and diverged count of ``key`` over rows (diverged rows count as
    ``chance`` when given, else are left out); ``values`` and their rows' ``seeds`` are kept
    for the tests of :mod:`.stats`."""
    vals, seeds, div = [], [], 0
    for r in rows:
        v = r.get(key)
        if v is None:
            div += 1
            if chance is None:
                continue
            v = chance
        vals.append(v)
        seeds.append(r.get("seed"))
    a = np.asarray(vals, dtype=float)
    mean = float(a.mean()) if a.size else None
    return {"mean": mean, "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size),
            "diverged": div, "values": vals, "seeds": seeds}


def fmt(s: dict, scale: float = 100.0, digits: int = 1) -> str:
    """``"97.1 ± 0.4"`` (and ``" (2 diverged)"``) from :func:`summary`."""
    if s["mean"] is None:
        return f"diverged ({s['diverged']})"
    txt = f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f}"
    return txt + (f" ({s['diverged']} diverged)" if s["diverged"] else "")


def diff_text(c: Comparison, fam: Family) -> str:
    """``"+1.2 points (beyond seed noise: 95% CI [0.4, 2.0], p = 0.004, Holm p = 0.02)"``,
    ``"... (within seed noise: ...)"``; the verdict is the Holm-adjusted one in ``fam``."""
    if c.diff is None:
        return "not comparable (diverged)"
    d = f"{100 * c.diff:+.1f} points"
    if not c.tested:
        return f"{d} (no test: {c.why_untested()})"
    lo, hi = c.ci
    verdict = "beyond" if fam.significant(c) else "within"
    return (f"{d} ({verdict} seed noise: 95% CI [{100 * lo:.1f}, {100 * hi:.1f}], "
            f"p {_p(c.p)}, Holm p {_p(c.p_adjusted)})")


def conclusion(fam: Family, text: list[str]) -> list[str]:
    """The ``## Conclusion`` section: the sentence stating the family and how significance
    is decided, ``text``, then ``### Comparisons``: a table of every comparison (difference,
    95% CI, raw p, test, n, effect size with its CI; Holm-adjusted p; verdict)."""
    fam.close()
    k, untested = len(fam.tested), len(fam.items) - len(fam.tested)
    if k or not untested:
        head = (f"This report makes {k} comparison{'s' if k != 1 else ''}; significance uses "
                f"Holm–Bonferroni at α = {ALPHA:g}." + (
                    f" ({untested} more could not be tested: fewer than 2 seeds, or no "
                    "variance.)" if untested else ""))
    else:
        head = ("This report makes no testable comparison: " + (
            "the one below has" if untested == 1 else f"the {untested} below have") +
            " fewer than 2 seeds per setting (or no variance), so none is called beyond seed "
            "noise.")
    if not fam.items:
        return ["## Conclusion", head, *text]
    tests = {c.test for c in fam.tested}
    how = " ".join(filter(None, [
        "The family is every comparison in the table below, each of the mean test accuracy "
        "of two settings.",
        "Settings run on the same seeds are paired by seed: paired t-test on the per-seed "
        "differences, effect size Cohen's d_z = mean / sd of the differences."
        if "paired t" in tests else "",
        "Settings not run on the same seeds: Welch's t-test, effect size Hedges' g (pooled "
        "sd, small-sample corrected)." if "Welch t" in tests else "",
        "Brackets: 95% confidence intervals (for the effect sizes: the normal approximation, "
        "rough with few seeds). p: raw; Holm p: adjusted over the family; "
        f'"beyond seed noise": Holm p < {ALPHA:g}.' if k else ""]))
    rows = [[c.label, c.text(unit="pts"), "-" if c.p_adjusted is None
             else _p(c.p_adjusted).removeprefix("= "),
             "not tested" if not c.tested else "beyond" if fam.significant(c) else "within"]
            for c in fam.items]
    return ["## Conclusion", head, *text, "### Comparisons", how,
            table(["comparison", "difference [95% CI], p (test, n), effect size [95% CI]",
                   "Holm p", "seed noise"], rows)]


def labels(rows, axis: str) -> list:
    """The labels of ``axis`` over ``rows``, in grid order."""
    return list(dict.fromkeys(r["axes"][axis] for r in rows))


def pct(x: float) -> str:
    """``"12.3%"`` from a fraction."""
    return f"{100 * x:.1f}%"


def table(headers, rows) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(map(str, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def steps_to(row, threshold: float) -> int | None:
    """First recorded step at which the run's test accuracy reached ``threshold``."""
    c = row.get("curve") or {}
    for s, a in zip(c.get("step", []), c.get("test_accuracy", []), strict=False):
        if a is not None and a >= threshold:
            return int(s)
    return None


def steps_summary(rows, threshold: float) -> str:
    """Mean steps to ``threshold`` over the runs that reached it, and how many did not."""
    got = [steps_to(r, threshold) for r in rows]
    ok = [g for g in got if g is not None]
    if not ok:
        return "never"
    txt = f"{np.mean(ok):.0f}"
    return txt + (f" ({len(got) - len(ok)}/{len(got)} never)" if len(ok) < len(got) else "")


def best_curve_accuracy(rows) -> float:
    """The highest test accuracy recorded at any step of any of ``rows``."""
    vals = [a for r in rows for a in (r.get("curve") or {}).get("test_accuracy", [])
            if a is not None]
    return max(vals) if vals else 0.0


def curve_series(rows_by_label: dict, key: str = "test_accuracy") -> list:
    """``(label, runs)`` series for :func:`figures.compare_curves`, ``runs`` holding each
    run's ``(steps, values)`` of ``key`` (runs without a curve left out, as are labels
    without any)."""
    out = []
    for label, rows in rows_by_label.items():
        runs = [(r["curve"]["step"], r["curve"][key]) for r in rows
                if (r.get("curve") or {}).get("step")]
        if runs:
            out.append((label, runs))
    return out


def curves_figure(panels, out: Path, axis: str, title: str = "", what: str = "",
                  name: str = "curves.png") -> tuple[str, str]:
    """Draw :func:`figures.compare_curves` into ``out / name``; returns ``(name, caption)``,
    the caption saying what the lines, bands and panels are (``what`` names the panels)."""
    from .figures import band_note, compare_curves

    compare_curves(panels, out / name, axis, title=title)
    counts = [len(runs) for _, series in panels for _, runs in series]
    return name, (f"Test accuracy (%) over training steps, one line per {axis} setting"
                  f"{'; ' + what if what else ''}; {band_note(counts)}.")


def chance(rows) -> float:
    """1 / the number of classes of the runs' dataset."""
    return 1.0 / max(1, int(rows[0].get("num_classes") or 10)) if rows else 0.1


def acc_at(rows, fraction: float) -> dict:
    """:func:`summary` of the test accuracy recorded nearest ``fraction`` of each run."""
    vals = []
    for r in rows:
        c = r.get("curve") or {}
        if not c.get("step"):
            continue
        target = fraction * c["step"][-1]
        i = int(np.argmin([abs(s - target) for s in c["step"]]))
        vals.append({"test_accuracy": c["test_accuracy"][i], "seed": r.get("seed")})
    return summary(vals)


def generic(spec, rows, out: Path) -> tuple[list[str], list]:
    """Any study: accuracy per setting, steps to 90% of the best, and the curves comparing
    the first axis's settings (:func:`generic_figure`)."""
    axes = list(spec.axes)
    g = groups(rows, *axes)
    top = 0.9 * best_curve_accuracy(rows)
    stats = {k: summary(v) for k, v in g.items()}
    body = [table([*axes, "test accuracy (%)", "runs", f"steps to {100 * top:.1f}%"],
                  [[*k, fmt(stats[k]), len(v), steps_summary(v, top)] for k, v in g.items()])]
    ok = {k: s for k, s in stats.items() if s["mean"] is not None}
    text, fam = [], Family()
    if ok:
        best = max(ok, key=lambda k: ok[k]["mean"])
        worst = min(ok, key=lambda k: ok[k]["mean"])
        c = (fam.add(ok[best], ok[worst], f"{', '.join(best)} vs {', '.join(worst)}")
             if best != worst else None)
        text.append(f"- Best setting: {', '.join(best) or 'the base config'} at "
                    f"{fmt(ok[best])}%" + (f"; worst: {', '.join(worst)} at {fmt(ok[worst])}%; "
                                           f"difference {diff_text(c, fam)}." if c else "."))
    figs = [generic_figure(axes, rows, out, spec.title)] if rows else []
    return ["## Results", *body, *conclusion(fam, text or ["- No finished runs."])], figs


def generic_figure(axes: list, rows, out: Path, title: str = "") -> tuple[str, str]:
    """curves.png: the test-accuracy curves comparing the first axis's settings, one line
    each, in one panel (one per combination of the other axes' values, on one shared y
    axis). Returns ``(file name, caption)`` for the report."""
    first, others = (axes[0], axes[1:]) if axes else ("setting", [])
    g = groups(rows, *axes)
    firsts = list(dict.fromkeys(k[0] for k in g)) if axes else ["base config"]
    panels = [(", ".join(f"{a} = {v}" for a, v in zip(others, rest, strict=True)),
               curve_series({lab: g.get((lab, *rest), []) if axes else rows
                             for lab in firsts}))
              for rest in dict.fromkeys(k[1:] for k in g)]
    what = (f"one panel per {' × '.join(others)}, all panels on the same y axis" if others
            else "")
    return curves_figure(panels, out, first, title, what)


def reports() -> dict:
    """Name → analysis function ``(spec, rows, out) -> (markdown sections, figure files)``."""
    from .analyses import ANALYSES
    from .analyses_norms import NORM_ANALYSES

    return {"generic": generic, **ANALYSES, **NORM_ANALYSES}


def _flat(prefix: str, d: dict) -> dict:
    return {f"{prefix}.{k}": (json.dumps(v) if isinstance(v, (dict, list)) else v)
            for k, v in d.items()}


def _csv(spec, rows) -> str:
    buf = io.StringIO()
    cols = ["key", "seed", *spec.axes, "test_accuracy", "test_loss", "diverged", "steps",
            "trainable_params", "total_params", "seconds"]
    recs = []
    for r in rows:
        rec = {c: r.get(c) for c in cols}
        rec.update({a: r["axes"].get(a) for a in spec.axes})
        rec.update(_flat("config", r["config"]))
        rec.update(_flat("options", r["options"]))
        recs.append(rec)
    extra = list(dict.fromkeys(k for rec in recs for k in rec if k not in cols))
    w = csv.DictWriter(buf, fieldnames=cols + extra, lineterminator="\n")
    w.writeheader()
    w.writerows(recs)
    return buf.getvalue()


def write_outputs(spec, rows, out, command: str = "") -> list[str]:
    """Write results.csv, results.json, the figures and report.md into ``out``.

    An analysis names each figure by its file, or by ``(file, caption)``: the caption goes
    under the figure in report.md (what the lines, bands and panels show).
    """
    out = Path(out)
    atomic_write_text(out / "results.csv", _csv(spec, rows))
    atomic_write_text(out / "results.json", json.dumps(
        {"study": spec.to_dict(), "command": command, "runs": rows}, allow_nan=False) + "\n")
    try:
        sections, figs = reports()[spec.report](spec, rows, out)
    except (KeyError, IndexError, TypeError, ValueError) as e:  # a built-in's analysis on
        sections, figs = generic(spec, rows, out)                # another grid
        sections = [f"> The report {spec.report!r} needs the axes of the built-in study of that "
                    f"name (missing: {e}); this is the generic report.", "", *sections]
    secs = sum(r.get("seconds") or 0 for r in rows)
    axes_rows = [[a, ", ".join(v["label"] for v in vals)] for a, vals in spec.axes.items()]
    lines = [f"# {spec.title}", "", f"Produced by: `{command or 'gammabeta study run'}`", "",
             spec.description, "",
             "## Setup", "",
             f"Study `{spec.name}` ({spec.source}), scale **{spec.scale}**: {len(rows)} runs "
             f"= {len(rows) // max(1, len(spec.seeds))} settings × seeds {spec.seeds}; "
             f"{secs / 60:.1f} CPU-minutes of training in total.", "",
             "Base training options (unset options follow the model's recipe, see "
             "`gammabeta.experiment.recipe`):", "",
             "```json", json.dumps(spec.base, indent=1, ensure_ascii=False), "```", "",
             f"Task options: `{json.dumps(spec.options, ensure_ascii=False)}`", "",
             table(["axis", "values"], axes_rows) if axes_rows else "", ""]
    for s in sections:
        lines += [s, ""]
    figs = [(f, "") if isinstance(f, str) else tuple(f) for f in figs]  # (file, caption)
    lines += ["## Figures", ""]
    for f, caption in figs:
        lines += [f"![{f}]({f})", ""] + ([f"*{f}: {caption}*", ""] if caption else [])
    lines += [
        "## Files", "",
        "- `results.csv`, `results.json`: one row per run with its full config "
        "(`results.json` also holds the curves); `results.jsonl`: the resumable log.", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return ["results.csv", "results.json", "report.md", *(f for f, _ in figs)]
