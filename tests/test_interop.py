"""PyTorch interop: every CLI builder round-trips both ways; crafted files never run code."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.errors import CheckpointError, ConfigError, StateDictError
from gammabeta.interop import from_torch, load_torch_state_dict, to_torch
from gammabeta.io import save_checkpoint
from gammabeta.models import build_model

from ._torch import require_torch
from .test_fold import CASES, OPTIONS, eval_out, inputs, rel_err, trained

pytestmark = pytest.mark.torch


def _torch():
    torch = require_torch()
    torch.set_num_threads(1)
    return torch


def _run(torch, tm, x, train: bool):
    tm.train(train)
    with torch.no_grad():
        return tm(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name,shape", CASES)
def test_gammabeta_to_torch_eval_and_train(name, shape, tmp_path):
    torch = _torch()
    model = trained(name, shape, dropout=0.0)  # dropout 0: train-mode outputs are deterministic
    x = inputs(shape)
    ref = eval_out(model, x)
    tm = to_torch(model)
    assert list(tm.state_dict()) == list(model.state_dict())
    assert rel_err(_run(torch, tm, x, train=False), ref) <= 1e-5
    # a checkpoint file loads strictly into a torch tree built from a *fresh* gammabeta model
    path = save_checkpoint(tmp_path / "m.safetensors", model.state_dict())
    from safetensors.torch import load_file

    fresh = to_torch(build_model(name, shape, 10, rng=np.random.default_rng(9),
                                 **{**OPTIONS[name], "dropout": 0.0}))
    fresh.load_state_dict(load_file(str(path)), strict=True)
    assert rel_err(_run(torch, fresh, x, train=False), ref) <= 1e-5
    # train mode: batch statistics and the running-stat updates agree
    g = build_model(name, shape, 10, rng=np.random.default_rng(9),
                    **{**OPTIONS[name], "dropout": 0.0})
    g.load_state_dict(model.state_dict())
    g.train()
    y = g(x)
    assert rel_err(_run(torch, fresh, x, train=True), y) <= 1e-5
    for k, v in fresh.state_dict().items():
        ref_v = g.state_dict()[k]
        assert np.allclose(v.numpy(), ref_v, rtol=1e-5, atol=1e-6), k


@pytest.mark.parametrize("name,shape", CASES)
def test_torch_state_dict_loads_into_gammabeta(name, shape, tmp_path):
    torch = _torch()
    from safetensors.torch import save_file

    torch.manual_seed(0)
    arch = build_model(name, shape, 10, rng=np.random.default_rng(1), **OPTIONS[name])
    tm = to_torch(arch)
    with torch.no_grad():  # torch-side weights and statistics gammabeta has never seen
        for p in tm.parameters():
            p.add_(0.1 * torch.randn_like(p))
        tm.train()
        for _ in range(3):
            tm(torch.randn(16, *shape) * 2 + 0.5)
    tm.eval()
    x = inputs(shape)
    ref = _run(torch, tm, x, train=False)
    path = tmp_path / "torch.safetensors"
    save_file(tm.state_dict(), str(path))
    g = build_model(name, shape, 10, rng=np.random.default_rng(2), **OPTIONS[name])
    assert load_torch_state_dict(g, path) == ([], [])
    assert rel_err(eval_out(g, x), ref) <= 1e-5
    g2 = build_model(name, shape, 10, rng=np.random.default_rng(3), **OPTIONS[name])
    load_torch_state_dict(g2, tm.state_dict())  # an in-memory dict of tensors
    assert rel_err(eval_out(g2, x), ref) <= 1e-5
    back = from_torch(tm)
    assert not back.training and list(back.state_dict()) == list(tm.state_dict())
    assert rel_err(eval_out(back, x), ref) <= 1e-5


def test_from_torch_hand_written_tree():
    torch = _torch()
    tnn = torch.nn
    torch.manual_seed(1)
    tm = tnn.Sequential()
    for name, layer in [("conv", tnn.Conv2d(2, 6, 3, padding="same", dilation=2)),
                        ("bn", tnn.BatchNorm2d(6, momentum=None)), ("act", tnn.GELU("tanh")),
                        ("pool", tnn.AvgPool2d(3, 2, 1, count_include_pad=False)),
                        ("conv2", tnn.Conv2d(6, 4, (3, 1), stride=(1, 2), groups=2, bias=False)),
                        ("leaky", tnn.LeakyReLU(0.2)), ("mp", tnn.MaxPool2d(2, 1, 1)),
                        ("gap", tnn.AdaptiveAvgPool2d((2, None))), ("flat", tnn.Flatten()),
                        ("drop", tnn.Dropout(0.0)), ("fc", tnn.Linear(4 * 2 * 4, 5)),
                        ("sig", tnn.Sigmoid())]:
        tm.add_module(name, layer)
    g = from_torch(tm)
    assert list(g.state_dict()) == list(tm.state_dict())
    x = inputs((2, 9, 9))
    for train in (True, False):
        ref = _run(torch, tm, x, train)
        g.train(train)
        assert rel_err(g(x), ref) <= 1e-5
    assert np.allclose(g.bn.running_var, tm.bn.running_var.numpy(), rtol=1e-5)


def test_unsupported_layers_are_named():
    torch = _torch()

    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ConfigError, match=r"layer 1 is a Custom"):
        to_torch(nn.Sequential(nn.ReLU(), Custom()))
    with pytest.raises(ConfigError, match=r"layer 0 is a torch LSTM"):
        from_torch(torch.nn.Sequential(torch.nn.LSTM(3, 3)))
    with pytest.raises(ConfigError, match="padding_mode"):
        from_torch(torch.nn.Conv1d(1, 1, 3, padding=1, padding_mode="reflect"))


def _small():
    return nn.Sequential(nn.Linear(5, 4, rng=np.random.default_rng(0)), nn.BatchNorm1d(4),
                         nn.ReLU(), nn.Linear(4, 3, rng=np.random.default_rng(1)))


def test_pickle_disguised_as_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for proto in (2, 4, 5):
        path = tmp_path / f"model{proto}.safetensors"
        path.write_bytes(pickle.dumps({"0.weight": Evil()}, protocol=proto))
        with pytest.raises(CheckpointError, match="pickle"):
            load_torch_state_dict(_small(), path)
    zipped = tmp_path / "torch_save.safetensors"  # what torch.save writes: a zip of pickles
    zipped.write_bytes(b"PK\x03\x04" + pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="pickle"):
        load_torch_state_dict(_small(), zipped)
    assert not marker.exists()


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    sd = _small().state_dict()
    sd["3.weight"] = np.zeros((3, 7), np.float32)
    path = save_checkpoint(tmp_path / "bad.safetensors", sd)
    with pytest.raises(StateDictError) as e:
        load_torch_state_dict(_small(), path)
    msg = str(e.value)
    assert "bad.safetensors" in msg and "'3.weight'" in msg and "(3, 7)" in msg and "(3, 4)" in msg
    del sd["3.weight"]
    sd["3.weights"] = np.zeros((3, 4), np.float32)
    with pytest.raises(StateDictError, match=r"missing keys \['3.weight'\].*unexpected keys "
                                             r"\['3.weights'\]"):
        load_torch_state_dict(_small(), sd)


def test_truncated_and_garbage_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", _small().state_dict()).read_bytes()
    cases = {"trunc.safetensors": good[: len(good) // 2], "short.safetensors": good[:5],
             "header.safetensors": (10**6).to_bytes(8, "little") + b'{"a":',
             "json.safetensors": (4).to_bytes(8, "little") + b"nope"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            load_torch_state_dict(_small(), tmp_path / name)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_torch_state_dict(_small(), tmp_path / "missing.safetensors")
    with pytest.raises(StateDictError, match="dtype"):
        load_torch_state_dict(_small(), {"0.weight": np.array(["a"])})


def test_import_does_not_load_torch_or_onnx():
    code = ("import sys, gammabeta.interop, gammabeta.deploy, gammabeta.deploy.cli; "
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
