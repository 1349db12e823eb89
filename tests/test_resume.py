"""Interrupted runs: stop/SIGINT/SIGKILL at random moments, resume bit-identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gammabeta.checkpoint import load_training_state
from gammabeta.errors import CheckpointError, NonFiniteError, TrainingInterrupted
from gammabeta.experiment import TrainConfig, run
from gammabeta.io import load_checkpoint


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 8)) * 2
    y = rng.integers(0, 3, 600)
    x = (centers[y] + rng.standard_normal((600, 8))).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x=x, y=y)
    return path


def cfg_for(npz, **kw):
    base = dict(data=str(npz), hidden="16,16", epochs=4, batch_size=20, lr=0.02, dropout=0.1)
    return TrainConfig(**{**base, **kw})


def assert_same_run(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a.history.records]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b.history.records]
    assert a.test_accuracy == b.test_accuracy


@pytest.mark.parametrize("stop_at", [7, 30, 61])  # mid-epoch, an epoch boundary, mid-epoch
def test_stop_then_resume_is_bit_identical(npz, tmp_path, stop_at):
    reference = run(cfg_for(npz))
    steps = []

    def should_stop():
        steps.append(1)
        return len(steps) == stop_at

    state = tmp_path / "state.safetensors"
    with pytest.raises(TrainingInterrupted, match=f"step {stop_at}"):
        run(cfg_for(npz), state_path=state, should_stop=should_stop)
    resumed = run(cfg_for(npz), state_path=state, resume=True)
    assert_same_run(reference, resumed)


def test_skip_step_mode_and_raise_mode_name_the_step_and_layer(npz, tmp_path):
    x = np.load(npz)["x"].copy()
    x[5, 3] = np.inf  # one poisoned sample
    # file loaders refuse non-finite features (DataError); build the dataset object directly
    from gammabeta.data.dataset import Dataset

    ds = Dataset("bad", x[:480], np.load(npz)["y"][:480], x[480:], np.load(npz)["y"][480:], 3)
    with pytest.raises(NonFiniteError, match=r"epoch 1, step \d+: non-finite loss .*first "
                                             r"non-finite output in the input batch"):
        run(cfg_for(npz, norm="none", dropout=0.0), dataset=ds)
    # finite data that overflows inside the network is traced to the first such layer:
    # weights of 1e30 keep layer 0's outputs finite (~1e31) but overflow layer 2
    with np.errstate(all="ignore"), pytest.raises(
            NonFiniteError, match=r"step 1: non-finite loss .*first non-finite output in "
                                  r"2 \(Linear\(in_features=16"):
        run(cfg_for(npz, norm="none", dropout=0.0, weight_init="constant(value=1e30)"))
    res = run(cfg_for(npz, on_nonfinite="skip-step"), dataset=ds)
    skipped = res.history.column("skipped_steps")
    assert skipped == [1, 1, 1, 1]  # the poisoned batch, once per epoch
    for name, p in res.model.named_parameters():
        assert np.isfinite(p.data).all(), name
    for name, b in res.model.named_buffers():
        assert np.isfinite(b).all(), name


def _cli(*args):
    return [sys.executable, "-m", "gammabeta.cli", *args]


def _wait_for(path, timeout=60):
    t0 = time.time()
    while not path.exists():
        if time.time() - t0 > timeout:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def test_sigkill_at_random_moments_never_corrupts_and_resume_finishes(npz, tmp_path):
    args = ["train", "--data", str(npz), "--hidden", "16,16", "--epochs", "40",
            "--batch-size", "20", "--lr", "0.02", "--dropout", "0.1", "--quiet",
            "--checkpoint-every", "1"]
    reference = run(cfg_for(npz, epochs=40))
    out = tmp_path / "run"
    rng = np.random.default_rng(0)
    state = out / "train_state.safetensors"
    for i in range(4):  # kill, resume, kill again ... (checkpoints written at every step)
        cmd = _cli(*args, "--out", str(out)) if i == 0 else _cli("train", "--resume", str(out),
                                                                 "--quiet",
                                                                 "--checkpoint-every", "1")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for(state)
        time.sleep(float(rng.uniform(0.05, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # whatever moment the kill hit, the state file is whole and loadable
        tensors, meta = load_checkpoint(state)
        assert meta["format"] == "gammabeta-training-state-1"
        leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        assert all(name.startswith(".") for name in leftovers)  # only temp files may remain
    done = subprocess.run(_cli("train", "--resume", str(out), "--quiet"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final, _ = load_checkpoint(out / "model.safetensors")
    for k, v in reference.model.state_dict().items():
        assert np.array_equal(final[k], v), k


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigint_stops_cleanly_with_a_checkpoint(npz, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli("train", "--data", str(npz), "--hidden", "16,16", "--epochs",
                                 "400", "--batch-size", "20", "--quiet", "--out", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "train_state.safetensors")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "training state saved in" in err and f"--resume {out}" in err
    tensors, meta = load_checkpoint(out / "train_state.safetensors")
    assert "model.0.weight" in tensors


def test_resume_refuses_other_files(npz, tmp_path):
    state = tmp_path / "m.safetensors"
    res = run(cfg_for(npz, epochs=1))
    from gammabeta.io import save_checkpoint

    save_checkpoint(state, res.model.state_dict())
    with pytest.raises(CheckpointError, match="not a gammabeta training-state file"):
        load_training_state(state, res.model, None, None)
    from gammabeta.cli import main

    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2


def test_resume_from_a_folder_without_state_names_it(tmp_path, capsys):
    from gammabeta.cli import main

    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no train_state.safetensors there" in err and "nothing" in err
