"""The study runner: TOML specs, grids and keys, resume after a kill, local/process/Dask
execution with identical numbers, the per-run hooks, and every built-in study end to end."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gammabeta.errors import ConfigError
from gammabeta.experiment import TrainConfig, run
from gammabeta.models import build_model
from gammabeta.study import ResultStore, builtin_names, expand, load_spec, parse_spec, run_study
from gammabeta.study.cli import main
from gammabeta.study.tasks import _dataset, _prune, _restrict, _Stepper, run_job

SMALL = """
name = "small"
seeds = [0, 1]
[base]
model = "mlp"
hidden = "16,16"
epochs = 2
[options]
max_train = 300
max_test = 100
[axes]
gamma_init = ["ones", 0.5]
"""


def _accs(rows):
    return {r["key"]: (r["test_accuracy"], r["test_loss"]) for r in rows}


# ----- specs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, where, valid", [
    ("name = 'x'\nbogus = 1\n", "bogus", "valid keys: name"),
    ("[base]\nepochz = 3\n", "epochz", "epochs"),
    ("[options]\nevel_every = 3\n", "evel_every", "eval_every"),
    ("[axes]\nfoo = [1, 2]\n", "foo", "gamma_init"),
    ("[axes]\nnet = [{label = 'a', modle = 'mlp'}]\n", "modle", "model"),
    ("[quick]\nbase = {lr = 'fast'}\n", "quick.base.lr", "expected"),
    ("[quick]\naxes = {nope = [1]}\n", "nope", "valid keys"),
    ("[axes]\ngamma_init = ['ones', 'ones']\n", "repeat", "label"),
    ("seeds = [0, 0]\n", "seeds", "repeat"),
    ("name = 'x\n", "not valid TOML", ""),
])
def test_spec_errors_name_the_file_the_key_and_the_valid_keys(tmp_path, text, where, valid):
    path = tmp_path / "bad-study.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert "bad-study.toml" in str(e.value) and where in str(e.value) and valid in str(e.value)


def test_builtins_load_at_every_scale_and_quick_is_smaller():
    names = builtin_names()
    assert set(names) == {"gamma-beta", "weight-scale", "bn-paper", "gamma-l1", "bn-only",
                          "zero-gamma", "sync-bn", "small-gamma", "small-batch", "precise-bn",
                          "gamma-beta-norms", "norm-choice"}
    for n in names:
        sizes = [len(expand(load_spec(n, scale))) for scale in ("full", "quick", "tiny")]
        assert sizes[0] >= sizes[1] >= sizes[2] >= 1
    assert len(expand(load_spec("gamma-beta"))) == 6 * 2 * 2 * 5
    assert len(expand(load_spec("small-gamma"))) == 2 * 3 * 2 * 15  # 15 seeds, paired tests
    assert len(expand(load_spec("small-batch"))) == 5 * 6 * 5
    spec = load_spec("bn-paper", data_dir="/data/mnist")
    assert spec.base["data"] == "mnist" and spec.base["data_dir"] == "/data/mnist"


def test_grid_keys_are_stable_unique_and_seeds_outermost():
    spec = parse_spec(SMALL, "small.toml")
    jobs = expand(spec)
    assert [j["seed"] for j in jobs] == [0, 0, 1, 1]
    assert [j["axes"]["gamma_init"] for j in jobs] == ["ones", "0.5", "ones", "0.5"]
    assert len({j["key"] for j in jobs}) == 4
    assert [j["key"] for j in expand(parse_spec(SMALL, "other.toml"))] == [j["key"] for j in jobs]
    changed = parse_spec(SMALL.replace("epochs = 2", "epochs = 3"), "small.toml")
    assert not {j["key"] for j in expand(changed)} & {j["key"] for j in jobs}


# ----- the per-run function ---------------------------------------------------------------------
def test_a_job_gives_the_same_numbers_as_experiment_run():
    job = expand(parse_spec(SMALL, "s.toml"))[1]
    row = run_job(job)
    ds = _dataset("mnist1d", None, False, 0, 300, 100)
    ref = run(TrainConfig.from_dict(job["config"]), dataset=ds)
    assert row["test_accuracy"] == ref.test_accuracy and row["test_loss"] == ref.test_loss
    assert row["history"]["train_loss"] == ref.history.column("train_loss")


def test_restricted_training_moves_only_the_chosen_entries():
    x = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    y = np.arange(40) % 3
    for mode in ("bn", "random"):
        model = build_model("mlp", (5,), 3, rng=np.random.default_rng(0), hidden="6,6")
        n, masks = _restrict(model, mode, np.random.default_rng(1))
        assert n == 2 * (6 + 6)  # γ and β of two BN layers: as many random weights
        before = {k: v.copy() for k, v in model.state_dict().items()}
        from gammabeta import optim
        from gammabeta.train import fit

        opt = _Stepper(optim.AdamW(optim.param_groups(model, 0.1), lr=0.05), masks=masks)
        fit(model, x, y, optimizer=opt, epochs=2, batch_size=20, rng=np.random.default_rng(0))
        moved = sum(int(np.sum(v != before[k])) for k, v in model.state_dict().items()
                    if "running" not in k and "num_batches" not in k)
        assert 0 < moved <= n
        bn = [f"{name}.{p}" for name, m in model.named_modules()
              if type(m).__name__ == "BatchNorm1d" for p in ("weight", "bias")]
        assert len(bn) == 4
        bn_moved = any(np.any(model.state_dict()[k] != before[k]) for k in bn)
        assert bn_moved == (mode == "bn")


def test_l1_subgradient_and_pruning():
    model = build_model("mlp", (5,), 3, rng=np.random.default_rng(0), hidden="4")
    gamma = model[1].weight
    gamma.data[:] = [0.5, -0.2, 0.0, 2.0]

    class Null:
        param_groups = [{"lr": 0.0}]

        def step(self):
            pass

    gamma.grad = np.zeros(4, np.float32)
    _Stepper(Null(), l1=0.1, gammas=[gamma]).step()
    assert gamma.grad.tolist() == pytest.approx([0.1, -0.1, 0.0, 0.1])
    rng = np.random.default_rng(0)
    ds = _dataset("mnist1d", None, False, 0, 200, 100)
    model = build_model("mlp", (40,), 10, rng=rng, hidden="8")
    model[1].weight.data[:] = np.arange(1, 9)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    recs = _prune(model, ds, [0.0, 0.5, 1.0], 1, 1e-3, 50, 0)
    assert [r["channels"] for r in recs] == [0, 4, 8]
    assert recs[2]["accuracy"] == recs[2]["finetuned_accuracy"]  # nothing left to tune
    assert all(np.array_equal(v, state[k]) for k, v in model.state_dict().items())


# ----- results file, resume, executors ----------------------------------------------------------
def test_store_drops_a_torn_last_line_and_repeats(tmp_path):
    store = ResultStore(tmp_path)
    row = {"config": {}, "options": {}}
    store.append({"key": "a", "v": 1, **row})
    store.append({"key": "b", "v": 2, **row})
    store.append({"key": "a", "v": 3, **row})  # ignored: already there
    with open(tmp_path / "results.jsonl", "ab") as f:
        f.write(b'{"key": "a", "v": 9, "config": {}, "options": {}}\n'
                b'{"key": "d", "v": NaN, "config": {}, "options": {}}\n'  # not JSON: dropped
                b'{"key": ["e"], "config": {}, "options": {}}\n'  # not a run row: dropped
                b'{"key": "c", "v"')
    again = ResultStore(tmp_path)
    assert again.dropped == 4 and {k: r["v"] for k, r in again.rows.items()} == {"a": 1, "b": 2}
    again.append({"key": "c", "v": 4, **row})
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["a", "b", "c"]


def test_a_killed_study_resumes_without_losing_or_repeating_runs(tmp_path):
    study = tmp_path / "killme.toml"
    study.write_text(SMALL.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3]")
                     .replace('hidden = "16,16"\nepochs = 2', 'hidden = "256,256"\nepochs = 6')
                     .replace("max_train = 300", "max_train = 2000"))
    out = tmp_path / "out"
    log = out / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "gammabeta.study.cli", "run", str(study),
                             "--out", str(out), "--workers", "1", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    saved = {r["key"]: r for r in map(json.loads, log.read_text().splitlines())}
    assert 2 <= len(saved) < 8
    with open(log, "ab") as f:  # as if a write had been cut short
        f.write(b'{"key": "torn", "test_acc')
    assert main(["run", str(study), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 8
    assert set(keys) == {j["key"] for j in expand(load_spec(study))}
    for r in rows:  # the runs finished before the kill were kept, not run again
        if r["key"] in saved:
            assert r == saved[r["key"]]
    report = (out / "report.md").read_text()
    assert report.splitlines()[2].startswith("Produced by: `gammabeta study run")
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 8


def test_process_pool_and_dask_give_the_same_numbers_as_in_process(tmp_path):
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster

    spec = parse_spec(SMALL, "small.toml")
    local = run_study(spec, tmp_path / "local", workers=1, progress=False, report=False)
    pool = run_study(spec, tmp_path / "pool", workers=2, progress=False, report=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        dask = run_study(spec, tmp_path / "dask", dask_scheduler=cluster.scheduler_address,
                         progress=False, command="gammabeta study run small.toml")
    assert _accs(local["rows"]) == _accs(pool["rows"]) == _accs(dask["rows"])
    assert (tmp_path / "dask" / "report.md").exists()


# ----- the built-in studies, end to end at tiny scale -------------------------------------------
@pytest.mark.parametrize("name", ["gamma-beta", "weight-scale", "bn-paper", "gamma-l1",
                                  "bn-only", "zero-gamma", "small-gamma", "small-batch",
                                  "precise-bn", "gamma-beta-norms"])
def test_builtin_study_runs_end_to_end(tmp_path, name):
    out = tmp_path / name
    assert main(["run", name, "--tiny", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    n = len(expand(load_spec(name, "tiny")))
    data = json.loads((out / "results.json").read_text())
    assert len(data["runs"]) == n and all("config" in r for r in data["runs"])
    report = (out / "report.md").read_text()
    assert f"gammabeta study run {name} --tiny" in report and "## Conclusion" in report
    figs = [line[line.index("(") + 1:-1] for line in report.splitlines()
            if line.startswith("![")]
    assert figs and all((out / f).read_bytes()[:4] == b"\x89PNG" for f in figs)
    assert main(["run", name, "--tiny", "--out", str(out), "--quiet"]) == 0  # all done: skip


def test_cli_list_and_show(capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in builtin_names())
    assert main(["show", "bn-paper"]) == 0
    assert 'act = "sigmoid"' in capsys.readouterr().out
    assert main(["run", "no-such-study"]) == 2
    assert "unknown built-in study" in capsys.readouterr().err
    assert os.environ.get("GAMMABETA_NEVER_SET") is None
