"""gammabeta check --init-args: the inputs get the width (and groups) the arguments give."""

from __future__ import annotations

import inspect
import textwrap

import numpy as np
import pytest

from gammabeta.check import check
from gammabeta.check import cli as check_cli
from gammabeta.check.width import given_width

HELP_EXAMPLE = "64, momentum=0.1"

# a correct BatchNorm(num_features, eps, momentum) with PyTorch's semantics; BUG marks the line
# the buggy variant changes
BATCHNORM = '''
import numpy as np


class BatchNorm:
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.eps, self.momentum = eps, momentum
        self.gamma, self.beta = np.ones(num_features), np.zeros(num_features)
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)
        self.training = True

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def forward(self, x):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        m = x.size // x.shape[1]
        if self.training:
            if m < 2:
                raise ValueError("training needs more than one value per channel")
            mu = x.mean(axis=axes)
            xc = x - mu.reshape(shape)
            var = (xc * xc).mean(axis=axes)
            a = self.momentum
            self.running_mean = (1 - a) * self.running_mean + a * mu
            self.running_var = (1 - a) * self.running_var + a * var * m / (m - 1)
        else:
            xc = x - self.running_mean.reshape(shape)
            var = self.running_var
        inv = 1.0 / np.sqrt(var + self.eps)
        xhat = xc * inv.reshape(shape)
        self.cache = (xhat, inv, axes, shape, m, self.training)
        return self.gamma.reshape(shape) * xhat + self.beta.reshape(shape)

    def backward(self, dout):
        xhat, inv, axes, shape, m, training = self.cache
        self.dbeta = dout.sum(axis=axes)
        self.dgamma = (dout * xhat).sum(axis=axes)
        g = (self.gamma * inv).reshape(shape)
        if not training:
            return g * dout
        mean_term = (self.dbeta / m).reshape(shape)  # BUG
        return g * (dout - mean_term - xhat * (self.dgamma / m).reshape(shape))
'''

# the width lives in a config dict and the parameters are created on the first forward pass:
# neither the arguments nor a fresh instance tell how wide the layer is
CONFIGURED = '''
import numpy as np


class BatchNorm:
    def __init__(self, cfg):
        self.cfg, self.gamma, self.beta = cfg, None, None
        self.running_mean = self.running_var = None
        self.training = True

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def forward(self, x):
        n = self.cfg["width"]
        if self.gamma is None:
            self.gamma, self.beta = np.ones(n), np.zeros(n)
            self.running_mean, self.running_var = np.zeros(n), np.ones(n)
        if self.training:
            mu, var, m = x.mean(0), x.var(0), x.shape[0]
            self.running_mean = 0.9 * self.running_mean + 0.1 * mu
            self.running_var = 0.9 * self.running_var + 0.1 * var * m / (m - 1)
        else:
            mu, var = self.running_mean, self.running_var
        self.inv = 1 / np.sqrt(var + 1e-5)
        self.xhat, self.step = (x - mu) * self.inv, self.training
        return self.gamma * self.xhat + self.beta

    def backward(self, dout):
        self.dgamma, self.dbeta = (dout * self.xhat).sum(0), dout.sum(0)
        d = dout * self.gamma
        if not self.step:
            return d * self.inv
        return self.inv * (d - d.mean(0) - self.xhat * (d * self.xhat).mean(0))
'''

GROUPNORM = '''
import numpy as np


class GroupNorm:
    def __init__(self, num_groups, num_channels, eps=1e-5):
        self.G, self.eps = num_groups, eps
        self.gamma, self.beta = np.ones(num_channels), np.zeros(num_channels)

    def forward(self, x):
        n, c = x.shape[:2]
        xg = x.reshape(n, self.G, -1)
        inv = 1.0 / np.sqrt(xg.var(axis=2, keepdims=True) + self.eps)
        xhat = ((xg - xg.mean(axis=2, keepdims=True)) * inv).reshape(x.shape)
        self.cache = (xhat, inv, x.shape)
        return self.gamma.reshape(1, c, 1, 1) * xhat + self.beta.reshape(1, c, 1, 1)

    def backward(self, dout):
        xhat, inv, shape = self.cache
        n, c = shape[:2]
        self.dgamma = (dout * xhat).sum(axis=(0, 2, 3))
        self.dbeta = dout.sum(axis=(0, 2, 3))
        d = (dout * self.gamma.reshape(1, c, 1, 1)).reshape(n, self.G, -1)
        xh = xhat.reshape(n, self.G, -1)
        dx = inv * (d - d.mean(axis=2, keepdims=True) - xh * (d * xh).mean(axis=2, keepdims=True))
        return dx.reshape(shape)
'''


def _write(tmp_path, name: str, src: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(src))
    return str(path)


def _text(report) -> str:
    return report.to_text()


def test_help_example_passes_on_a_correct_class(tmp_path, capsys):
    path = _write(tmp_path, "mybn.py", BATCHNORM)
    assert check_cli.main([f"{path}:BatchNorm", "--init-args", HELP_EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "x of shape (8, 64)" in out
    assert "C = 64 features, as --init-args say (num_features=64)" in out


def test_help_text_shows_the_example_and_what_it_does(capsys):
    with pytest.raises(SystemExit):
        check_cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"'{HELP_EXAMPLE}' for BatchNorm(num_features, momentum=...)" in out
    assert "as many features" in out


@pytest.mark.parametrize("init_args", ["num_features=16", "16, 1e-5, 0.1", (16,)])
def test_keyword_positional_and_tuple_arguments_give_the_width(tmp_path, init_args):
    report = check(_write(tmp_path, "mybn.py", BATCHNORM) + ":BatchNorm", init_args=init_args)
    assert report.exit_code == 0, _text(report)
    assert "C = 16 features" in report.description
    assert "x of shape (8, 16)" in report["forward_runs"].message


def test_a_buggy_class_still_fails_naming_the_bug(tmp_path):
    buggy = BATCHNORM.replace("(self.dbeta / m).reshape(shape)  # BUG", "0.0")
    report = check(_write(tmp_path, "bad.py", buggy) + ":BatchNorm", init_args=HELP_EXAMPLE)
    assert report.exit_code == 1, _text(report)
    assert "backward_dx" in {f.key for f in report.failures}
    assert "mean path of the backward pass is missing" in report["backward_dx"].cause
    assert report["forward_runs"].status == "pass"
    assert "C = 64 features" in report.description


def test_groups_and_channels_come_from_the_arguments(tmp_path):
    path = _write(tmp_path, "gn.py", GROUPNORM) + ":GroupNorm"
    report = check(path, init_args="4, 32")
    assert report.exit_code == 0, _text(report)
    assert "C = 32 channels in G = 4 groups, as --init-args say (num_channels=32, num_groups=4)" \
        in report.description
    bad = check(path, init_args="num_groups=4, num_channels=30")
    assert bad.exit_code == 2, _text(bad)
    assert "C = 30 channels" in bad["setup"].message
    assert "cannot be split into G = 4 groups" in bad["setup"].message


def test_a_width_the_arguments_do_not_tell_is_reported_not_blamed(tmp_path):
    path = _write(tmp_path, "cfg.py", CONFIGURED) + ":BatchNorm"
    report = check(path, init_args="{'width': 64}")
    assert report.exit_code == 2, _text(report)
    assert not report.failures
    msg = report["setup"].message
    assert "fed C = 3 features" in msg and "cannot be told from --init-args" in msg
    assert "no argument of BatchNorm(cfg) is a feature count the checker knows" in msg
    assert "broadcast" in msg and "may have another width" in msg
    assert "num_features" in " ".join(report["setup"].details)
    # the same class built at the width fed passes, and the report says which width it fed
    ok = check(path, init_args="{'width': 3}")
    assert ok.exit_code == 0, _text(ok)
    assert "fed C = 3 features: the width cannot be told" in ok.description


def test_arguments_that_do_not_fit_the_constructor_are_a_usage_error(tmp_path):
    report = check(_write(tmp_path, "mybn.py", BATCHNORM) + ":BatchNorm", init_args="momentum=0.1")
    assert report.exit_code == 2, _text(report)
    assert "they do not give BatchNorm's 'num_features'" in report.description
    assert "missing a required argument: 'num_features'" in report["setup"].message


class _Shape:
    def __init__(self, normalized_shape, eps=1e-5):
        self.weight = np.ones(normalized_shape)


class _Odd:
    def __init__(self, n_feat: int, num_groups=8):
        pass


class _Kw:
    def __init__(self, **kw):
        self.gamma = np.ones((1, kw["k"], 1, 1))


class _Default:
    def __init__(self, num_features=7, dim=-1, momentum=0.1):
        pass


@pytest.mark.parametrize("cls, args, kwargs, c, groups, source", [
    (_Shape, [[64]], {}, 64, None, "normalized_shape=(64,)"),
    (_Odd, [12], {"num_groups": 3}, 12, 3, "n_feat=12, num_groups=3"),
    (_Odd, [12], {}, 12, 8, "n_feat=12, num_groups=8 by default"),
    (_Kw, [], {"k": 5}, 5, None, "X.gamma has 5 values once built with them"),
    (_Default, [], {"momentum": 0.2}, 7, None, "num_features=7 by default"),
    (_Default, [], {"dim": 5}, 5, None, "dim=5"),
])
def test_given_width_reads_the_arguments(cls, args, kwargs, c, groups, source):
    w = given_width(cls, "X", inspect.signature(cls), args, kwargs)
    assert (w["c"], w["groups"], w["source"]) == (c, groups, source)


def test_given_width_says_why_it_cannot_tell():
    w = given_width(_Kw, "X", inspect.signature(_Kw), [], {"j": 5})
    assert w["c"] is None and "no argument of X(**kw)" in w["why"]
    w = given_width(_Shape, "X", inspect.signature(_Shape), [1, 2, 3], {})
    assert w["c"] is None and "they do not fit X(normalized_shape, eps=1e-05)" in w["why"]
