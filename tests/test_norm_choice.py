"""Choosing the normalization: ``--norm`` and its options in TrainConfig, the builders, the
optimizer's γ learning-rate group, the CLI and the study task options."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gammabeta.config import TrainConfig
from gammabeta.errors import ConfigError
from gammabeta.experiment import make_optimizer, make_scheduler
from gammabeta.models import build_model
from gammabeta.models.norms import NORMS, norm_gammas, norm_modules

# (norm, layer type after a Linear, after a Conv1d, after a Conv2d)
EXPECTED = {
    "batch": ("BatchNorm1d", "BatchNorm1d", "BatchNorm2d"),
    "layer": ("LayerNorm", "GroupNorm", "GroupNorm"),
    "group": ("GroupNorm", "GroupNorm", "GroupNorm"),
    "instance": (None, "InstanceNorm1d", "InstanceNorm2d"),
    "renorm": ("BatchRenorm1d", "BatchRenorm1d", "BatchRenorm2d"),
    "ghost": ("GhostBatchNorm1d", "GhostBatchNorm1d", "GhostBatchNorm2d"),
}


def _norm_types(model) -> list[str]:
    return [type(m).__name__ for m in norm_modules(model)]


@pytest.mark.parametrize("norm", [n for n in NORMS if n != "none"])
def test_every_builder_builds_every_norm(norm):
    rng = np.random.default_rng(0)
    opts = {"virtual_batch_size": 4} if norm == "ghost" else {}
    after_linear, after_conv1, after_conv2 = EXPECTED[norm]
    if after_linear is None:
        with pytest.raises(ConfigError, match="instance"):
            build_model("mlp", (12,), 3, rng=rng, norm=norm, hidden="16")
    else:
        m = build_model("mlp", (12,), 3, rng=rng, norm=norm, hidden="16,8", norm_options=opts)
        assert _norm_types(m) == [after_linear] * 2
        # the Linear keeps its bias only where the norm does not subtract it
        assert (m[0].bias is not None) == (norm in ("layer", "group"))
        x = rng.standard_normal((6, 12)).astype(np.float32)
        assert m(x).shape == (6, 3)
    m = build_model("cnn", (20,), 3, rng=rng, norm=norm, channels=8, layers=2,
                    norm_options=opts)
    assert set(_norm_types(m)) == {after_conv1}
    x = rng.standard_normal((4, 20)).astype(np.float32)
    y = m(x)
    m.backward(np.ones_like(y))
    m = build_model("resnet", (2, 8, 8), 3, rng=rng, norm=norm, channels=8, stages=2,
                    norm_options=opts)
    assert set(_norm_types(m)) == {after_conv2}
    assert m(rng.standard_normal((4, 2, 8, 8)).astype(np.float32)).shape == (4, 3)
    m = build_model("papercnn", (40,), 3, rng=rng, norm=norm, channels=8, norm_options=opts)
    assert set(_norm_types(m)) == {after_conv1}


def test_norm_options_reach_the_layers():
    rng = np.random.default_rng(0)
    m = build_model("mlp", (12,), 3, rng=rng, norm="group", hidden="12",
                    norm_options={"groups": 4})
    assert norm_modules(m)[0].num_groups == 4
    m = build_model("mlp", (12,), 3, rng=rng, norm="group", hidden="12")  # default: 8 → 6
    assert norm_modules(m)[0].num_groups == 6
    m = build_model("cnn", (20,), 3, rng=rng, norm="ghost", channels=4, layers=1,
                    norm_options={"virtual_batch_size": 3})
    assert norm_modules(m)[0].virtual_batch_size == 3
    m = build_model("mlp", (12,), 3, rng=rng, norm="renorm", hidden="12",
                    norm_options={"r_max": 2.0, "d_max": 1.5})
    assert (norm_modules(m)[0].r_max, norm_modules(m)[0].d_max) == (2.0, 1.5)
    with pytest.raises(ConfigError, match="groups=5 does not divide"):
        build_model("mlp", (12,), 3, rng=rng, norm="group", hidden="12",
                    norm_options={"groups": 5})
    with pytest.raises(ConfigError, match=r"norm_options \['groups'\] do not apply to "
                                          "norm='batch'"):
        build_model("mlp", (12,), 3, rng=rng, norm="batch", norm_options={"groups": 2})


@pytest.mark.parametrize("kw, message", [
    (dict(norm="group", groups=3), r"groups=3 does not divide the layer width\(s\) \[256\]"),
    (dict(norm="batch", groups=4), "groups=4 applies to norm='group', not 'batch'"),
    (dict(norm="layer", virtual_batch_size=8), "virtual_batch_size=8 applies to norm='ghost'"),
    (dict(norm="batch", renorm_r_max=2.0), "renorm_r_max=2.0 applies to norm='renorm'"),
    (dict(norm="instance"), "norm='instance' normalizes each channel over its positions"),
    (dict(norm="ghost", batch_size=1), "batch_size=1: norm='ghost' needs at least 2"),
    (dict(norm="none", gamma_lr_scale=0.01), "gamma_lr_scale=0.01 sets the normalization "
                                             "layers' gamma"),
    (dict(norm="layer", model_options={"zero_init_residual": True}, model="resnet"),
     "norm='layer' has no BatchNorm"),
    (dict(virtual_batch_size=1, norm="ghost"), "virtual_batch_size=1"),
    (dict(renorm_r_max=0.5, norm="renorm"), "renorm_r_max=0.5"),
    (dict(norm="weight"), "norm='weight'"),
])
def test_config_refuses_what_cannot_work(kw, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kw).validate()


def test_config_builds_norm_options():
    assert TrainConfig(norm="ghost", batch_size=100).validate().norm_options() == \
        {"virtual_batch_size": 25}
    assert TrainConfig(norm="ghost", batch_size=6).norm_options() == {"virtual_batch_size": 2}
    assert TrainConfig(norm="group", groups=4).model_kwargs()["norm_options"] == {"groups": 4}
    assert "norm_options" not in TrainConfig(norm="layer").model_kwargs()
    assert TrainConfig(norm="renorm", renorm_d_max=0.0).norm_options() == {"d_max": 0.0}


@pytest.mark.parametrize("norm", ["batch", "layer", "group"])
def test_gamma_lr_scale_puts_gamma_in_its_own_group(norm):
    cfg = TrainConfig(norm=norm, gamma_lr_scale=0.01, lr=0.05, epochs=1).validate()
    cfg = cfg.resolved(1)
    model = build_model("mlp", (12,), 3, rng=np.random.default_rng(0), **cfg.model_kwargs())
    opt = make_optimizer(cfg, model)
    gammas = {id(p) for p in norm_gammas(model)}
    assert len(gammas) == 2
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_lr[0.05 * 0.01] == gammas
    sched = make_scheduler(cfg, opt, steps_per_epoch=10)
    for _ in range(5):
        opt.step()
        sched.step()
    lrs = sched.get_last_lr()
    ratios = {round(lr / max(lrs), 12) for lr in lrs}
    assert ratios == {1.0, 0.01}  # the one-cycle schedule scales γ's rate alike
    plain = make_optimizer(TrainConfig(norm=norm, lr=0.05).validate().resolved(1), model)
    assert len(plain.param_groups) == 2


@pytest.mark.parametrize("norm", [n for n in NORMS if n != "instance"])
def test_train_cli_trains_every_norm(tmp_path, norm):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gammabeta.cli", "train", "--data", "digits", "--epochs", "2",
           "--hidden", "32,32", "--norm", norm, "--val-fraction", "0", "--quiet", "--out",
           str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["norm"] == norm
    assert metrics["test_accuracy"] > 0.5  # digits: 2 epochs are plenty for far above chance


def test_train_cli_instance_norm_on_the_cnn(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gammabeta.cli", "train", "--data", "digits",
                        "--model", "cnn", "--channels", "8", "--layers", "2", "--epochs", "1",
                        "--norm", "instance", "--quiet", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_train_cli_refuses_groups_that_do_not_divide(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gammabeta.cli", "train", "--norm", "group",
                        "--groups", "7", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "groups=7 does not divide" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_study_options_for_running_statistics_need_batch_statistics():
    from gammabeta.study.options import check_combination

    with pytest.raises(ConfigError, match="precise_bn=10 works on BatchNorm's running "
                                          "statistics, and this run has norm='group'"):
        check_combination({"norm": "group"}, {"precise_bn": 10})
    check_combination({"norm": "renorm"}, {"precise_bn": 10, "bn_momentum": 0.01})


def test_precise_bn_task_records_both_accuracies():
    from gammabeta.study.tasks import run_job

    job = {"key": "k", "config": {"data": "digits", "model": "mlp", "hidden": "16",
                                  "epochs": 1, "batch_size": 64},
           "options": {"precise_bn": 5, "bn_momentum": 0.5, "max_train": 400,
                       "max_test": 100}}
    row = run_job(job)
    assert row["precise_bn_batches"] == 5
    assert 0 <= row["precise_test_accuracy"] <= 1
    assert row["bn_gap"]["mean"] is not None and row["precise_bn_gap"]["mean"] is not None


def test_convert_sync_batchnorm_leaves_renorm_and_ghost_alone():
    from gammabeta import nn

    model = nn.Sequential(nn.BatchNorm1d(3), nn.BatchRenorm1d(3), nn.GhostBatchNorm1d(3, 4))
    out = nn.convert_sync_batchnorm(model)
    assert [type(m).__name__ for m in out] == ["SyncBatchNorm", "BatchRenorm1d",
                                               "GhostBatchNorm1d"]
