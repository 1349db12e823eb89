"""LayerNorm, GroupNorm and InstanceNorm1d/2d in ONNX export (run in ONNX Runtime) and in the
PyTorch interop (to_torch and from_torch, outputs compared)."""

from __future__ import annotations

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta.deploy import export_onnx
from gammabeta.errors import ConfigError
from gammabeta.interop import from_torch, to_torch
from gammabeta.nn.groupnorm import GroupNorm
from gammabeta.nn.instancenorm import InstanceNorm1d, InstanceNorm2d
from gammabeta.nn.layernorm import LayerNorm

from ._torch import require_torch
from .test_fold import eval_out, inputs, rel_err

RANDOM = dict(weight_init="normal(mean=1, std=0.5)", bias_init="normal")


def _rng(seed):
    return np.random.default_rng(seed)


def mlp_ln(**kw):
    """Linear → LayerNorm → ReLU → Linear on (N, 8)."""
    return nn.Sequential(nn.Linear(8, 12, rng=_rng(0)), LayerNorm(12, rng=_rng(1), **RANDOM, **kw),
                         nn.ReLU(), nn.Linear(12, 4, rng=_rng(2)))


def cnn_2d(gn_kw=None, in_kw=None):
    """Conv2d → GroupNorm → ReLU → Conv2d → InstanceNorm2d → LayerNorm((C, H, W)) → Flatten →
    Linear on (N, 3, 9, 9)."""
    gn_kw = gn_kw or {}
    in_kw = dict(affine=True) if in_kw is None else in_kw
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, rng=_rng(3)), GroupNorm(3, 6, rng=_rng(4), **RANDOM, **gn_kw),
        nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1, rng=_rng(5)),
        InstanceNorm2d(4, rng=_rng(6), **RANDOM, **in_kw),
        LayerNorm((4, 7, 7), rng=_rng(7), **RANDOM), nn.Flatten(),
        nn.Linear(4 * 49, 5, rng=_rng(8)))


def cnn_1d():
    """Conv1d → InstanceNorm1d(track_running_stats) → GroupNorm on (N, C, L) → ReLU → Flatten
    → Linear → GroupNorm on (N, C) → Linear on (N, 2, 11)."""
    return nn.Sequential(
        nn.Conv1d(2, 6, 3, rng=_rng(9)),
        InstanceNorm1d(6, affine=True, track_running_stats=True, momentum=0.5, rng=_rng(10),
                       **RANDOM),
        GroupNorm(2, 6, rng=_rng(11), **RANDOM), nn.ReLU(), nn.Flatten(),
        nn.Linear(54, 8, rng=_rng(12)), GroupNorm(4, 8, rng=_rng(13), **RANDOM, bias=False),
        nn.Linear(8, 3, rng=_rng(14)))


def train_steps(model, shape, steps=3):
    """A few training forwards (moving the running statistics) and backwards."""
    model.train()
    for i in range(steps):
        x = inputs(shape, n=5, seed=20 + i)
        y = model(x)
        model.backward(np.ones_like(y))
    return model


MODELS = [
    ("mlp+LayerNorm", lambda: mlp_ln(), (8,)),
    ("mlp+LayerNorm(bias=False)", lambda: mlp_ln(bias=False), (8,)),
    ("mlp+LayerNorm(no affine)", lambda: mlp_ln(elementwise_affine=False), (8,)),
    ("cnn2d", lambda: cnn_2d(), (3, 9, 9)),
    ("cnn2d, plain norms", lambda: cnn_2d(dict(affine=False), {}), (3, 9, 9)),
    ("cnn2d, no β", lambda: cnn_2d(dict(bias=False), dict(affine=True, bias=False)), (3, 9, 9)),
    ("cnn2d, IN running stats", lambda: cnn_2d(in_kw=dict(affine=True, track_running_stats=True)),
     (3, 9, 9)),
    ("cnn1d", cnn_1d, (2, 11)),
]


def run_onnx(path, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


def ops(proto) -> set[str]:
    return {n.op_type for n in proto.graph.node}


@pytest.mark.parametrize("opset", [17, 21])
@pytest.mark.parametrize("name,build,shape", MODELS, ids=[m[0] for m in MODELS])
def test_export_matches_onnxruntime(name, build, shape, opset, tmp_path):
    pytest.importorskip("onnxruntime")
    model = train_steps(build(), shape)
    path = tmp_path / "m.onnx"
    proto = export_onnx(model, path, shape, opset=opset)
    kinds = {type(m).__name__ for m in model.modules()}
    used = ops(proto)
    assert ("LayerNormalization" in used) == ("LayerNorm" in kinds)
    if "GroupNorm" in kinds:  # native from opset 21 on (N, C, *) inputs, else decomposed
        assert ("GroupNormalization" in used) == (opset >= 21 and shape != (8,))
        assert ("InstanceNormalization" in used) or opset >= 21
    tracked = [m for m in model.modules() if getattr(m, "track_running_stats", False)]
    assert ("BatchNormalization" in used) == bool(tracked)
    for n in (1, 7):  # dynamic batch
        x = inputs(shape, n=n, seed=n)
        assert rel_err(run_onnx(path, x), eval_out(model, x)) <= 1e-5
    assert model.training is False  # eval_out left it in eval; export restored the mode


def test_export_keeps_train_mode_and_refuses_what_onnx_cannot_say(tmp_path):
    model = mlp_ln()
    export_onnx(model, tmp_path / "a.onnx", (8,))
    assert model.training
    with pytest.raises(ConfigError, match=r"export_onnx: 1 LayerNorm\(\(12,\)\) needs opset >= "
                                          r"17 \(ONNX LayerNormalization\); got opset=16"):
        export_onnx(model, tmp_path / "b.onnx", (8,), opset=16)
    with pytest.raises(ConfigError, match="normalizes over the batch axis"):
        export_onnx(nn.Sequential(LayerNorm((2, 8))), tmp_path / "c.onnx", (8,))
    with pytest.raises(ConfigError, match="InstanceNorm1d.*2-D tensors, which it takes as one "
                                          "unbatched sample"):
        export_onnx(nn.Sequential(InstanceNorm1d(2)), tmp_path / "d.onnx", (5,))


# ----- PyTorch interop -------------------------------------------------------------------------
def _torch_out(torch, tm, x, train):
    tm.train(train)
    with torch.no_grad():
        return tm(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name,build,shape", MODELS, ids=[m[0] for m in MODELS])
def test_to_torch_and_back(name, build, shape):
    torch = require_torch()
    model = train_steps(build(), shape)
    tm = to_torch(model)
    assert list(tm.state_dict()) == list(model.state_dict())
    x = inputs(shape, n=4, seed=3)
    assert rel_err(_torch_out(torch, tm, x, False), eval_out(model, x)) <= 1e-5
    model.train()
    with nn.no_grad():
        ours = model(x)  # training mode: the running statistics move in both
    assert rel_err(_torch_out(torch, tm, x, True), ours) <= 1e-5
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(tm.state_dict()[key].numpy(), value, rtol=1e-5, atol=1e-7)
    back = from_torch(tm)
    assert list(back.state_dict()) == list(model.state_dict())
    assert [type(m).__name__ for m in back.modules()] == \
        [type(m).__name__ for m in model.modules()]
    assert [m.describe() for m in back.modules()] == [m.describe() for m in model.modules()]
    assert rel_err(eval_out(back, x), eval_out(model, x)) <= 1e-6


def test_from_torch_native_models():
    torch = require_torch()
    torch.manual_seed(0)
    tnn = torch.nn
    tm = tnn.Sequential(tnn.Conv2d(3, 8, 3), tnn.GroupNorm(4, 8), tnn.ReLU(),
                        tnn.InstanceNorm2d(8, affine=True, track_running_stats=True,
                                           momentum=None),
                        tnn.LayerNorm([8, 7, 7], eps=1e-3, bias=False), tnn.Flatten(),
                        tnn.Linear(392, 4))
    with torch.no_grad():
        for m in tm.modules():
            for p in m.parameters(recurse=False):
                p.add_(torch.randn_like(p) * 0.3)
    for m in tm.modules():
        if isinstance(m, tnn.InstanceNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    ours = from_torch(tm)
    assert ours[3].momentum is None and ours[4].bias is None and ours[4].eps == 1e-3
    x = inputs((3, 9, 9), n=3)
    for train in (False, True):
        ref = _torch_out(torch, tm, x, train)
        ours.train(train)
        with nn.no_grad():
            assert rel_err(ours(x), ref) <= 1e-5
    np.testing.assert_array_equal(ours[3].running_mean, tm[3].running_mean.numpy())
    tm64 = tnn.Sequential(tnn.LayerNorm(5), tnn.InstanceNorm1d(2)).double()
    ours64 = from_torch(tm64)
    assert ours64[0].weight.data.dtype == np.float64
    x64 = np.random.default_rng(0).standard_normal((3, 2, 5))
    assert rel_err(eval_out(ours64, x64), _torch_out(torch, tm64, x64, False)) <= 1e-12


@pytest.mark.parametrize("kind", ["frozen", "frozen-trainable", "renorm", "ghost"])
def test_batchnorm_variants_export_as_batchnormalization(kind, tmp_path):
    """In evaluation Batch Renorm, Ghost BN and frozen BN are BatchNorm's affine map."""
    pytest.importorskip("onnxruntime")
    rng = _rng(7)
    bn = {"renorm": lambda: nn.BatchRenorm1d(6, warmup_steps=0, ramp_steps=0, rng=rng,
                                             gamma_init="normal(mean=1, std=0.5)",
                                             beta_init="normal"),
          "ghost": lambda: nn.GhostBatchNorm1d(6, virtual_batch_size=5, rng=rng,
                                               gamma_init="normal(mean=1, std=0.5)",
                                               beta_init="normal")}.get(
        kind, lambda: nn.BatchNorm1d(6, rng=rng, gamma_init="normal(mean=1, std=0.5)",
                                     beta_init="normal"))()
    model = nn.Sequential(nn.Linear(8, 6, rng=_rng(8)), bn, nn.ReLU(), nn.Linear(6, 3, rng=_rng(9)))
    for _ in range(3):  # move the running statistics away from 0 and 1
        model(rng.standard_normal((20, 8)).astype(np.float32) * 2 + 1)
    if kind.startswith("frozen"):
        model = nn.freeze_batchnorm(model, trainable_affine=kind.endswith("trainable"))
    model.eval()
    x = rng.standard_normal((7, 8)).astype(np.float32)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, (8,))
    want = model(x)
    assert rel_err(run_onnx(path, x), want) <= 1e-5
    model.train()  # a frozen BN is the same map in training mode
    if kind.startswith("frozen"):
        assert rel_err(model(x), want) <= 1e-6
