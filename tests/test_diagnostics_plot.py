"""`gammabeta train --diagnostics` draws DIR/diagnostics.png, and plot_diagnostics draws any
saved diagnostics.json: one row per layer (activation percentiles | gradient norms)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gammabeta.cli import main
from gammabeta.plots import draw_diagnostics, plot_diagnostics

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "x"
    assert main(["train", "--data", "digits", "--epochs", "1", "--diagnostics",
                 "--diagnostics-every", "2", "--out", str(out), "--quiet"]) == 0
    return out


def _rows(fig):
    """(activation axes, gradient axes) of a diagnostics figure, in row order."""
    vis = [ax for ax in fig.axes if ax.get_visible()]
    acts = [ax for ax in vis if ax.get_title(loc="left").endswith("output percentiles")]
    grads = [ax for ax in vis if ax.get_title(loc="left").endswith("gradient norms")]
    return acts, grads


def test_train_diagnostics_writes_a_png_next_to_the_json(run_dir, capsys):
    import matplotlib.image

    data = (run_dir / "diagnostics.png").read_bytes()
    assert data[:8] == PNG
    assert "could not draw" not in capsys.readouterr().err
    img = matplotlib.image.imread(run_dir / "diagnostics.png")
    diag = json.loads((run_dir / "diagnostics.json").read_text())
    n = len(diag["layers"])
    assert n >= 5 and len(diag["steps"]) >= 3
    fig = plot_diagnostics(diag, run_dir / "again.png")  # the same figure from the JSON
    w, h = fig.get_size_inches() * 120  # save_figure's dpi
    assert img.ndim == 3 and img.shape[0] > img.shape[1]  # one row per layer: tall
    assert abs(img.shape[0] - h) < 0.1 * h and abs(img.shape[1] - w) < 0.15 * w
    acts, grads = _rows(fig)
    assert len(acts) == len(grads) == n


def test_plot_from_saved_json_has_a_row_per_layer_with_percentiles_and_grads(run_dir,
                                                                             tmp_path):
    diag = json.loads((run_dir / "diagnostics.json").read_text())
    fig = plot_diagnostics(diag, tmp_path / "d.png", kinds={"0": "Linear"})
    assert (tmp_path / "d.png").read_bytes()[:8] == PNG
    acts, grads = _rows(fig)
    assert [ax.get_title(loc="left").split(":")[0] for ax in acts] == (
        ["layer 0 (Linear)"] + [f"layer {n}" for n in diag["layers"][1:]])
    for ax, name in zip(acts, diag["layers"], strict=True):
        assert len(ax.get_lines()) == len(diag["percentiles"])  # 15th, 50th, 85th
        assert len(ax.collections) == 1  # the band between the outer percentiles
        ys = ax.get_lines()[1].get_ydata()  # the median, step by step
        assert list(ys) == pytest.approx(diag["activations"][name]["p50"])
    owners = {p.rsplit(".", 1)[0] for p in diag["grad_norms"]}
    for ax, name in zip(grads, diag["layers"], strict=True):
        n_params = sum(p.rsplit(".", 1)[0] == name for p in diag["grad_norms"])
        assert len(ax.get_lines()) == n_params
        assert (name in owners) == bool(n_params)
    legends = [c for c in fig.get_children() if type(c).__name__ == "Legend"]
    assert len(legends) == 1 and not any(ax.get_legend() for ax in fig.axes)  # legend once
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert "15th–85th percentile band" in labels and "50th percentile (median)" in labels


def _synthetic(n_layers: int, steps=(1, 2, 3, 4)) -> dict:
    layers = [f"block{i}.lin" for i in range(n_layers)]
    k = len(steps)
    return {"layers": layers, "percentiles": [10.0, 50.0, 90.0], "units_tracked": [],
            "steps": list(steps),
            "activations": {n: {"p10": [-1.0] * k, "p50": [0.0, None, 0.1, 0.2],
                                "p90": [1.0] * k} for n in layers},
            "units": {}, "grad_norms": {
                **{f"{n}.weight": [1e-4, 1e-2, 1.0, 10.0] for n in layers},
                **{f"{n}.bias": [0.5, 0.4, 0.3, 0.2] for n in layers},
                "scale": [1.0, 1.0, 1.0, 1.0]}}


def test_norms_spanning_decades_get_a_log_axis_and_stray_params_a_row(tmp_path):
    fig = plot_diagnostics(_synthetic(2), tmp_path / "s.png")
    acts, grads = _rows(fig)
    assert len(acts) == len(grads) == 3  # two layers + the parameters of no recorded layer
    assert grads[0].get_yscale() == "log" and grads[-1].get_yscale() == "linear"
    assert "p10" not in acts[0].get_title() and "10th" in acts[0].get_lines()[0].get_label()


def test_many_layers_are_all_drawn_within_a_capped_height(tmp_path):
    fig = plot_diagnostics(_synthetic(40), tmp_path / "many.png")
    acts, grads = _rows(fig)
    assert len(acts) == len(grads) == 41
    assert fig.get_size_inches()[1] <= 27.0
    assert (tmp_path / "many.png").read_bytes()[:8] == PNG


def test_nothing_recorded_still_draws(tmp_path):
    plot_diagnostics({"layers": [], "steps": [], "activations": {}, "grad_norms": {}},
                     tmp_path / "empty.png")
    plot_diagnostics(_synthetic(1, steps=()) | {"activations": {}, "grad_norms": {}},
                     tmp_path / "nosteps.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG
    assert (tmp_path / "nosteps.png").read_bytes()[:8] == PNG


def test_a_failed_drawing_is_reported_not_raised(tmp_path, capsys):
    class Broken:
        model = None  # no named_modules(): the drawing fails

    assert draw_diagnostics(Broken(), tmp_path / "d.png") is False
    assert "could not draw" in capsys.readouterr().err and not (tmp_path / "d.png").exists()


def test_the_core_does_not_import_matplotlib():
    code = ("import sys, gammabeta.nn, gammabeta.init, gammabeta.optim, gammabeta.backend, "
            "gammabeta.diagnostics, gammabeta.train_cli; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
