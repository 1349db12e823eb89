"""The checker never crashes or hangs on hostile code: closed pipes, forks, memory, bad limits."""

from __future__ import annotations

import os
import textwrap
import time

import pytest

from gammabeta.check import check
from gammabeta.check import cli as check_cli
from gammabeta.errors import ConfigError

HOSTILE = '''
import os, sys, time
import numpy as np


def closespipe_bn_forward(x, gamma, beta, bn_param):
    os.close(1)  # the checker's protocol pipe is a duplicate; close everything we can
    for fd in range(3, 64):
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        time.sleep(0.1)


def closespipe_bn_backward(dout, cache):
    return dout, dout.sum(0), dout.sum(0)


def forks_bn_forward(x, gamma, beta, bn_param):
    if os.fork() == 0:
        open(os.environ["GB_TEST_MARK"], "w").write(str(os.getpid()))
        time.sleep(300)
        os._exit(0)
    time.sleep(300)


def forks_bn_backward(dout, cache):
    return dout, dout.sum(0), dout.sum(0)


def hog_bn_forward(x, gamma, beta, bn_param):
    blocks = []
    while True:
        blocks.append(np.ones(2**27))


def hog_bn_backward(dout, cache):
    return dout, dout.sum(0), dout.sum(0)


def aslist_bn_forward(x, gamma, beta, bn_param):
    mu, var = x.mean(0), x.var(0)
    return ((x - mu) / np.sqrt(var + 1e-5) * gamma + beta).tolist(), None


def aslist_bn_backward(dout, cache):
    return dout, dout.sum(0), dout.sum(0)
'''


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "hostile.py"
    path.write_text(textwrap.dedent(HOSTILE))
    return path


def test_closed_pipe_and_running_on_is_stopped(hostile):
    t0 = time.perf_counter()
    r = check(f"{hostile}:closespipe_bn_forward", timeout=3)
    assert time.perf_counter() - t0 < 30
    assert r["forward_runs"].status == "fail", r.to_text()


def test_forked_grandchildren_are_killed(hostile, tmp_path, monkeypatch):
    mark = tmp_path / "pid"
    monkeypatch.setenv("GB_TEST_MARK", str(mark))
    r = check(f"{hostile}:forks_bn_forward", timeout=2)
    assert "timed out after 2 s" in r["forward_runs"].message
    pid = int(mark.read_text())
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild {pid} outlived the check")


def test_memory_is_limited_with_a_clear_line(hostile):
    r = check(f"{hostile}:hog_bn_forward", memory="1G", timeout=30)
    f = r["forward_runs"]
    assert f.status == "fail" and "ran out of memory" in f.message, r.to_text()
    assert "--memory" in f.message


def test_a_list_output_is_not_an_array(hostile):
    r = check(f"{hostile}:aslist_bn_forward")
    assert r["forward_runs"].status == "fail"
    assert "expected a NumPy array" in r["forward_runs"].message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0, -1, "x"])
def test_timeout_must_be_finite_and_positive(hostile, value):
    with pytest.raises(ConfigError, match="--timeout"):
        check(f"{hostile}:aslist_bn_forward", timeout=value)


def test_bad_limits_from_the_command_line_exit_2(hostile, capsys):
    assert check_cli.main([f"{hostile}:aslist_bn_forward", "--timeout", "inf"]) == 2
    assert check_cli.main([f"{hostile}:aslist_bn_forward", "--memory", "lots"]) == 2
    err = capsys.readouterr().err
    assert "--timeout" in err and "--memory" in err and "Traceback" not in err
