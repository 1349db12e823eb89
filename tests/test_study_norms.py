"""The reports of the normalization studies, from synthetic rows whose answer is known: each
conclusion follows the numbers (paired tests over seeds, Holm-adjusted)."""

from __future__ import annotations

import numpy as np

from gammabeta.study.analyses_norms import gamma_beta_norms, precise_bn, small_batch, small_gamma

SEEDS = range(6)


def _row(axes: dict, seed: int, acc: float, **extra) -> dict:
    return {"axes": axes, "seed": seed, "test_accuracy": acc, "num_classes": 10,
            "curve": {"step": [0, 10], "test_accuracy": [0.1, acc]}, **extra}


def _noise(seed: int, k: int) -> float:
    return float(np.random.default_rng([seed, k]).normal(0, 0.002))


class _Spec:
    title = "t"


def _text(sections) -> str:
    return "\n".join(sections)


def test_small_gamma_names_the_recipe_that_helps(tmp_path):
    rows = []
    for net in ("MLP", "CNN"):
        for i, g in enumerate(("γ₀ = 1", "γ₀ = 0.5", "γ₀ = 0.1")):
            for j, f in enumerate(("lr on γ ×1", "lr on γ ×0.01")):
                gain = 0.05 if (net == "MLP" and g == "γ₀ = 0.1" and j == 1) else 0.0
                rows += [_row({"net": net, "gamma": g, "gamma_lr": f}, s,
                              0.8 + gain + _noise(s, 10 * i + j)) for s in SEEDS]
    sections, figs = small_gamma(_Spec, rows, tmp_path)
    text = _text(sections)
    assert "This report makes 10 comparisons" in text
    mlp, cnn = text.split("**CNN.**")
    assert "γ₀ = 0.1, lr on γ ×0.01" in mlp and "it helps here" in mlp
    assert "no difference beyond seed noise on this network" in cnn
    assert "paired t, n = 6" in text
    assert (tmp_path / figs[0][0]).read_bytes()[:4] == b"\x89PNG"


def test_small_batch_finds_batchnorm_falling_behind_at_small_batches(tmp_path):
    rows = []
    for k, norm in enumerate(("BatchNorm", "GroupNorm")):
        for b in (2, 8, 128):
            acc = 0.9 - (0.1 if norm == "BatchNorm" and b == 2 else 0.0)
            rows += [_row({"norm": norm, "batch": f"batch {b}"}, s, acc + _noise(s, k * 7 + b))
                     for s in SEEDS]
    sections, _ = small_batch(_Spec, rows, tmp_path)
    text = _text(sections)
    assert "This report makes 4 comparisons" in text  # 3 batch sizes + BN's 2 vs 128
    assert "GroupNorm vs BatchNorm: better beyond seed noise at 2; worse at no batch size" in text
    assert "BatchNorm at batch 2 vs batch 128: -10.1 points (beyond seed noise" in text


def test_precise_bn_compares_within_each_run(tmp_path):
    rows = []
    for m in ("momentum 0.01", "momentum 0.1"):
        for s in SEEDS:
            ema = 0.8 + _noise(s, 1)
            pre = ema + (0.03 if m == "momentum 0.01" else 0.0) + _noise(s, 2) / 10
            rows.append(_row({"momentum": m, "batch": "batch 128"}, s, ema,
                             precise_test_accuracy=pre, bn_gap={"mean": 0.2, "var": 0.1},
                             precise_bn_gap={"mean": 0.01, "var": 0.01}))
    sections, _ = precise_bn(_Spec, rows, tmp_path)
    text = _text(sections)
    assert "PreciseBN is better beyond seed noise in 1 of 2 settings (momentum 0.01, batch 128)" \
        in text
    assert "paired t" in text


def test_gamma_beta_norms_checks_the_default_per_norm(tmp_path):
    rows = []
    for norm in ("LayerNorm", "GroupNorm"):
        for gi, g in enumerate(("ones", "zeros")):
            acc = 0.1 if g == "zeros" else 0.85
            rows += [_row({"net": "MLP", "norm": norm, "gamma": g, "beta": "zeros"}, s,
                          acc + abs(_noise(s, gi)) * (g != "zeros")) for s in SEEDS]
    sections, _ = gamma_beta_norms(_Spec, rows, tmp_path)
    text = _text(sections)
    assert text.count("the usual advice holds") == 2
    assert "γ = 0, β = 0: 10.0 ± 0.0% — chance level" in text
