"""The cases an adversarial pass found after the first hardening: each reproduced with files
the test writes itself, each now refused (or reported) instead of silently going wrong."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from gammabeta import init
from gammabeta.cli import main
from gammabeta.errors import ConfigError, OutputError
from gammabeta.io import load_checkpoint, save_checkpoint
from gammabeta.study.runner import expand, run_study
from gammabeta.study.spec import parse_spec

TINY = ["--epochs", "1", "--hidden", "8", "--quiet"]


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def blobs(path, n=90, scale=1.0, dtype=np.float32, rank_extra=()):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = (rng.standard_normal((n, 5)) + y[:, None]) * scale
    np.savez(path, x=x.astype(dtype).reshape((n, *rank_extra, 5)), y=y)
    return path


@pytest.fixture
def data(tmp_path):
    return blobs(tmp_path / "d.npz")


# ----- runs --------------------------------------------------------------------------------------
def test_overwrite_never_mixes_the_old_run_with_a_failed_new_one(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    rc, _, err = run(["train", "--data", data, "--epochs", "3", "--hidden", "8", "--quiet",
                      "--lr", "1e30", "--optimizer", "sgd", "--schedule", "constant",
                      "--overwrite", "--out", out], capsys)
    assert rc == 1 and "non-finite" in err
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()


def test_a_run_whose_steps_are_all_skipped_fails(tmp_path, capsys):
    path = blobs(tmp_path / "huge.npz", scale=1e37)
    rc, _, err = run(["train", "--data", path, "--epochs", "2", "--hidden", "8", "--quiet",
                      "--on-nonfinite", "skip-step", "--out", tmp_path / "r"], capsys)
    assert rc == 1 and "steps were skipped" in err


def test_inputs_of_rank_above_four_are_refused_before_training(tmp_path, capsys):
    path = blobs(tmp_path / "r6.npz", rank_extra=(1, 1, 1, 1))
    rc, _, err = run(["train", "--data", path, *TINY, "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "samples of shape (1, 1, 1, 1, 5)" in err
    assert not (tmp_path / "r").exists()


def test_resume_refuses_other_data_and_damaged_positions(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    blobs(data, scale=2.0)  # the same file, other values
    rc, _, err = run(["train", "--resume", out, "--quiet"], capsys)
    assert rc == 2 and "not the data this run started with" in err
    blobs(data)
    state = out / "train_state.safetensors"
    tensors, meta = load_checkpoint(state)
    for key, edit, said in (
            ("loop", lambda d: d.update(batch=10**6), "loop batch=1000000"),
            ("scheduler", lambda d: d.update(last_epoch=-5), "the schedule is at step -5"),
            ("optimizer", lambda d: [g.update(lr=-1.0) for g in d["param_groups"]], "lr=-1.0")):
        bad = dict(meta)
        value = json.loads(bad[key])
        edit(value)
        bad[key] = json.dumps(value)
        save_checkpoint(state, tensors, bad)
        rc, _, err = run(["train", "--resume", out, "--quiet"], capsys)
        assert rc == 2 and "damaged training state" in err and said in err, err
    save_checkpoint(state, tensors, meta)
    assert run(["train", "--resume", out, "--quiet"], capsys)[0] == 0


def test_stale_temporary_files_of_a_killed_run_are_removed(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    stale = out / ".train_state.safetensors.abc123.tmp"
    stale.write_bytes(b"half")
    assert run(["train", "--resume", out, "--quiet"], capsys)[0] == 0
    assert not stale.exists()


@pytest.mark.parametrize("flag", ["--out", "--resume", "--config"])
def test_empty_paths_are_refused(flag, capsys):
    rc, _, err = run(["train", flag, ""], capsys)
    assert rc == 2 and f"{flag} is empty" in err


def test_typed_widths_are_stored_normalized(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, "--epochs", "1", "--hidden", " +8", "--quiet", "--out",
                out], capsys)[0] == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["hidden"] == "8"
    assert run(["train", "--resume", out, "--hidden", "8", "--quiet"], capsys)[0] == 0


# ----- predict and export ----------------------------------------------------------------------
def test_non_finite_outputs_are_refused(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    tensors, meta = load_checkpoint(out / "model.safetensors")
    tensors["0.weight"] = np.full_like(tensors["0.weight"], 3e38)
    save_checkpoint(out / "model.safetensors", tensors, meta)
    rc, out_text, err = run(["predict", "--model", out, data], capsys)
    assert rc == 1 and "is not finite" in err and "nan" not in out_text
    rc, _, err = run(["export", "--onnx", tmp_path / "m.onnx", "--model", out], capsys)
    assert rc == 1 and not (tmp_path / "m.onnx").exists()


def test_inputs_scaled_unlike_the_training_data_are_refused(tmp_path, capsys):
    raw = blobs(tmp_path / "raw.npz", scale=100.0)
    out = tmp_path / "r"
    assert run(["train", "--data", raw, *TINY, "--out", out], capsys)[0] == 0
    scaled = blobs(tmp_path / "scaled.npz", scale=0.01)
    rc, _, err = run(["predict", "--model", out, scaled], capsys)
    assert rc == 2 and "scale them as the training data was" in err
    assert run(["predict", "--model", out, raw], capsys)[0] == 0


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    rc, _, err = run(["predict", "--model", out, data, "--out", data, "--overwrite"], capsys)
    assert rc == 2 and "reads" in err
    rc, _, err = run(["export", "--model", out, "--onnx", out / "model.safetensors",
                      "--overwrite"], capsys)
    assert rc == 2 and "reads" in err and load_checkpoint(out / "model.safetensors")


def test_check_output_does_not_replace_files(tmp_path, capsys):
    from pathlib import Path

    gallery = Path(__file__).parents[1] / "examples" / "broken_batchnorm"
    target = next(gallery.glob("momentum_swapped.py"))
    keep = tmp_path / "notes.json"
    keep.write_text("mine")
    rc, _, err = run(["check", target, "-o", keep], capsys)
    assert rc == 2 and "--overwrite" in err and keep.read_text() == "mine"


# ----- studies -------------------------------------------------------------------------------
def test_two_study_files_of_one_name_do_not_share_a_folder(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    text = 'name = "same"\n[base]\nepochs = 1\nhidden = "4"\n[options]\nmax_train = 60\n'
    a.write_text(text)
    b.write_text(text.replace("epochs = 1", "epochs = 2"))
    from gammabeta.study.spec import load_spec

    out = tmp_path / "studies" / "same"
    run_study(load_spec(a), out, workers=1, progress=False)
    with pytest.raises(OutputError, match="holds the study 'same' from"):
        run_study(load_spec(b), out, workers=1, progress=False)


def test_a_study_refuses_a_folder_holding_other_files(tmp_path):
    (tmp_path / "curves.png").write_bytes(b"my figure")
    with pytest.raises(OutputError, match="not a study folder"):
        run_study(parse_spec("[base]\nepochs = 1\n", "s.toml"), tmp_path, workers=1,
                  progress=False)
    assert (tmp_path / "curves.png").read_bytes() == b"my figure"


def test_study_steps_are_bounded_and_equal_values_are_one_run():
    with pytest.raises(ConfigError, match="options.steps"):
        parse_spec("[options]\nsteps = 1000000000000\n", "s.toml")
    with pytest.raises(ConfigError, match="same run"):
        expand(parse_spec("[axes]\nepochs = [1, 1.0]\n", "s.toml"))


@pytest.mark.parametrize("text, said", [
    ('[base]\nnorm = "none"\n[options]\nprune = [0.5]', "norm='none'"),
    ('[base]\nnorm = "none"\n[options]\ntrainable = "bn"', "norm='none'"),
    ("[options]\nmax_train = 1", "at least 2"),
    ("[options]\nzero_last_gamma = true", "residual blocks"),
])
def test_task_options_that_cannot_work_are_refused_before_any_run(text, said):
    with pytest.raises(ConfigError, match=said):
        expand(parse_spec(text + "\n", "s.toml"))


# ----- the library -----------------------------------------------------------------------------
@pytest.mark.parametrize("call, said", [
    (lambda r: init.normal((3, 3), r, std=float("inf")), "std=inf"),
    (lambda r: init.variance_scaling((3, 3), r, scale=float("nan")), "scale=nan"),
    (lambda r: init.normal((3, 3), r, mean="x"), "mean='x'"),
    (lambda r: init.normal((-1, 3), r), "shape=(-1, 3)"),
    (lambda r: init.normal((3,), None), "rng=None"),
    (lambda r: init.uniform((3,), r, a=5, b=1), "a=5, b=1"),
    (lambda r: init.calculate_gain("leaky_relu", "x"), "param='x'"),
])
def test_initializers_check_their_arguments(call, said):
    with pytest.raises(ConfigError) as e:
        call(np.random.default_rng(0))
    assert said in str(e.value)


def test_numpy_numbers_and_paths_are_accepted_as_options(tmp_path, data):
    from gammabeta.config import TrainConfig

    cfg = TrainConfig(data=data, batch_size=np.int64(50), lr=np.float32(0.01)).validate()
    assert cfg.data == os.fspath(data) and cfg.batch_size == 50 and isinstance(cfg.lr, float)


# ----- the second adversarial pass --------------------------------------------------------------
def test_overwrite_keeps_the_old_run_when_the_new_one_is_refused(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    before = (out / "model.safetensors").read_bytes()
    for bad in (["--data", tmp_path / "nosuch.npz"], ["--data", data, "--hidden",
                                                      "65536,65536,65536"]):
        rc, _, _ = run(["train", *TINY[:2], "--quiet", *bad, "--overwrite", "--out", out],
                       capsys)
        assert rc == 2 and (out / "model.safetensors").read_bytes() == before


def test_a_csv_naming_a_column_twice_is_refused(tmp_path, capsys):
    path = tmp_path / "two.csv"
    rows = "\n".join(f"{i % 2},{i},{i * 2},{i % 2}" for i in range(40))
    path.write_text("label,a,b,label\n" + rows + "\n")
    rc, _, err = run(["train", "--data", path, *TINY, "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "names 'label' more than once" in err


def test_two_axes_may_not_set_the_same_option():
    with pytest.raises(ConfigError, match="both set 'lr'"):
        parse_spec('[axes]\nopt = [{label = "fast", lr = 0.5}, {label = "slow", lr = 0.001}]\n'
                   'wd = [{label = "a", lr = 0.05, weight_decay = 0.0}]\n', "s.toml")


def test_a_study_folder_keeps_its_scale_and_its_data(tmp_path):
    from gammabeta.study.spec import load_spec

    data = blobs(tmp_path / "d.npz")
    study = tmp_path / "s.toml"
    study.write_text(f'name = "s"\n[base]\ndata = "{data}"\nepochs = 1\nhidden = "4"\n'
                     '[tiny]\nbase = {epochs = 2}\n')
    out = tmp_path / "out"
    run_study(load_spec(study), out, workers=1, progress=False)
    with pytest.raises(OutputError, match="at scale tiny"):
        run_study(load_spec(study, "tiny"), out, workers=1, progress=False)
    blobs(data, scale=3.0)
    with pytest.raises(OutputError, match="not the data its finished runs used"):
        run_study(load_spec(study), out, workers=1, progress=False)


def test_outputs_that_are_not_regular_files_are_refused(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    rc, _, err = run(["predict", "--model", out, data, "--out", fifo, "--overwrite"], capsys)
    assert rc == 2 and "not a regular file" in err
    rc, _, err = run(["train", "--config", fifo], capsys)  # would block forever if read
    assert rc == 2 and "not a regular file" in err


@pytest.mark.parametrize("args, said", [
    (["--model", "cnn", "--hidden", "64,64"], "--hidden='64,64' sets the widths of mlp"),
    (["--model", "resnet", "--norm", "none", "--zero-init-residual"],
     "zeroes the γ of the last BatchNorm"),
    (["--norm", "none", "--gamma-init", "0.5"], "sets the normalization layers' gamma"),
])
def test_options_that_would_do_nothing_are_refused(args, said, capsys):
    rc, _, err = run(["train", *args], capsys)
    assert rc == 2 and said in err


def test_a_damaged_history_or_an_unreadable_tensor_is_refused(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    state = out / "train_state.safetensors"
    tensors, meta = load_checkpoint(state)
    loop = json.loads(meta["loop"])
    loop["history"] = [1, 2, "x"]
    save_checkpoint(state, tensors, {**meta, "loop": json.dumps(loop)})
    rc, _, err = run(["train", "--resume", out, "--quiet"], capsys)
    assert rc == 2 and "loop history" in err


def test_study_show_prints_a_study_file_of_ones_own(tmp_path, capsys):
    study = tmp_path / "mine.toml"
    study.write_text('name = "mine"\n')
    rc, out, _ = run(["study", "show", study], capsys)
    assert rc == 0 and out == 'name = "mine"\n'


# ----- the third pass ---------------------------------------------------------------------------
def test_outputs_that_are_symbolic_links_are_refused(tmp_path, data, capsys):
    out = tmp_path / "r"
    assert run(["train", "--data", data, *TINY, "--out", out], capsys)[0] == 0
    real = tmp_path / "real.csv"
    real.write_text("mine")
    for target in (real, tmp_path / "nowhere" / "x.csv"):  # to a file, and dangling
        link = tmp_path / "link.csv"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        rc, _, err = run(["predict", "--model", out, data, "--out", link, "--overwrite"],
                         capsys)
        assert rc == 2 and "symbolic link" in err and link.is_symlink()
    assert real.read_text() == "mine"


def test_csv_columns_must_match_the_training_columns(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = rng.standard_normal((90, 3)) + y[:, None]
    train = tmp_path / "t.csv"
    train.write_text("a,b,c,label\n" + "\n".join(
        f"{r[0]},{r[1]},{r[2]},{c}" for r, c in zip(x, y, strict=True)) + "\n")
    out = tmp_path / "r"
    assert run(["train", "--data", train, *TINY, "--out", out], capsys)[0] == 0
    swapped = tmp_path / "s.csv"
    swapped.write_text("c,b,a\n" + "\n".join(f"{r[2]},{r[1]},{r[0]}" for r in x) + "\n")
    rc, _, err = run(["predict", "--model", out, swapped], capsys)
    assert rc == 2 and "differ from the ones the model was trained on" in err
    same = tmp_path / "same.csv"
    same.write_text("a,b,c\n" + "\n".join(f"{r[0]},{r[1]},{r[2]}" for r in x) + "\n")
    assert run(["predict", "--model", out, same], capsys)[0] == 0


def test_config_files_once_with_or_without_a_byte_order_mark(tmp_path, data, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'\ufeffdata = "{data}"\nepochs = 1\nhidden = "8"\n', encoding="utf-8")
    rc, _, err = run(["train", "--config", cfg, "--config", cfg, "--quiet"], capsys)
    assert rc == 2 and "--config given 2 times" in err
    assert run(["train", "--config", cfg, "--quiet", "--weight-init", "orthogonal", "--out",
                tmp_path / "r"], capsys)[0] == 0


def test_train_does_not_write_into_a_study_folder(tmp_path, data, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text("{}")
    rc, _, err = run(["train", "--data", data, *TINY, "--out", tmp_path / "s", "--overwrite"],
                     capsys)
    assert rc == 2 and "is a study's folder" in err


def test_the_library_refuses_one_class_data():
    from gammabeta.config import TrainConfig
    from gammabeta.data.dataset import Dataset
    from gammabeta.errors import DataError
    from gammabeta.experiment import run as run_config

    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    y = np.zeros(20, dtype=np.int64)
    ds = Dataset("one", x[:15], y[:15], x[15:], y[15:], 1)
    with pytest.raises(DataError, match="only class 0"):
        run_config(TrainConfig(epochs=1, hidden="4"), dataset=ds)
