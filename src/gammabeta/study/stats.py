"""Comparing two settings of a study over seeds: t-tests, confidence intervals, effect sizes
and Holm–Bonferroni adjusted p-values for the family of comparisons one report makes.

:func:`compare_runs` compares the mean of a metric (test accuracy by default) between two
settings:

* **paired t-test** (:func:`scipy.stats.ttest_rel`) when both settings ran on the same seeds:
  the runs are paired by seed and the test is on the per-seed differences
  :math:`d_i = a_i - b_i`. The 95% confidence interval of the difference is the t-interval
  :math:`\\bar d \\pm t_{0.975,\\,n-1}\\, s_d/\\sqrt n`. The effect size is Cohen's
  :math:`d_z = \\bar d / s_d` (Cohen 1988, ch. 2; Lakens 2013), with the normal-approximation
  interval :math:`d_z \\pm 1.96\\,\\sqrt{1/n + d_z^2/(2n)}`.
* **Welch's t-test** (:func:`scipy.stats.ttest_ind` with ``equal_var=False``) otherwise. The
  confidence interval is :math:`\\bar a - \\bar b \\pm t_{0.975,\\,\\nu}\\,
  \\sqrt{s_a^2/n_a + s_b^2/n_b}` with the Welch–Satterthwaite degrees of freedom
  :math:`\\nu = (s_a^2/n_a + s_b^2/n_b)^2 / [(s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1)]`
  (Welch 1947). The effect size is Hedges' :math:`g = J\\,(\\bar a - \\bar b)/s_p` with the
  pooled standard deviation :math:`s_p = \\sqrt{((n_a-1)s_a^2 + (n_b-1)s_b^2)/(n_a+n_b-2)}`
  and the small-sample correction :math:`J = 1 - 3/(4(n_a+n_b) - 9)`; its 95% interval is the
  normal approximation :math:`g \\pm 1.96\\,\\sqrt{(n_a+n_b)/(n_a n_b) + g^2/(2(n_a+n_b))}`
  (Hedges & Olkin 1985, ch. 5).

Both effect-size intervals are large-sample approximations: with 2–5 seeds read them as
rough. Standard deviations use ``ddof=1``.

Degenerate cases give no NaN: with fewer than 2 runs (2 pairs) there is no test (``p`` is
``None``, ``test`` is ``"none"``); when every per-seed difference (paired) or every value of
both settings (Welch) is the same (up to 1e-9 of the largest value: rounding), the variance is
zero: ``p = 1`` if the difference is 0 (``note = "identical"``); otherwise there is no test
(``p`` is ``None``, ``note = "constant"``): the t statistic would be infinite, yet with few
seeds and accuracies on a finite test set (multiples of 1/n_test) equal differences happen by
chance, so a zero sample variance is no evidence of a zero true variance. The interval is the
difference itself and the effect size is undefined (``None``).

:func:`holm` adjusts the p-values of a family of comparisons (Holm 1979); :class:`Family`
collects the comparisons one report makes and says which are significant at α = 0.05 after
the adjustment.

References: J. Cohen, *Statistical Power Analysis for the Behavioral Sciences*, 2nd ed., 1988.
L. V. Hedges and I. Olkin, *Statistical Methods for Meta-Analysis*, 1985. S. Holm, "A simple
sequentially rejective multiple test procedure", *Scand. J. Statist.* 6, 1979. D. Lakens,
"Calculating and reporting effect sizes", *Front. Psychol.* 4:863, 2013. B. L. Welch, "The
generalization of 'Student's' problem when several different population variances are
involved", *Biometrika* 34, 1947.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["Comparison", "Family", "compare_runs", "holm", "fmt_p", "ALPHA", "CONFIDENCE"]

ALPHA = 0.05
CONFIDENCE = 0.95
_Z = 1.959963984540054  # the 97.5% quantile of the standard normal


@dataclass
class Comparison:
    """The difference of means ``mean(a) − mean(b)`` of one metric between two settings.

    Attributes
    ----------
    diff : float or None
        ``mean(a) − mean(b)`` (``None`` when a side has no value).
    ci : (float, float) or None
        95% confidence interval of ``diff`` (``None`` without a test).
    p : float or None
        Two-sided p-value of the test (``None`` without a test).
    test : str
        ``"paired t"``, ``"Welch t"`` or ``"none"``.
    n : int
        Pairs (paired) or runs of both settings together (Welch).
    n_a, n_b : int
        Runs of each setting that entered the comparison.
    effect : float or None
        Cohen's d_z (paired) or Hedges' g (Welch); ``None`` when undefined.
    effect_ci : (float, float) or None
        Its approximate 95% interval (normal approximation, see the module docstring).
    effect_name : str
        ``"d_z"`` or ``"g"``.
    note : str
        ``""``, ``"identical"`` (zero variance, zero difference), ``"constant"`` (zero
        variance, nonzero difference), ``"n < 2"`` or ``"no values"``.
    mean_a, mean_b : float or None
        The two means.
    label : str
        What is compared (set by :meth:`Family.add`).
    p_adjusted : float or None
        The Holm-adjusted p-value within its :class:`Family` (set by the family).
    """

    diff: float | None
    ci: tuple[float, float] | None
    p: float | None
    test: str
    n: int
    n_a: int
    n_b: int
    effect: float | None
    effect_ci: tuple[float, float] | None
    effect_name: str
    note: str = ""
    mean_a: float | None = None
    mean_b: float | None = None
    label: str = ""
    p_adjusted: float | None = None

    @property
    def tested(self) -> bool:
        """Whether a test was possible (a p-value exists)."""
        return self.p is not None

    def n_text(self) -> str:
        """``"n = 5"`` (pairs) or ``"n = 5 + 4"`` (Welch)."""
        return f"n = {self.n}" if self.test == "paired t" else f"n = {self.n_a} + {self.n_b}"

    def text(self, scale: float = 100.0, unit: str = "pts", digits: int = 1,
             p_adjusted: float | None = None) -> str:
        """One line for tables, e.g.
        ``"+1.2 pts [0.4, 2.0], p = 0.004 (paired t, n = 5), d_z = 1.9 [0.6, 3.1]"``.

        ``scale`` multiplies the difference and its interval (100: fractions as percentage
        points); ``p_adjusted`` (e.g. Holm's) is shown after the raw p-value when given.
        """
        if self.diff is None:
            return "not comparable (no values)"
        d = f"{scale * self.diff:+.{digits}f}{' ' + unit if unit else ''}"
        if not self.tested:
            return f"{d}, no test ({self.n_text()}: {self.why_untested()})"
        lo, hi = self.ci
        txt = f"{d} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}], p {fmt_p(self.p)}"
        if p_adjusted is not None:
            txt += f", Holm p {fmt_p(p_adjusted)}"
        extra = {"identical": "; identical on every seed" if self.test == "paired t"
                 else "; all values identical",
                 }.get(self.note, "")
        txt += f" ({self.test}, {self.n_text()}{extra})"
        if self.effect is not None:
            elo, ehi = self.effect_ci
            txt += f", {self.effect_name} = {self.effect:.1f} [{elo:.1f}, {ehi:.1f}]"
        return txt

    def why_untested(self) -> str:
        """Why there is no p-value: too few runs, or no variance to test against."""
        if self.note == "constant":
            return ("the same difference on every seed: no variance to test against"
                    if self.test == "paired t" else "no spread within either setting")
        return "fewer than 2 runs"


def fmt_p(p: float) -> str:
    """``"= 0.004"``, ``"= 0.16"``, ``"< 0.001"`` or ``"= 1"`` (with its relation sign)."""
    if p >= 1.0:
        return "= 1"
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}" if p < 0.1 else f"= {p:.2f}"


def _side(x, key: str, chance: float | None) -> tuple[list[float], list | None]:
    """(values, seeds or None) from rows, a :func:`.report.summary` dict or numbers.

    Rows whose ``key`` is missing or not finite (diverged runs) count as ``chance`` when it
    is given and are left out otherwise.
    """
    if isinstance(x, dict):  # a summary: {"values": [...], "seeds": [...]}
        vals = [float(v) for v in x.get("values", [])]
        seeds = x.get("seeds")
        seeds = list(seeds) if seeds is not None and len(seeds) == len(vals) else None
        keep = [i for i, v in enumerate(vals) if math.isfinite(v)]
        return [vals[i] for i in keep], (None if seeds is None else [seeds[i] for i in keep])
    items = list(x)
    if items and all(isinstance(r, dict) for r in items):
        vals, seeds = [], []
        for r in items:
            v = r.get(key)
            if v is None or not math.isfinite(float(v)):
                if chance is None:
                    continue
                v = chance
            vals.append(float(v))
            seeds.append(r.get("seed"))
        return vals, seeds
    vals = [float(v) for v in items]
    return [v for v in vals if math.isfinite(v)], None


def _pairable(sa, sb) -> bool:
    return (sa is not None and sb is not None and None not in sa and None not in sb
            and len(set(sa)) == len(sa) and len(set(sb)) == len(sb) and set(sa) == set(sb))


def compare_runs(a, b, paired: bool | None = None, key: str = "test_accuracy",
                 chance: float | None = None) -> Comparison:
    """Compare the mean of ``key`` between two settings: ``mean(a) − mean(b)``.

    Parameters
    ----------
    a, b
        Each: the runs' rows (dicts with ``key`` and ``"seed"``), a summary dict from
        :func:`gammabeta.study.report.summary` (``"values"`` and ``"seeds"``), or plain
        numbers (no seeds).
    paired
        ``None`` (default): paired when both sides carry seeds and ran on the same set of
        seeds (each once), Welch otherwise. ``True``: pair by seed, or by position for plain
        numbers (then both sides need the same length and seed set). ``False``: Welch.
    key
        The metric of each row.
    chance
        Value counted for a row whose metric is missing (a diverged run); such rows are left
        out when ``None``.

    Returns
    -------
    Comparison
        Difference, 95% CI, p-value, test, n and effect size with its 95% CI; see the module
        docstring for the formulas and the zero-variance and n < 2 cases.
    """
    from scipy import stats as st

    va, sa = _side(a, key, chance)
    vb, sb = _side(b, key, chance)
    if paired is None:
        paired = _pairable(sa, sb) and len(va) >= 2
    mean_a = float(np.mean(va)) if va else None
    mean_b = float(np.mean(vb)) if vb else None
    if mean_a is None or mean_b is None:
        return Comparison(None, None, None, "none", len(va) + len(vb), len(va), len(vb), None,
                          None, "d_z" if paired else "g", "no values", mean_a, mean_b)
    if paired:
        if sa is not None and sb is not None:
            if not _pairable(sa, sb):
                raise ValueError(f"paired comparison needs the same seeds on both sides, got "
                                 f"{sorted(map(str, sa))} and {sorted(map(str, sb))}")
            order_b = {s: i for i, s in enumerate(sb)}
            pa = np.asarray(va)
            pb = np.asarray([vb[order_b[s]] for s in sa])
        elif len(va) == len(vb):
            pa, pb = np.asarray(va), np.asarray(vb)
        else:
            raise ValueError(f"paired comparison needs as many values on both sides, got "
                             f"{len(va)} and {len(vb)}")
        return _paired(pa, pb, mean_a, mean_b, st)
    return _welch(np.asarray(va), np.asarray(vb), mean_a, mean_b, st)


def _tol(a: np.ndarray, b: np.ndarray) -> float:
    """Spreads below this are rounding, not variance (1e-9 of the largest |value|)."""
    return 1e-9 * max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-300)


def _paired(a: np.ndarray, b: np.ndarray, mean_a: float, mean_b: float, st) -> Comparison:
    d = a - b
    n = int(d.size)
    mean = mean_a - mean_b  # = mean(d), written as the difference of the reported means
    base = dict(test="paired t", n=n, n_a=n, n_b=n, effect_name="d_z", mean_a=mean_a,
                mean_b=mean_b)
    if n < 2:
        return Comparison(mean, None, None, **{**base, "test": "none"}, effect=None,
                          effect_ci=None, note="n < 2")
    tol = _tol(a, b)
    if np.ptp(d) <= tol:  # zero variance: the difference is exact
        zero = abs(mean) <= tol
        return Comparison(mean, (mean, mean), 1.0 if zero else None, **base, effect=None,
                          effect_ci=None, note="identical" if zero else "constant")
    sd = float(d.std(ddof=1))
    half = float(st.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        p = float(st.ttest_rel(a, b).pvalue)
    dz = mean / sd
    se = math.sqrt(1 / n + dz ** 2 / (2 * n))
    return Comparison(mean, (mean - half, mean + half), p, **base, effect=dz,
                      effect_ci=(dz - _Z * se, dz + _Z * se))


def _welch(a: np.ndarray, b: np.ndarray, mean_a: float, mean_b: float, st) -> Comparison:
    na, nb = int(a.size), int(b.size)
    diff = mean_a - mean_b
    base = dict(test="Welch t", n=na + nb, n_a=na, n_b=nb, effect_name="g", mean_a=mean_a,
                mean_b=mean_b)
    if min(na, nb) < 2:
        return Comparison(diff, None, None, **{**base, "test": "none"}, effect=None,
                          effect_ci=None, note="n < 2")
    var_a, var_b = float(a.var(ddof=1)), float(b.var(ddof=1))
    tol = _tol(a, b)
    if np.ptp(a) <= tol and np.ptp(b) <= tol:  # zero variance on both sides
        zero = abs(diff) <= tol
        return Comparison(diff, (diff, diff), 1.0 if zero else None, **base, effect=None,
                          effect_ci=None, note="identical" if zero else "constant")
    qa, qb = var_a / na, var_b / nb
    se = math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa ** 2 / (na - 1) + qb ** 2 / (nb - 1))
    half = float(st.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    with warnings.catch_warnings():  # one constant side: scipy warns about its ~1e-35 var
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        p = float(st.ttest_ind(a, b, equal_var=False).pvalue)
    sp = math.sqrt(((na - 1) * var_a + (nb - 1) * var_b) / (na + nb - 2))
    g = (1 - 3 / (4 * (na + nb) - 9)) * diff / sp
    se_g = math.sqrt((na + nb) / (na * nb) + g ** 2 / (2 * (na + nb)))
    return Comparison(diff, (diff - half, diff + half), p, **base, effect=g,
                      effect_ci=(g - _Z * se_g, g + _Z * se_g))


def holm(pvalues: Iterable[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (Holm 1979), in the input order.

    With the m p-values sorted, :math:`p_{(1)} \\le \\dots \\le p_{(m)}`, the adjusted value
    of the i-th is :math:`\\max_{j \\le i} \\min(1, (m - j + 1)\\, p_{(j)})`; rejecting where
    it is below α controls the family-wise error rate at α. ``None`` entries (comparisons
    without a test) pass through and do not count in m.

    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]
    """
    ps = list(pvalues)
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    m, out, running = len(idx), list(ps), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * float(ps[i])))
        out[i] = running
    return out


class Family:
    """The comparisons one report makes, adjusted together with :func:`holm`.

    :meth:`add` every comparison first; the first question about significance (or the
    adjusted p-values) closes the family, and adding to a closed family is an error, so no
    verdict is ever computed on part of the family.
    """

    def __init__(self, alpha: float = ALPHA):
        self.alpha = alpha
        self.items: list[Comparison] = []
        self.closed = False

    def add(self, a, b, label: str = "", **kw) -> Comparison:
        """:func:`compare_runs` ``(a, b, **kw)``, labelled and kept in the family."""
        if self.closed:
            raise RuntimeError("this family of comparisons is closed: add every comparison "
                               "before asking which are significant")
        c = compare_runs(a, b, **kw)
        c.label = label
        self.items.append(c)
        return c

    def close(self) -> Family:
        """Adjust the p-values (done once; later calls do nothing)."""
        if not self.closed:
            for c, q in zip(self.items, holm([c.p for c in self.items]), strict=True):
                c.p_adjusted = q
            self.closed = True
        return self

    @property
    def tested(self) -> list[Comparison]:
        """The comparisons with a test: the family Holm's adjustment runs over."""
        return [c for c in self.items if c.tested]

    def significant(self, c: Comparison) -> bool:
        """Whether ``c``'s Holm-adjusted p-value is below α."""
        self.close()
        return c.p_adjusted is not None and c.p_adjusted < self.alpha
