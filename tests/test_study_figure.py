"""A study's curves figure compares the settings of its first axis on shared axes: one panel
(one per value of the other axes, all on one y axis), one line per setting with a ±1 std
band over seeds, and report.md says what the lines and bands are."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gammabeta.study import figures, parse_spec, run_study

BASE = """
name = "{name}"
title = "γ on digits"
seeds = [0, 1]
[base]
data = "digits"
model = "mlp"
hidden = "16,16"
epochs = 2
[options]
max_train = 300
max_test = 100
eval_every = 2
[axes]
gamma_init = ["ones", 0.5, "zeros"]
"""
TWO = BASE.replace('gamma_init = ["ones", 0.5, "zeros"]',
                   'gamma_init = ["ones", "zeros"]\n'
                   'width = [{label = "narrow", hidden = "8"}, {label = "wide", hidden = "32"}]')


def _run(tmp_path, monkeypatch, text: str, name: str):
    """Run the study in-process; return (out folder, the Figure drawn into curves.png)."""
    drawn = {}
    save = figures.save_figure

    def keep(fig, path):
        drawn[path.name] = fig
        save(fig, path)

    monkeypatch.setattr(figures, "save_figure", keep)
    out = tmp_path / name
    run_study(parse_spec(text.replace("{name}", name), f"{name}.toml"), out, workers=1,
              progress=False, command=f"gammabeta study run {name}.toml")
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return out, drawn["curves.png"]


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_one_axis_study_compares_every_setting_in_one_panel(tmp_path, monkeypatch):
    out, fig = _run(tmp_path, monkeypatch, BASE, "one-axis")
    (ax,) = _panels(fig)  # exactly one data panel
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["ones", "0.5", "zeros"]
    assert len(ax.collections) == 3  # a band per setting (2 seeds each)
    assert len({ln.get_color() for ln in lines}) == 3
    # the line is the mean over the seeds, the band ± 1 sample std
    runs = json.loads((out / "results.json").read_text())["runs"]
    ones = [r["curve"] for r in runs if r["axes"]["gamma_init"] == "ones"]
    acc = 100 * np.array([c["test_accuracy"] for c in ones], dtype=float)
    assert list(lines[0].get_xdata()) == ones[0]["step"]
    assert lines[0].get_ydata() == pytest.approx(acc.mean(axis=0))
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx((acc.mean(axis=0) + acc.std(axis=0, ddof=1)).max())
    assert band.min() == pytest.approx((acc.mean(axis=0) - acc.std(axis=0, ddof=1)).min())
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == "gamma_init"
    assert "band: ± 1 standard deviation" in fig.texts[0].get_text()  # the suptitle
    report = (out / "report.md").read_text()
    caption = next(line for line in report.splitlines() if line.startswith("*curves.png:"))
    assert "one line per gamma_init setting" in caption
    assert "mean over 2 seeds" in caption and "band: ± 1 standard deviation" in caption
    assert report.index("![curves.png](curves.png)") < report.index(caption)


def test_two_axis_study_has_a_panel_per_other_value_on_a_shared_y_axis(tmp_path,
                                                                        monkeypatch):
    out, fig = _run(tmp_path, monkeypatch, TWO, "two-axes")
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["width = narrow", "width = wide"]
    a, b = panels
    assert a.get_shared_y_axes().joined(a, b) and a.get_ylim() == b.get_ylim()
    for ax in panels:
        assert [ln.get_label() for ln in ax.get_lines()] == ["ones", "zeros"]
    colors = [[ln.get_color() for ln in ax.get_lines()] for ax in panels]
    assert colors[0] == colors[1]  # a setting keeps its colour in every panel
    assert sum(ax.get_legend() is not None for ax in panels) == 1  # one legend
    caption = next(line for line in (out / "report.md").read_text().splitlines()
                   if line.startswith("*curves.png:"))
    assert "one panel per width" in caption and "same y axis" in caption
    assert "band: ± 1 standard deviation" in caption


def test_mean_and_band_count_seeds_where_they_have_values(tmp_path):
    runs = [([0, 10, 20], [0.1, 0.5, 0.9]), ([0, 10, 20], [0.3, None, 0.7]), ([0, 10], [0.2, 0.4])]
    x, mean, std = figures._mean_std(runs, 100.0)
    assert list(x) == [0, 10, 20]
    assert mean == pytest.approx([20.0, 45.0, 80.0])
    assert std == pytest.approx([10.0, np.std([50, 40], ddof=1), np.std([90, 70], ddof=1)])
    fig = figures.compare_curves([("", [("a", runs), ("b", runs[:1])])], tmp_path / "c.png",
                                 "setting")
    (ax,) = _panels(fig)
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 1  # one seed: no band
    assert figures.band_note([1, 1]) == "lines: one seed per setting (no band)"
    assert figures.band_note([2, 3]).startswith("lines: mean over 2–3 seeds; band: ± 1")
