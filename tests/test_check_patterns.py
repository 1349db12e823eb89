"""gammabeta check on our own implementations of the patterns real code takes (the corpus this
was measured on is others' code and stays outside the repository): zero-flag discovery, the
whole normalization set, conventions as notes, and the real mistakes named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gammabeta.check import check
from gammabeta.check import cli as check_cli

CASES = Path(__file__).resolve().parent / "check_cases"


@pytest.fixture(scope="module")
def layers():
    return {r.target.rsplit(":", 1)[1]: r for r in check(str(CASES / "cs231n_layers.py"))}


@pytest.fixture(scope="module")
def buggy():
    return {r.target.rsplit(":", 1)[1]: r for r in check(str(CASES / "buggy_layers.py"))}


@pytest.fixture(scope="module")
def classes():
    return {r.target.rsplit(":", 1)[1]: r for r in check(str(CASES / "classes.py"))}


def _cause(report, key):
    f = report[key]
    return " ".join([f.message, f.cause or ""])


def test_zero_flags_find_every_normalization_and_each_correct_one_passes(layers):
    assert set(layers) == {"batchnorm_forward", "batchnorm_forward + batchnorm_backward_alt",
                           "spatial_batchnorm_forward", "layernorm_forward",
                           "spatial_groupnorm_forward"}
    for r in layers.values():
        assert r.exit_code == 0, r.to_text()
    assert layers["layernorm_forward"].kind == "layernorm"
    assert layers["spatial_groupnorm_forward"].kind == "groupnorm"
    assert layers["spatial_batchnorm_forward"].kind == "spatial_batchnorm"


def test_cs231n_conventions_are_notes(layers):
    r = layers["batchnorm_forward"]
    assert r["running_init"].status == "note"  # running_var starts at zeros
    assert r["running_var_unbiased"].status == "note"  # biased running variance
    assert r["momentum_convention"].status == "note"  # 0.9 on the old value
    assert r["nchw"].status == "note"  # (N, D) only


@pytest.mark.parametrize("name, key, phrase", [
    ("evalepsout_bn_forward", "eval_mode", "ε is outside the square root in eval"),
    ("lastbatch_bn_forward", "running_stats", "overwritten with the current batch"),
    ("avggrad_bn_forward", "backward_dgamma", "averaged over the batch"),
    ("avggrad_bn_forward", "backward_dbeta", "averaged over the batch"),
    ("scrambled_spatial_batchnorm_forward", "forward_train", "channels scrambled"),
    ("interleaved_spatial_groupnorm_forward", "forward_train", "grouped interleaved"),
    ("wrongaxis_layernorm_forward", "forward_train", "wrong axis"),
    ("nonedx_layernorm_forward", "backward_runs", "is None"),
    ("perposition_spatial_batchnorm_forward", "forward_train", "per position over N and C"),
    ("perposition_spatial_batchnorm_forward", "running_stats", "12 = H·W"),
    ("perpixel_spatial_groupnorm_forward", "forward_train", "separately at each position"),
    ("sigmadx_bn_forward", "backward_dx", "multiplies by the standard deviation"),
])
def test_real_mistakes_are_named(buggy, name, key, phrase):
    r = buggy[name]
    assert r[key].status == "fail", r.to_text()
    assert phrase in _cause(r, key), r.to_text()


def test_changing_the_input_in_place_is_a_warning(buggy):
    r = buggy["inplace_bn_forward"]
    assert r.exit_code == 0 and r["inputs_unchanged"].status == "warn", r.to_text()
    assert "x of shape (8, 3)" in r["inputs_unchanged"].message
    assert r["gradcheck"].status == "pass"  # not blamed on the backward pass


def test_hard_coded_eps_is_detected_and_used(buggy):
    r = buggy["avggrad_bn_forward"]
    assert r["epsilon"].status == "note"
    assert "uses ε = 1e-08" in r["epsilon"].message
    assert r["forward_train"].status == "pass" and r["eval_mode"].status == "pass", r.to_text()


def test_classes_are_driven_without_flags(classes):
    for name in ("MyTorchBatchNorm", "TextbookBatchNormalization", "LazyBatchNormalization",
                 "FoldedEpsBatchNorm", "LayerNormGradsList", "OddNamesBatchNorm",
                 "SGDInBackwardBatchNorm", "UnknownFlagBatchNorm",
                 "RequiredMomentumBatchNorm", "BatchNorm2dNCHW", "GroupNormClass"):
        assert classes[name].exit_code == 0, classes[name].to_text()
    mt = classes["MyTorchBatchNorm"]
    assert "forward keyword eval=" in mt.discovered[0] and "γ = BW" in mt.discovered[0]
    assert "called initialize() to create the parameters" in \
        classes["LazyBatchNormalization"].discovered
    assert classes["FoldedEpsBatchNorm"]["running_var_eps"].status == "note"
    assert classes["LazyBatchNormalization"]["running_init"].status == "note"
    odd = " | ".join(classes["OddNamesBatchNorm"].discovered)
    for found in ("running_mean found by watching a training step: OddNamesBatchNorm.ema_mu",
                  "dgamma found as the array backward changed: OddNamesBatchNorm.grad_scale",
                  "dbeta found as the array backward changed: OddNamesBatchNorm.grad_shift"):
        assert found in odd, odd
    assert "mode: forward keyword predicting=" in classes["UnknownFlagBatchNorm"].discovered[0]
    assert classes["UnknownFlagBatchNorm"]["eval_mode"].status == "pass"
    assert classes["GroupNormClass"].kind == "groupnorm"
    assert "(N, C, H, W)" in classes["BatchNorm2dNCHW"]["forward_runs"].message
    sgd = " | ".join(classes["SGDInBackwardBatchNorm"].discovered)
    assert "dgamma read off the update SGDInBackwardBatchNorm.backward(dout, lr=1)" in sgd


def test_a_constructor_that_ignores_momentum_fails(classes):
    r = classes["MyTorchBatchNormIgnoresMomentum"]
    assert [f.key for f in r.failures] == ["momentum_convention"], r.to_text()
    assert "constructor's momentum argument" in r["momentum_convention"].message


def test_file_report_json_and_exit_code(capsys):
    code = check_cli.main([str(CASES / "buggy_layers.py"), "--json"])
    assert code == 1
    import json

    data = json.loads(capsys.readouterr().out)
    assert len(data["reports"]) == 11 and data["passed"] is False
    assert check_cli.main([str(CASES / "cs231n_layers.py")]) == 0


def test_a_file_inside_a_package_imports_relatively(tmp_path):
    pkg = tmp_path / "proj" / "mylib" / "nn"
    pkg.mkdir(parents=True)
    (tmp_path / "proj" / "mylib" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("class Module:\n    pass\n")
    src = (CASES / "classes.py").read_text()
    (pkg / "norm.py").write_text("from .base import Module\n" + src)
    r = check(str(pkg / "norm.py"))
    names = {x.target.rsplit(":", 1)[1]: x.exit_code for x in r}
    assert names["MyTorchBatchNorm"] == 0 and names["MyTorchBatchNormIgnoresMomentum"] == 1


def test_a_cumulative_average_is_recognized():
    from gammabeta.nn import BatchNorm1d

    r = check(BatchNorm1d, init_args="3, momentum=None")
    assert r.exit_code == 0, r.to_text()
    assert "cumulative average" in r["running_stats"].message
