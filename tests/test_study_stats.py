"""The statistics of study reports: paired and Welch t-tests with their confidence intervals
and effect sizes, Holm's adjustment, pairing by seed, the degenerate cases, and the report
text that states the family of comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from gammabeta.study import parse_spec
from gammabeta.study.report import write_outputs
from gammabeta.study.stats import Family, compare_runs, fmt_p, holm

A = [0.80, 0.81, 0.79, 0.82, 0.80]
B = [0.79, 0.79, 0.78, 0.80, 0.80]


def _rows(values, seeds=None, key="test_accuracy"):
    seeds = range(len(values)) if seeds is None else seeds
    return [{"seed": s, key: v} for s, v in zip(seeds, values, strict=True)]


def test_paired_t_matches_scipy_and_hand_computed_interval():
    c = compare_runs(_rows(A), _rows(B))
    d = np.subtract(A, B)  # [0.01, 0.02, 0.01, 0.02, 0.0]
    n, mean, sd = 5, 0.012, math.sqrt(0.00007)  # sd of d by hand: Σ(d − 0.012)² / 4
    assert c.test == "paired t" and c.n == 5
    assert c.diff == pytest.approx(mean) and np.std(d, ddof=1) == pytest.approx(sd)
    assert c.p == pytest.approx(sps.ttest_rel(A, B).pvalue)
    t = mean / (sd / math.sqrt(n))
    assert c.p == pytest.approx(2 * sps.t.sf(t, n - 1))
    half = 2.7764451051977987 * sd / math.sqrt(n)  # t_{0.975, 4}
    assert c.ci == pytest.approx((mean - half, mean + half))
    dz = mean / sd
    se = math.sqrt(1 / n + dz ** 2 / (2 * n))
    assert c.effect_name == "d_z" and c.effect == pytest.approx(dz)
    assert c.effect_ci == pytest.approx((dz - 1.959964 * se, dz + 1.959964 * se), rel=1e-6)


def test_welch_t_matches_scipy_with_satterthwaite_interval_and_hedges_g():
    a, b = [0.80, 0.81, 0.79, 0.82, 0.80], [0.70, 0.76, 0.74, 0.78]
    c = compare_runs(a, b)  # plain numbers: no seeds, so Welch
    assert c.test == "Welch t" and (c.n_a, c.n_b, c.n) == (5, 4, 9)
    res = sps.ttest_ind(a, b, equal_var=False)
    assert c.p == pytest.approx(res.pvalue)
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    se = math.sqrt(va / 5 + vb / 4)
    df = (va / 5 + vb / 4) ** 2 / ((va / 5) ** 2 / 4 + (vb / 4) ** 2 / 3)
    diff = np.mean(a) - np.mean(b)
    q = sps.t.ppf(0.975, df)
    assert c.ci == pytest.approx((diff - q * se, diff + q * se))
    if hasattr(res, "confidence_interval"):  # scipy ≥ 1.11 gives Welch's interval too
        ci = res.confidence_interval(0.95)
        assert c.ci == pytest.approx((ci.low, ci.high))
    sp = math.sqrt((4 * va + 3 * vb) / 7)
    g = (1 - 3 / (4 * 9 - 9)) * diff / sp  # J = 1 − 3 / (4 (n_a + n_b) − 9)
    se_g = math.sqrt(9 / 20 + g ** 2 / 18)
    assert c.effect_name == "g" and c.effect == pytest.approx(g)
    assert c.effect_ci == pytest.approx((g - 1.959964 * se_g, g + 1.959964 * se_g), rel=1e-6)


def test_holm_on_a_known_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.01]) == pytest.approx([0.5, None, 0.02])  # None: not counted
    assert holm([0.04, 0.03]) == pytest.approx([0.06, 0.06])  # kept monotone
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.6, 0.7, 0.8]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([]) == []


def test_pairing_is_detected_by_seeds():
    # same seeds, other order: paired, each seed with its own partner
    c = compare_runs(_rows(A, [0, 1, 2, 3, 4]), _rows(B[::-1], [4, 3, 2, 1, 0]))
    assert c.test == "paired t" and c.p == pytest.approx(sps.ttest_rel(A, B).pvalue)
    # other seeds, or a seed missing (a diverged run left out): Welch
    assert compare_runs(_rows(A), _rows(B, [5, 6, 7, 8, 9])).test == "Welch t"
    b = _rows(B)
    b[2]["test_accuracy"] = None
    assert compare_runs(_rows(A), b).test == "Welch t"
    assert compare_runs(_rows(A), b, chance=0.1).test == "paired t"  # diverged = chance
    # forced either way
    assert compare_runs(_rows(A), _rows(B), paired=False).test == "Welch t"
    assert compare_runs(A, B, paired=True).p == pytest.approx(sps.ttest_rel(A, B).pvalue)
    with pytest.raises(ValueError, match="same seeds"):
        compare_runs(_rows(A), _rows(B, [5, 6, 7, 8, 9]), paired=True)
    with pytest.raises(ValueError, match="as many"):
        compare_runs(A, B[:3], paired=True)
    # a summary dict (values and seeds) pairs like its rows
    s = {"values": A, "seeds": list(range(5))}
    assert compare_runs(s, {"values": B, "seeds": list(range(5))}).test == "paired t"


def test_fewer_than_two_runs_give_no_test_and_no_nan():
    for c in (compare_runs(_rows([0.8]), _rows([0.7])), compare_runs([0.8], [0.7, 0.75])):
        assert c.test == "none" and c.p is None and c.ci is None and c.effect is None
        assert c.note == "n < 2" and c.diff == pytest.approx(0.8 - (0.7 if c.n_b == 1 else 0.725))
        assert "no test" in c.text() and "nan" not in c.text().lower()
    empty = compare_runs(_rows([None, None]), _rows([0.5, 0.6]))
    assert empty.diff is None and empty.p is None and "not comparable" in empty.text()


def test_zero_variance_identical_and_constant_differences():
    same = compare_runs(_rows([0.089] * 5), _rows([0.089] * 5))
    assert same.test == "paired t" and same.p == 1.0 and same.note == "identical"
    assert same.ci == (0.0, 0.0) and same.effect is None and "identical" in same.text()
    shift = compare_runs(_rows([0.5, 0.6, 0.7]), _rows([0.4, 0.5, 0.6]))  # +0.1 on every seed
    # equal differences with few seeds are no evidence of zero variance: no test, not p = 0
    assert shift.note == "constant" and shift.p is None and shift.effect is None
    assert shift.ci == pytest.approx((0.1, 0.1)) and "same difference" in shift.text()
    assert "no test" in shift.text()
    welch_same = compare_runs([0.3, 0.3], [0.3, 0.3, 0.3])
    assert welch_same.test == "Welch t" and welch_same.p == 1.0 and welch_same.note == "identical"
    welch_const = compare_runs([0.3, 0.3], [0.5, 0.5, 0.5])
    assert welch_const.p is None and welch_const.note == "constant"
    b = [0.7, 0.72, 0.71, 0.73]
    one_flat = compare_runs([0.089] * 4, b)  # one side constant only: Welch's df = n_b − 1
    t = (0.089 - np.mean(b)) / math.sqrt(np.var(b, ddof=1) / 4)
    assert one_flat.p == pytest.approx(2 * sps.t.sf(abs(t), 3), rel=1e-6)
    for c in (same, shift, welch_same, welch_const, one_flat):
        assert not any(isinstance(x, float) and math.isnan(x)
                       for x in (c.diff, c.p, c.effect, *(c.ci or ()), *(c.effect_ci or ())))


def test_one_line_text():
    c = compare_runs(_rows(A), _rows(B))
    assert c.text() == "+1.2 pts [0.2, 2.2], p = 0.033 (paired t, n = 5), d_z = 1.4 [0.2, 2.7]"
    assert "Holm p = 0.50 (paired t" in c.text(p_adjusted=0.5)
    w = compare_runs(A, [0.70, 0.76, 0.74, 0.78])
    assert "(Welch t, n = 5 + 4), g = " in w.text()
    assert [fmt_p(p) for p in (0.0004, 0.004, 0.049, 0.16, 1.0)] == [
        "< 0.001", "= 0.004", "= 0.049", "= 0.16", "= 1"]


def test_family_adjusts_together_and_closes():
    fam = Family()
    c1 = fam.add(_rows(A), _rows(B), "a vs b")
    c2 = fam.add([0.5, 0.6, 0.55], [0.5, 0.61, 0.56], "flat")
    untested = fam.add([0.5], [0.6], "one seed")
    assert [c.p_adjusted for c in fam.items] == [None, None, None]  # not yet closed
    assert fam.significant(c1) is False  # raw p = 0.033, Holm: 2 × 0.033 > 0.05
    assert c1.p_adjusted == pytest.approx(holm([c1.p, c2.p])[0]) and untested.p_adjusted is None
    assert len(fam.tested) == 2
    with pytest.raises(RuntimeError, match="closed"):
        fam.add(A, B)


SYNTH = """
name = "synth"
seeds = [0, 1, 2, 3]
[base]
model = "mlp"
[axes]
gamma_init = ["ones", 0.5, "zeros"]
"""


def _synthetic_rows(spec):
    acc = {"ones": [0.80, 0.81, 0.79, 0.82], "0.5": [0.80, 0.80, 0.80, 0.81],
           "zeros": [0.10, 0.10, 0.10, 0.10]}
    rows = []
    for seed in spec.seeds:
        for lab in acc:
            rows.append({"key": f"{lab}-{seed}", "seed": seed, "axes": {"gamma_init": lab},
                         "test_accuracy": acc[lab][seed], "test_loss": 1.0, "config": {},
                         "options": {}, "test_size": 1000, "seconds": 1.0})
    return rows


def test_a_report_states_the_family_and_the_p_values(tmp_path):
    spec = parse_spec(SYNTH, "synth.toml")
    write_outputs(spec, _synthetic_rows(spec), tmp_path, command="gammabeta study run synth")
    report = (tmp_path / "report.md").read_text()
    assert ("This report makes 1 comparison; significance uses Holm–Bonferroni at α = 0.05."
            in report)
    assert "### Comparisons" in report and "paired t-test" in report
    line = next(x for x in report.splitlines() if x.startswith("- Best setting"))
    assert "(beyond seed noise: 95% CI [" in line and "p < 0.001, Holm p < 0.001" in line
    row = next(x for x in report.splitlines() if x.startswith("| ones vs zeros"))
    assert "(paired t, n = 4)" in row and "d_z = " in row and row.endswith("| beyond |")
    assert "standard error" not in report and "nan" not in report.lower()
