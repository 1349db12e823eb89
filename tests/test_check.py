"""gammabeta check: every gallery file gets its specific diagnosis, the correct ones pass."""

from __future__ import annotations

import argparse
import json
import re
import textwrap
import time
from pathlib import Path

import pytest

from gammabeta.check import check
from gammabeta.check import cli as check_cli
from gammabeta.errors import ConfigError

GALLERY = Path(__file__).resolve().parents[1] / "examples" / "broken_batchnorm"
FWD = "batchnorm_forward"

# file -> {failing key: phrase in its cause (or message)}; the failing set must match exactly
BROKEN = {
    "eval_uses_batch_stats.py": {"eval_mode": "eval mode still uses batch statistics",
                                 "eval_after_training": "eval mode still uses batch statistics"},
    "momentum_swapped.py": {"momentum_convention": "momentum convention swapped"},
    "backward_no_mean_term.py": {"backward_dx": "mean path of the backward pass is missing",
                                 "gradcheck": "not the derivative"},
    "backward_no_var_term.py": {"backward_dx": "variance path of the backward pass is missing",
                                "gradcheck": "not the derivative"},
    "gamma_ignored_in_backward.py": {"backward_dx": "ignores γ", "gradcheck": "not the derivative"},
    "naive_variance.py": {"large_offset": "E[x²] − E[x]²"},
    "raises.py": {"forward_runs": "raised ValueError in batchnorm_forward"},
    "wrong_shapes.py": {"backward_runs": "returned dgamma of shape (8, 3)"},
}


def _text(f) -> str:
    return " ".join([f.message, f.cause or ""] + list(f.details))


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_gallery_file_gets_its_diagnosis(name):
    report = check(f"{GALLERY / name}:{FWD}")
    expected = BROKEN[name]
    assert {f.key for f in report.failures} == set(expected), report.to_text()
    for key, phrase in expected.items():
        assert phrase in _text(report[key]), report.to_text()
    assert report.exit_code == 1


def test_conventions_are_notes_not_failures():
    """running_var starting at 0 is the cs231n template's own default: a NOTE, exit 0."""
    report = check(f"{GALLERY / 'convention_running_var_zero.py'}:{FWD}")
    assert report.exit_code == 0, report.to_text()
    assert report["running_init"].status == "note"
    assert "cs231n template" in report["running_init"].cause
    assert report["eval_after_training"].status == "pass"


def test_nan_on_a_batch_of_one_is_a_warning():
    report = check(f"{GALLERY / 'warn_batch_of_one_nan.py'}:{FWD}")
    assert report.exit_code == 0 and not report.failures, report.to_text()
    assert report["batch_of_one"].status == "warn"
    assert "divides by zero when m = 1" in report["batch_of_one"].cause


def test_correct_pair_passes_with_a_momentum_note():
    report = check(f"{GALLERY / 'correct.py'}:{FWD}")
    assert report.passed and report.exit_code == 0, report.to_text()
    assert report["momentum_convention"].status == "note"
    assert "Keras/cs231n" in report["momentum_convention"].message
    assert report["nchw"].status == "note"  # a 2-D-only pair is fine
    assert report["batch_of_one"].status == "pass"


def test_correct_class_passes_everything_including_nchw():
    report = check(f"{GALLERY / 'correct_class.py'}:BatchNorm", strict_pytorch=True)
    assert report.passed, report.to_text()
    assert {f.status for f in report.findings} == {"pass"}, report.to_text()


def test_biased_running_var_is_a_note_unless_strict():
    target = f"{GALLERY / 'convention_biased_running_var.py'}:{FWD}"
    report = check(target)
    assert report.exit_code == 0, report.to_text()
    w = report["running_var_unbiased"]
    assert w.status == "note"
    assert "running_var matches the biased batch variance" in w.cause
    assert "n/(n−1) larger" in w.cause
    strict = check(target, strict_pytorch=True)
    assert [f.key for f in strict.failures] == ["running_var_unbiased"]


def test_gamma_one_would_have_hidden_the_bug():
    report = check(f"{GALLERY / 'gamma_ignored_in_backward.py'}:{FWD}")
    assert any("with γ = 1, β = 0 this dx matches" in d for d in report["backward_dx"].details)
    assert report["backward_dx"].index is not None and report["backward_dx"].max_error > 0.01


def test_hang_times_out_with_a_clear_message():
    t0 = time.perf_counter()
    report = check(f"{GALLERY / 'hangs.py'}:{FWD}", timeout=3)
    assert time.perf_counter() - t0 < 15
    f = report["forward_runs"]
    assert f.status == "fail"
    assert "timed out after 3 s in batchnorm_forward(x of shape (8, 3)" in f.message
    assert all(g.status == "skip" for g in report.findings[1:])


def test_raise_reports_type_message_and_traceback_tail():
    f = check(f"{GALLERY / 'raises.py'}:{FWD}")["forward_runs"]
    assert "operands could not be broadcast" in f.message
    assert any("raises.py" in d for d in f.details) and any("xc = x - mu" in d for d in f.details)


def test_json_output_parses_and_output_file_is_written(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = check_cli.main(["check", f"{GALLERY / 'momentum_swapped.py'}:{FWD}", "--json",
                           "-o", str(out)])
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(out.read_text())
    assert data["passed"] is False and data["failed"] == ["momentum_convention"]
    keys = [c["key"] for c in data["checks"]]
    assert "forward_train" in keys and "running_var_unbiased" in keys
    assert check_cli.main([f"{GALLERY / 'correct.py'}:{FWD}"]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_reports_are_reproducible():
    a = check(f"{GALLERY / 'backward_no_var_term.py'}:{FWD}").to_dict()
    b = check(f"{GALLERY / 'backward_no_var_term.py'}:{FWD}").to_dict()
    assert a == b


def test_add_parser_registers_check_on_a_foreign_parser(capsys):
    p = argparse.ArgumentParser(prog="gammabeta")
    check_cli.add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["check", f"{GALLERY / 'correct_class.py'}:BatchNorm", "--seed", "3"])
    assert args.func(args) == 0
    assert "seed 3" in capsys.readouterr().out


def test_bad_targets_are_config_errors(capsys):
    with pytest.raises(ConfigError, match="no function or class named 'nope'.*batchnorm_forward"):
        check(f"{GALLERY / 'correct.py'}:nope")
    with pytest.raises(ConfigError, match="no such file"):
        check("does_not_exist.py:f")
    with pytest.raises(ConfigError, match="found nothing to check"):
        check(str(GALLERY.parents[1] / "src" / "gammabeta" / "init.py"))
    with pytest.raises(ConfigError, match="unknown option"):
        check(f"{GALLERY / 'correct.py'}:{FWD}", colour=True)
    assert check_cli.main([f"{GALLERY / 'correct.py'}:nope"]) == 2
    assert "defines functions: batchnorm_forward, batchnorm_backward" in capsys.readouterr().err


def test_python_objects_reference_layers_pass():
    from gammabeta.nn import BatchNorm1d, BatchNorm2d

    r1 = check(BatchNorm1d)
    assert r1.passed, r1.to_text()
    r2 = check(BatchNorm2d)  # refuses (N, C): the battery runs on (N, C, H, W)
    assert r2.passed, r2.to_text()
    assert "(N, C, H, W)" in r2["forward_runs"].message


CLASSES = '''
import os
import numpy as np


class P:
    def __init__(self, a):
        self.data, self.grad = a, None


class KerasLike:
    """weight/bias holders with .grad, moving_* statistics, forward(x, training=...)."""

    def __init__(self, c, momentum=0.99):
        self.weight, self.bias = P(np.ones(c)), P(np.zeros(c))
        self.moving_mean, self.moving_var, self.momentum = np.zeros(c), np.ones(c), momentum

    def _update(self, mu, var, n):
        m = self.momentum
        self.moving_mean = m * self.moving_mean + (1 - m) * mu
        self.moving_var = m * self.moving_var + (1 - m) * var * n / (n - 1)

    def forward(self, x, training=True):
        if training:
            if len(x) < 2:
                raise ValueError("need a batch of 2 or more")
            mu, var = x.mean(0), x.var(0)
            self._update(mu, var, len(x))
        else:
            mu, var = self.moving_mean, self.moving_var
        self.istd = 1 / np.sqrt(var + 1e-5)
        self.xhat = (x - mu) * self.istd
        return self.weight.data * self.xhat + self.bias.data

    def backward(self, dy):
        n = len(dy)
        self.bias.grad, self.weight.grad = dy.sum(0), (dy * self.xhat).sum(0)
        return self.weight.data * self.istd * (
            dy - self.bias.grad / n - self.xhat * self.weight.grad / n)


class TorchFormulaKerasValue(KerasLike):
    """PyTorch's update formula with Keras's momentum value 0.99: swapped."""

    def _update(self, mu, var, n):
        a = self.momentum
        self.moving_mean = (1 - a) * self.moving_mean + a * mu
        self.moving_var = (1 - a) * self.moving_var + a * var * n / (n - 1)


class Crashes(KerasLike):
    def forward(self, x, training=True):
        os._exit(3)


class NoGamma:
    def __init__(self, c):
        self.p, self.q = np.ones(c), np.zeros(c)

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def sloppy_affine_forward(x, w, b):
    return x @ w + b, (x, w)


def sloppy_affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, 2 * (x.T @ dout), dout.sum(axis=0)
'''


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "my_layers.py"
    path.write_text(textwrap.dedent(CLASSES))
    return path


def test_class_with_grad_holders_and_keras_convention_passes(classes):
    report = check(f"{classes}:KerasLike")
    assert report.passed, report.to_text()
    assert report["momentum_convention"].status == "note"
    assert "momentum=0.99" in report["momentum_convention"].message


def test_pytorch_formula_with_keras_value_is_swapped(classes):
    report = check(f"{classes}:TorchFormulaKerasValue")
    assert [f.key for f in report.failures] == ["momentum_convention"], report.to_text()
    assert "0.99 is Keras's value" in report["momentum_convention"].cause


def test_crash_is_reported_with_exit_status(classes):
    f = check(f"{classes}:Crashes")["forward_runs"]
    assert f.status == "fail" and "exited with status 3" in f.message


def test_missing_gamma_attribute_lists_what_the_class_has(classes):
    report = check(f"{classes}:NoGamma")
    assert report.exit_code == 2 and report["setup"].status == "error"
    assert re.search(r"no attribute for γ.*its arrays are: p \(3,\), q \(3,\)",
                     report["setup"].message), report.to_text()
    assert check(f"{classes}:NoGamma", gamma_attr="p", beta_attr="q").failures


def test_kind_layer_checks_against_finite_differences(classes):
    good = check(f"{classes}:affine_forward", kind="layer", shapes="4,5;5,3;3")
    assert good.passed and "gradcheck_dw" in good, good.to_text()
    bad = check(f"{classes}:sloppy_affine_forward", kind="layer", shapes="4,5;5,3;3")
    assert [f.key for f in bad.failures] == ["gradcheck_dw"]
    assert "constant factor 2" in bad["gradcheck_dw"].cause
    with pytest.raises(ConfigError, match="--shapes"):
        check(f"{classes}:affine_forward", kind="layer")
    from gammabeta.nn import Linear, ReLU

    assert check(Linear, kind="layer", init_args="3, 4").passed
    assert check(ReLU, kind="layer").passed
