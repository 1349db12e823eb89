"""ONNX export: every CLI builder (BN folded and not) runs in ONNX Runtime like gammabeta."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import gammabeta.nn as nn
from gammabeta.deploy import export_onnx
from gammabeta.deploy.cli import main
from gammabeta.errors import ConfigError, ShapeError
from gammabeta.experiment import TrainConfig
from gammabeta.io import save_checkpoint
from gammabeta.models import build_model

from .test_fold import CASES, eval_out, inputs, randomize_bn, rel_err, train_steps, trained


def run_onnx(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    return sess.run(["logits"], {"input": x})[0]


def ops(proto) -> set[str]:
    return {n.op_type for n in proto.graph.node}


@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
@pytest.mark.parametrize("name,shape", CASES)
def test_every_builder_matches_onnxruntime(name, shape, fold, tmp_path):
    model = trained(name, shape)
    path = tmp_path / "m.onnx"
    proto = export_onnx(model, path, shape, fold_bn=fold)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    inp = proto.graph.input[0].type.tensor_type.shape.dim
    assert inp[0].dim_param == "N" and [d.dim_value for d in inp[1:]] == list(shape)
    assert proto.opset_import[0].version == 17
    assert ("BatchNormalization" in ops(proto)) is not fold
    assert "Dropout" not in ops(proto)
    for n in (1, 7):  # dynamic batch
        x = inputs(shape, n=n, seed=n)
        assert rel_err(run_onnx(path, x), eval_out(model, x)) <= 1e-5
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # atomic: no temp file left


@pytest.mark.parametrize("act,opset,op", [("gelu", 17, "Erf"), ("gelu", 20, "Gelu"),
                                          ("leaky_relu", 17, "LeakyRelu"),
                                          ("tanh", 13, "Tanh"), ("sigmoid", 17, "Sigmoid")])
def test_activations_and_opsets(act, opset, op, tmp_path):
    model = trained("mlp", (40,), act=act, hidden="32")
    proto = export_onnx(model, tmp_path / "a.onnx", (40,), opset=opset)
    assert op in ops(proto) and proto.opset_import[0].version == opset
    x = inputs((40,))
    assert rel_err(run_onnx(tmp_path / "a.onnx", x), eval_out(model, x)) <= 1e-5


@pytest.mark.parametrize("opset", [17, 20])
def test_other_layers(opset, tmp_path):
    rng = np.random.default_rng(4)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding="same", dilation=2, rng=rng), nn.BatchNorm2d(6),
        nn.GELU("tanh"), nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        nn.Conv2d(6, 4, (3, 1), stride=(1, 2), groups=2, bias=False, rng=rng),
        nn.BatchNorm2d(4, affine=False), nn.MaxPool2d(2, 1, 1), nn.AdaptiveAvgPool2d((2, None)),
        nn.Flatten(2), nn.Linear(8, 3, rng=rng), nn.Residual(nn.Sequential(nn.Tanh())),
        nn.Flatten(), nn.Unflatten(1, (2, 6)), nn.Identity(), nn.Flatten(), nn.Linear(12, 5))
    randomize_bn(model, rng)
    train_steps(model, (2, 9, 9), rng)
    x = inputs((2, 9, 9), n=3)
    for fold in (False, True):
        proto = export_onnx(model, tmp_path / "o.onnx", (2, 9, 9), opset=opset, fold_bn=fold)
        assert {"MatMul", "Reshape", "AveragePool", "MaxPool", "Add"} <= ops(proto)
        assert rel_err(run_onnx(tmp_path / "o.onnx", x), eval_out(model, x)) <= 1e-5


def test_global_pool_1d_and_adaptive(tmp_path):
    model = nn.Sequential(nn.Conv1d(1, 3, 3, rng=np.random.default_rng(0)),
                          nn.AdaptiveAvgPool1d(2), nn.Flatten(), nn.Sigmoid())
    proto = export_onnx(model, tmp_path / "p.onnx", (1, 10))
    assert "AveragePool" in ops(proto)
    x = inputs((1, 10))
    assert rel_err(run_onnx(tmp_path / "p.onnx", x), eval_out(model, x)) <= 1e-5
    with pytest.raises(ConfigError, match="divide evenly"):
        export_onnx(nn.Sequential(nn.AdaptiveAvgPool1d(3)), tmp_path / "q.onnx", (1, 10))


def test_clear_errors(tmp_path, monkeypatch):
    model = build_model("mlp", (40,), 10, rng=np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"input_shape \(41,\) does not fit"):
        export_onnx(model, tmp_path / "x.onnx", (41,))
    with pytest.raises(ConfigError, match="opset=12"):
        export_onnx(model, tmp_path / "x.onnx", (40,), opset=12)
    with pytest.raises(ConfigError, match="track_running_stats=False"):
        export_onnx(nn.Sequential(nn.BatchNorm1d(4, track_running_stats=False)),
                    tmp_path / "x.onnx", (4,))
    assert model.training and not list(tmp_path.iterdir())  # modes restored, nothing written
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ConfigError, match=r"pip install gammabeta\[onnx\]"):
        export_onnx(model, tmp_path / "x.onnx", (40,))


def test_cli_export(tmp_path, capsys):
    cfg = TrainConfig(model="resnet", data="x.npz").resolved(3)
    model = build_model(cfg.model, (1, 28, 28), 10, rng=np.random.default_rng(0),
                        **cfg.model_kwargs())
    randomize_bn(model, np.random.default_rng(1))
    run = tmp_path / "run"
    save_checkpoint(run / "model.safetensors", model.state_dict(),
                    {"config": cfg.to_dict(), "input_shape": [1, 28, 28], "num_classes": "10"})
    out = tmp_path / "r.onnx"
    assert main(["export", "--onnx", str(out), "--model", str(run), "--fold-bn"]) == 0
    said = capsys.readouterr().out
    assert "opset 17" in said and "input 'input' (N, 1, 28, 28)" in said and "folded" in said
    x = inputs((1, 28, 28), n=2)
    assert rel_err(run_onnx(out, x), eval_out(model, x)) <= 1e-5
    assert main(["export", "--onnx", str(out), "--model", str(tmp_path / "nope")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
