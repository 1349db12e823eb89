"""What a user gives cannot hurt them: one validated config, confined and explicit outputs,
one-line errors with documented exit codes. Every file used here is written by the test."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import time

import numpy as np
import pytest

from gammabeta.cli import main
from gammabeta.config import MODELS, TrainConfig
from gammabeta.errors import ConfigError, OutputError
from gammabeta.io import atomic_write_text
from gammabeta.outputs import locked, run_folder_name
from gammabeta.study.runner import run_study
from gammabeta.study.spec import parse_spec
from gammabeta.train_cli import flag

TINY = ["--epochs", "1", "--hidden", "8", "--quiet"]


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.standard_normal((90, 5)).astype(np.float32), y=np.arange(90) % 3)
    return path


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ----- one source: argparse, the study schema and TrainConfig cannot drift ----------------
def test_every_train_option_has_its_flag_and_study_key():
    from gammabeta.cli import build_parser
    from gammabeta.models import BUILDERS
    from gammabeta.study.spec import TRAIN_KEYS

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items()
                 if a[0] == "train")[1]
    flags = {s for act in train._actions for s in act.option_strings}
    for f in dataclasses.fields(TrainConfig):
        if f.metadata["option"].cli:
            assert flag(f.name) in flags
    assert TRAIN_KEYS == tuple(f.name for f in dataclasses.fields(TrainConfig))
    assert tuple(sorted(BUILDERS)) == MODELS


def test_a_study_accepts_the_options_train_accepts(tmp_path):
    spec = parse_spec('[base]\non_nonfinite = "skip-step"\nclip_grad_norm = 1.0\n', "s.toml")
    assert spec.base == {"on_nonfinite": "skip-step", "clip_grad_norm": 1.0}


@pytest.mark.parametrize("line, named", [
    ("[base]\nepochs = 0", "base.epochs=0"), ("[base]\nepochs = -3", "base.epochs=-3"),
    ("[base]\nlr = nan", "base.lr=nan"), ("[base]\nbatch_size = 2.5", "base.batch_size=2.5"),
    ("[base]\nhidden = \"16,,16\"", "base.hidden="), ("[base]\nseed = 1", "seeds = [0, 1, 2]"),
    ("seeds = [-1]", "seeds: got [-1]"),
    ("[options]\nsteps = -1", "options.steps=-1"),
    ("[options]\nmax_train = -5", "options.max_train=-5"),
    ("[options]\nprune = [2.0]", "options.prune=[2.0]"),
    ("[options]\nprune = [-0.25]", "options.prune=[-0.25]"),
    ("[options]\neval_every = -1", "options.eval_every=-1"),
    ("[options]\nfinetune_epochs = -1", "options.finetune_epochs=-1"),
    ("[options]\nl1_gamma = nan", "options.l1_gamma=nan"),
    ("[axes]\nepochs = [1, 0]", "axes.epochs=0"),
    ("[base]\ngamma_init = \"normal(mean='x')\"", "mean='x'"),
    ("[base]\ngamma_init = \"uniform(a=5, b=1)\"", "a=5, b=1"),
])
def test_study_values_are_checked_like_train_options(line, named):
    with pytest.raises(ConfigError) as e:
        parse_spec(line + "\n", "s.toml")
    assert "s.toml" in str(e.value) and named in str(e.value)


def test_a_combination_of_axes_is_checked_as_a_whole(tmp_path):
    spec = parse_spec('[axes]\nmodel = ["mlp", "cnn"]\n[base]\nmodel_options = {layers = 2}\n',
                      "s.toml")
    with pytest.raises(ConfigError, match=r"model 'mlp' has no option 'layers'"):
        run_study(spec, tmp_path / "out", workers=1, progress=False)


def test_a_huge_grid_is_refused_before_it_is_built():
    values = ", ".join(f'{{label = "v{j}"}}' for j in range(10))
    axes = "\n".join(f"a{i} = [{values}]" for i in range(9))  # 10^9 runs
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"the grid has 1,000,000,000 runs"):
        parse_spec(f"[axes]\n{axes}\n", "s.toml")
    assert time.perf_counter() - t0 < 5


# ----- outputs stay inside their root, are never replaced silently, and are locked --------
@pytest.mark.parametrize("name", ["..", "../../x", "/etc", "a/b", ".hidden", "~x", ""])
def test_study_names_that_would_leave_the_studies_folder_are_refused(name):
    with pytest.raises(ConfigError, match="plain folder name"):
        parse_spec(f'name = "{name}"\n', "s.toml")


def test_a_study_does_not_write_into_a_folder_holding_someone_elses_report(tmp_path):
    mine = tmp_path / "report.md"
    mine.write_text("my notes")
    spec = parse_spec('[base]\nepochs = 1\n', "s.toml")
    with pytest.raises(OutputError, match="not a study folder"):
        run_study(spec, tmp_path, workers=1, progress=False)
    assert mine.read_text() == "my notes"


def test_a_locked_study_folder_refuses_a_second_run(tmp_path):
    spec = parse_spec('[base]\nepochs = 1\n', "s.toml")
    with locked(tmp_path / "out"), pytest.raises(OutputError, match="in use by"):
        run_study(spec, tmp_path / "out", workers=1, progress=False)


def test_train_refuses_to_replace_an_earlier_run(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, _, err = run(["train", "--data", data, *TINY, "--seed", "1", "--out", out], capsys)
    assert rc == 2 and "holds an earlier run" in err and "--overwrite" in err
    assert err.count("\n") == 1  # refused before the data is read: one line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    rc, _, _ = run(["train", "--data", data, *TINY, "--seed", "1", "--out", out,
                    "--overwrite"], capsys)
    assert rc == 0 and (out / "model.safetensors").read_bytes() != before["model.safetensors"]


def test_default_folders_differ_when_the_options_differ():
    a = run_folder_name(TrainConfig(model="papercnn").to_dict())
    b = run_folder_name(TrainConfig(model="papercnn", norm="none").to_dict())
    assert a == "mnist1d-papercnn-seed0" and b == "mnist1d-papercnn-norm=none-seed0"
    long = run_folder_name(TrainConfig(gamma_init="normal(mean=1, std=0.1)" + " " * 200,
                                       seed=3).to_dict())
    assert len(long) <= 100 and long.endswith("seed3") and "/" not in long


def test_a_locked_run_folder_refuses_a_second_train(tmp_path, data, capsys):
    with locked(tmp_path / "run"):
        rc, _, err = run(["train", "--data", data, *TINY, "--out", tmp_path / "run"], capsys)
    assert rc == 2 and "in use by another" in err


def test_bad_options_leave_no_folder_and_read_no_data(tmp_path, capsys, monkeypatch):
    import gammabeta.experiment as ex

    monkeypatch.setattr(ex, "load_dataset", lambda *a, **k: pytest.fail("data was read"))
    for bad in (["--model", "bogus"], ["--epochs", "0"], ["--seed", "-1"],
                ["--hidden", "16,,16"], ["--lr", "nan"], ["--gamma-init", "normal(mean='x')"],
                ["--checkpoint-every", "0"], ["--diagnostics", "--diagnostics-every", "0"],
                ["--momentum", "abc"], ["--dropout", "1.5"], ["--batch-size", "0"]):
        rc, _, err = run(["train", *bad, "--out", tmp_path / "r"], capsys)
        assert rc == 2 and err.startswith("gammabeta: error: ") and err.count("\n") == 1, bad
        assert bad[-2] in err and bad[-1] in err, (bad, err)
        assert not (tmp_path / "r").exists()


def test_every_problem_is_named_at_once(capsys):
    rc, _, err = run(["train", "--epochs", "0", "--seed", "-1", "--lr", "-1"], capsys)
    assert rc == 2 and all(f in err for f in ("--epochs=0", "--seed=-1", "--lr=-1"))


def test_export_does_not_create_folders_or_replace_files(tmp_path, data, capsys):
    run_dir = tmp_path / "run"
    assert run(["train", "--data", data, *TINY, "--out", run_dir], capsys)[0] == 0
    rc, _, err = run(["export", "--onnx", tmp_path / "a" / "b" / "m.onnx", "--model", run_dir],
                     capsys)
    assert rc == 2 and "does not exist" in err and not (tmp_path / "a").exists()
    target = tmp_path / "m.onnx"
    target.write_bytes(b"keep")
    rc, _, err = run(["export", "--onnx", target, "--model", run_dir], capsys)
    assert rc == 2 and "--overwrite" in err and target.read_bytes() == b"keep"


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_files_respect_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode


def test_an_overwritten_file_keeps_its_mode(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    p.chmod(0o644)
    atomic_write_text(p, "new")
    assert stat.S_IMODE(p.stat().st_mode) == 0o644 and p.read_text() == "new"


# ----- --config and --resume ---------------------------------------------------------------
def test_config_file_holds_the_same_keys_and_flags_take_precedence(tmp_path, data, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data = "{data}"\nepochs = 3\nhidden = "8"\n')
    rc, out, _ = run(["train", "--config", cfg, "--epochs", "1", "--quiet", "--out",
                      tmp_path / "r"], capsys)
    assert rc == 0 and re.search(r"^\| epochs +\| 1 +\|$", out, re.MULTILINE)
    for text, msg in (("", "holds no options"), ("bogus = 1\n", "unknown option(s) ['bogus']"),
                      ("epochs = 0\n", "epochs=0"), ("epochs = [\n", "not valid TOML")):
        cfg.write_text(text)
        rc, _, err = run(["train", "--config", cfg], capsys)
        assert rc == 2 and msg in err and str(cfg) in err


def test_resume_refuses_options_that_differ_from_the_run(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    rc, _, err = run(["train", "--resume", out, "--epochs", "10", "--lr", "5", "--data",
                      "other.npz"], capsys)
    assert rc == 2 and all(s in err for s in ("--epochs 10", "--lr 5.0", "other.npz' (the run"))
    rc, _, _ = run(["train", "--resume", out, "--epochs", "1", "--quiet"], capsys)
    assert rc == 0


# ----- sizes, initializer arguments, exit codes, --debug -------------------------------------
def test_a_model_that_cannot_fit_in_memory_is_refused_at_once(tmp_path, data, capsys):
    t0 = time.perf_counter()
    rc, _, err = run(["train", "--data", data, "--hidden", "65536,65536,65536", "--epochs", "1",
                      "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "needs about" in err and "parameters" in err
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "r").exists()


def test_a_width_beyond_the_limit_is_refused(capsys):
    rc, _, err = run(["train", "--hidden", "100000000"], capsys)
    assert rc == 2 and "'100000000' is not a width" in err


def test_a_diverging_run_exits_1_and_debug_shows_the_traceback(tmp_path, data, capsys):
    argv = ["train", "--data", data, "--epochs", "3", "--hidden", "8", "--lr", "1e30",
            "--optimizer", "sgd", "--schedule", "constant", "--quiet", "--out", tmp_path / "r"]
    rc, _, err = run(argv, capsys)
    assert rc == 1 and "non-finite" in err and "Traceback" not in err
    rc, _, err = run([*argv[:-1], tmp_path / "r2", "--debug"], capsys)
    assert rc == 1 and "Traceback" in err
