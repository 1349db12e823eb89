"""Constructor arguments are validated; loaded state (state dicts, checkpoints, training
states) is checked for values, not only keys and shapes; running statistics that overflow
during training stop (or skip) the step like a non-finite gradient."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gammabeta.nn as nn
from gammabeta import optim
from gammabeta.checkpoint import load_training_state, save_training_state
from gammabeta.errors import CheckpointError, ConfigError, NonFiniteError, StateDictError
from gammabeta.io import load_checkpoint, save_checkpoint
from gammabeta.train import fit

NAN, INF = float("nan"), float("inf")


# ----- constructor arguments -------------------------------------------------------------------
BAD_ARGS = [
    # (layer, args, kwargs, argument name, how the bad value appears)
    *[(bn, (4,), {"eps": v}, "eps", s) for bn in (nn.BatchNorm1d, nn.BatchNorm2d)
      for v, s in ((NAN, "nan"), (INF, "inf"), (0, "0"), (-1, "-1"), ("x", "'x'"),
                   ("1e-5", "'1e-5'"))],
    *[(bn, (v,), {}, "num_features", s) for bn in (nn.BatchNorm1d, nn.BatchNorm2d)
      for v, s in ((2.7, "2.7"), ("4", "'4'"), (True, "True"), (0, "0"), (4.0, "4.0"))],
    *[(bn, (4,), {"momentum": v}, "momentum", s) for bn in (nn.BatchNorm1d, nn.BatchNorm2d)
      for v, s in (("0.1", "'0.1'"), (1.5, "1.5"), (-0.1, "-0.1"), (NAN, "nan"))],
    (nn.BatchNorm1d, (4,), {"affine": "yes"}, "affine", "'yes'"),
    (nn.BatchNorm2d, (4,), {"track_running_stats": 1}, "track_running_stats", "1"),
    (nn.BatchNorm1d, (4,), {"dtype": np.int32}, "dtype", "int32"),
    (nn.BatchNorm1d, (4,), {"rng": 0}, "rng", "int"),
    (nn.Linear, (2.5, 3), {}, "in_features", "2.5"),
    (nn.Linear, (3, "4"), {}, "out_features", "'4'"),
    (nn.Linear, (3, 0), {}, "out_features", "0"),
    (nn.Linear, (False, 3), {}, "in_features", "False"),
    (nn.Linear, (3, 4), {"bias": "no"}, "bias", "'no'"),
    (nn.Conv2d, (3.0, 4, 3), {}, "in_channels", "3.0"),
    (nn.Conv2d, (3, 4, 2.5), {}, "kernel_size", "2.5"),
    (nn.Conv2d, (3, 4, True), {}, "kernel_size", "True"),
    (nn.Conv2d, (3, 4, 3), {"stride": (1, 0)}, "stride", "(1, 0)"),
    (nn.Conv2d, (3, 4, 3), {"bias": None}, "bias", "None"),
    (nn.Conv1d, (3, 4, 3), {"groups": 0}, "groups", "0"),
    (nn.Dropout, (1.5,), {}, "p", "1.5"),
    (nn.Dropout, (NAN,), {}, "p", "nan"),
    (nn.Dropout, ("0.5",), {}, "p", "'0.5'"),
    (nn.LeakyReLU, (INF,), {}, "negative_slope", "inf"),
    (nn.LeakyReLU, ("0.1",), {}, "negative_slope", "'0.1'"),
    (nn.GELU, ("erf",), {}, "approximate", "'erf'"),
    (nn.Flatten, (1.5,), {}, "start_dim", "1.5"),
    (nn.Unflatten, (1, (2, 0)), {}, "unflattened_size", "(2, 0)"),
    (nn.Unflatten, (1, 4), {}, "unflattened_size", "4"),
    (nn.MaxPool2d, (2.0,), {}, "kernel_size", "2.0"),
    (nn.AvgPool1d, (2,), {"count_include_pad": "no"}, "count_include_pad", "'no'"),
    (nn.AdaptiveAvgPool2d, (1.5,), {}, "output_size", "1.5"),
    (nn.CrossEntropyLoss, (), {"label_smoothing": 2}, "label_smoothing", "2"),
    (nn.CrossEntropyLoss, (), {"label_smoothing": "0.1"}, "label_smoothing", "'0.1'"),
    (nn.CrossEntropyLoss, (), {"weight": [1.0, NAN]}, "weight", "nan"),
    (nn.CrossEntropyLoss, (), {"ignore_index": 1.5}, "ignore_index", "1.5"),
    (nn.MSELoss, (), {"reduction": "avg"}, "reduction", "'avg'"),
]


@pytest.mark.parametrize("layer,args,kwargs,name,shown", BAD_ARGS,
                         ids=[f"{c[0].__name__}-{c[3]}-{c[4]}" for c in BAD_ARGS])
def test_bad_constructor_argument_is_a_one_line_config_error(layer, args, kwargs, name, shown):
    with pytest.raises(ConfigError) as info:
        layer(*args, **kwargs)
    msg = str(info.value)
    assert msg.startswith(layer.__name__ + ":"), msg
    assert name in msg and shown in msg and "expected" in msg, msg
    assert "\n" not in msg


def test_residual_and_sequential_refuse_non_modules_with_a_config_error():
    with pytest.raises(ConfigError, match="Residual: block is a str; expected a Module"):
        nn.Residual("conv")
    with pytest.raises(TypeError, match="shortcut is a int; expected a Module or None"):
        nn.Residual(nn.Identity(), 3)  # still a TypeError too, for callers that catch those
    with pytest.raises(ConfigError, match="Sequential: layer 1 is a ufunc; expected a Module"):
        nn.Sequential(nn.ReLU(), np.tanh)


def test_valid_arguments_still_work():
    i = np.int64
    bn = nn.BatchNorm1d(i(4), eps=1e-3, momentum=None)
    assert (bn.num_features, bn.eps, bn.momentum) == (4, 1e-3, None)
    assert type(bn.num_features) is int
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    bn(x)
    bn(x)
    assert int(bn.num_batches_tracked) == 2  # cumulative average: α = 1/2 on the 2nd batch
    assert nn.BatchNorm2d(np.int32(3), momentum=np.float32(0.5), affine=np.bool_(False)) \
        .momentum == pytest.approx(0.5)
    assert nn.BatchNorm1d(3, momentum=0, eps=1).momentum == 0.0
    lin = nn.Linear(i(3), np.uint8(2), bias=False, dtype="float64")
    assert lin.weight.data.shape == (2, 3) and lin.weight.data.dtype == np.float64
    conv = nn.Conv2d(i(2), 4, (i(3), 3), stride=i(1), padding="same", groups=i(2))
    assert conv.kernel_size == (3, 3) and conv.padding == "same"
    assert nn.Dropout(1.0).p == 1.0 and nn.Dropout(0).p == 0.0
    assert nn.LeakyReLU(-0.5).negative_slope == -0.5
    assert nn.Flatten(0, -2).end_dim == -2 and nn.Unflatten(-1, [2, 3]).unflattened_size == (2, 3)
    assert nn.AdaptiveAvgPool2d((None, i(2))).output_size == (None, 2)
    assert nn.MaxPool1d(i(2), stride=None).stride == (2,)
    loss = nn.CrossEntropyLoss(label_smoothing=1, weight=np.array([1, 2]), ignore_index=i(-1))
    assert loss.label_smoothing == 1.0 and loss.ignore_index == -1


# ----- load_state_dict checks values ----------------------------------------------------------
def _model():
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Linear(3, 4, rng=rng), nn.BatchNorm1d(4), nn.ReLU(),
                         nn.Linear(4, 2, rng=rng))


def _bad_state(key, index, value):
    sd = _model().state_dict()
    sd[key] = np.array(sd[key], copy=True)
    sd[key][index] = value
    return sd


@pytest.mark.parametrize("key,index,value,words", [
    ("0.weight", (1, 2), NAN, ["'0.weight' holds 1 non-finite values", "index (1, 2)",
                               "expected finite numbers"]),
    ("3.weight", (0, 0), INF, ["'3.weight'", "non-finite", "index (0, 0)"]),
    ("1.running_var", (2,), -0.5, ["'1.running_var' holds a negative value -0.5",
                                   "index (2,)", "expected variances >= 0"]),
    ("1.running_var", (1,), NAN, ["'1.running_var'", "non-finite", "index (1,)"]),
    ("1.num_batches_tracked", (), -1, ["'1.num_batches_tracked' holds -1",
                                       "expected a whole number"]),
])
def test_load_state_dict_refuses_bad_values_and_leaves_the_model_unchanged(key, index, value,
                                                                            words):
    model = _model()
    model[1].running_mean[...] = 0.25  # something a wrong partial load would overwrite
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(StateDictError) as info:
        model.load_state_dict(_bad_state(key, index, value))
    msg = str(info.value)
    assert msg.startswith("Sequential.load_state_dict: ")
    for w in words:
        assert w in msg, msg
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("value,shown", [(2.5, "2.5"), (-3.0, "-3.0"), (True, "True"),
                                         (1e300, "1e+300")])
def test_num_batches_tracked_must_be_a_whole_number(value, shown):
    sd = _model().state_dict()
    sd["1.num_batches_tracked"] = np.array(value)
    with pytest.raises(StateDictError, match=r"'1.num_batches_tracked' holds .*whole number"):
        _model().load_state_dict(sd)
    sd["1.num_batches_tracked"] = np.array(7.0)  # a whole float is accepted, stored as int
    model = _model()
    model.load_state_dict(sd)
    assert model[1].num_batches_tracked.dtype == np.int64
    assert int(model[1].num_batches_tracked) == 7


def test_float64_values_beyond_float32_and_non_arrays_are_refused():
    sd = _model().state_dict()
    sd["0.bias"] = np.array([1.0, 1e39, 2.0, 3.0])
    with pytest.raises(StateDictError, match=r"'0.bias' holds 1 values beyond float32's range"):
        _model().load_state_dict(sd)
    sd = _model().state_dict()
    sd["0.bias"] = [[1.0], [1.0, 2.0]]  # ragged: not an array
    with pytest.raises(StateDictError, match="'0.bias'"):
        _model().load_state_dict(sd)
    with pytest.raises(StateDictError, match="got a list; expected a dict"):
        _model().load_state_dict([("0.bias", np.zeros(4))])


def test_valid_state_dict_still_loads():
    src, dst = _model(), _model()
    src[0].weight.data[...] = 0.5
    src[1].running_var[...] = 0.0  # a constant feature: variance 0 is valid
    src[1].num_batches_tracked = np.array(5, dtype=np.int64)
    dst.load_state_dict(src.state_dict())
    assert np.all(dst[0].weight.data == 0.5) and np.all(dst[1].running_var == 0)
    assert int(dst[1].num_batches_tracked) == 5


def test_safetensors_checkpoint_with_a_negative_running_var_is_refused(tmp_path):
    sd = _model().state_dict()
    sd["1.running_var"][3] = -2.0
    path = save_checkpoint(tmp_path / "bad.safetensors", sd)
    tensors, _ = load_checkpoint(path)
    model = _model()
    with pytest.raises(StateDictError, match=r"'1.running_var' holds a negative value -2"):
        model.load_state_dict(tensors)
    assert np.all(model[1].running_var == 1.0)


# ----- training: running statistics that overflow ----------------------------------------------
def _huge_data():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 3)) * 1e30).astype(np.float32)  # finite in float32
    return x, rng.integers(0, 2, 32)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_running_var_overflow_stops_training_with_a_clear_error():
    x, y = _huge_data()
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteError) as info:
        fit(model, x, y, optimizer=opt, epochs=1, batch_size=16, rng=np.random.default_rng(1))
    msg = str(info.value)
    assert msg.startswith("epoch 1, step 1: '1.running_var' became non-finite (inf)"), msg
    assert "max |x| in the input batch = " in msg and "scale the data" in msg


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_running_var_overflow_with_skip_step_restores_the_buffers():
    x, y = _huge_data()
    model = _model()
    w0 = model[0].weight.data.copy()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteError, match="all 2 steps were skipped"):  # nothing learned
        fit(model, x, y, optimizer=opt, epochs=1, batch_size=16,
            rng=np.random.default_rng(1), on_nonfinite="skip-step")
    assert np.all(model[1].running_var == 1.0) and int(model[1].num_batches_tracked) == 0
    assert np.array_equal(model[0].weight.data, w0)  # skipped steps update nothing


# ----- training-state checkpoints -------------------------------------------------------------
def _training_state(tmp_path):
    model = _model()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    x = np.random.default_rng(2).standard_normal((8, 3)).astype(np.float32)
    loss = nn.CrossEntropyLoss()
    loss(model(x), np.array([0, 1] * 4))
    model.backward(loss.backward())
    opt.step()
    loop = {"epoch": 1, "batch": 1, "step": 1, "sums": [0.5, 3, 8, 0]}
    path = save_training_state(tmp_path / "state.safetensors", model, opt, None, loop)
    return path, model


def _rewrite(path, tensors=None, loop=None):
    t, meta = load_checkpoint(path)
    t.update(tensors or {})
    if loop is not None:
        meta["loop"] = json.dumps({**json.loads(meta["loop"]), **loop})
    save_checkpoint(path, t, meta)


def _fresh():
    model = _model()
    return model, optim.Adam(model.parameters(), lr=1e-2)


def test_training_state_round_trip_still_works(tmp_path):
    path, trained = _training_state(tmp_path)
    model, opt = _fresh()
    loop, _ = load_training_state(path, model, opt, None)
    assert loop["step"] == 1
    assert np.array_equal(model[0].weight.data, trained[0].weight.data)


def test_training_state_with_non_finite_adam_moments_is_refused(tmp_path):
    path, _ = _training_state(tmp_path)
    t, _ = load_checkpoint(path)
    key = next(k for k in t if k.startswith("optim.") and k.endswith("exp_avg_sq"))
    bad = t[key].copy()
    bad.flat[1] = np.nan
    _rewrite(path, {key: bad})
    model, opt = _fresh()
    w0 = model[0].weight.data.copy()
    with pytest.raises(CheckpointError, match=rf"optimizer state '{key}' holds 1 non-finite"):
        load_training_state(path, model, opt, None)
    assert np.array_equal(model[0].weight.data, w0) and not opt.state


@pytest.mark.parametrize("loop,words", [
    ({"epoch": -1}, "loop epoch=-1; expected an int >= 1"),
    ({"step": 2.5}, "loop step=2.5; expected an int >= 0"),
    ({"batch": "3"}, "loop batch='3'; expected an int >= 0"),
    ({"sums": [0.5, -1, 8, 0]}, "loop sums="),
    ({"rng": {"bit_generator": "PCG64", "state": "x"}}, "loop rng is not a random generator"),
])
def test_training_state_with_bad_loop_metadata_is_refused(tmp_path, loop, words):
    path, _ = _training_state(tmp_path)
    _rewrite(path, loop=loop)
    model, opt = _fresh()
    with pytest.raises(CheckpointError) as info:
        load_training_state(path, model, opt, None)
    assert words in str(info.value) and str(path) in str(info.value)


def test_training_state_with_a_bad_model_value_names_the_file(tmp_path):
    path, _ = _training_state(tmp_path)
    t, _ = load_checkpoint(path)
    bad = t["model.1.running_var"].copy()
    bad[0] = -1.0
    _rewrite(path, {"model.1.running_var": bad})
    model, opt = _fresh()
    with pytest.raises(StateDictError, match=r"state.safetensors: .*'1.running_var' holds a "
                                             r"negative value -1"):
        load_training_state(path, model, opt, None)
    assert not opt.state
