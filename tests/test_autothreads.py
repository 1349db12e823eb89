"""The thread tuner: it probes each count, keeps the fastest (the fewest threads within the
tolerance), holds it, probes again, restores the settings at the end, and GAMMABETA_THREADS
fixes or disables it. Timed with a fake clock: no test here depends on the machine's speed."""

from __future__ import annotations

import numpy as np
import pytest

from gammabeta import autothreads, backend
from gammabeta.autothreads import ThreadTuner
from gammabeta.errors import ConfigError


class FakeSteps:
    """A clock and a step whose duration depends on the thread count in use."""

    def __init__(self, cost):
        self.now, self.cost, self.used = 0.0, cost, []
        self.threads = None

    def clock(self):
        return self.now

    def apply(self, n):
        self.threads = n

    def run(self, tuner, steps):
        for _ in range(steps):
            tuner.tick()
            self.used.append(tuner.current)
            self.now += self.cost(tuner.current)


def test_probe_keeps_the_fastest_count_then_holds_it():
    f = FakeSteps(lambda n: {2: 0.010, 1: 0.004}[n])  # a loaded machine: 1 thread wins
    t = ThreadTuner(counts=(2, 1), probe_steps=3, hold_seconds=1.0, clock=f.clock,
                    apply=f.apply)
    f.run(t, 8)  # the probe: 4 steps at 2 (the first counted too: no switch), 4 at 1
    assert f.used == [2, 2, 2, 2, 1, 1, 1, 1]
    f.run(t, 100)
    assert set(f.used[8:]) == {1} and f.threads == 1
    assert t.summary() == {"2": 4, "1": 103}


def test_reprobes_after_the_hold_and_follows_the_load():
    load = {"busy": True}
    f = FakeSteps(lambda n: (0.010 if n == 2 else 0.004) if load["busy"] else
                  (0.002 if n == 2 else 0.004))
    t = ThreadTuner(counts=(2, 1), probe_steps=2, hold_seconds=0.5, clock=f.clock,
                    apply=f.apply)
    f.run(t, 150)
    assert f.used[-1] == 1
    load["busy"] = False  # the other program ended: the next probe brings 2 threads back
    f.run(t, 600)
    assert f.used[-1] == 2 and f.threads == 2


def test_one_fast_step_does_not_win_a_probe():
    """The median step decides: two threads with one lucky step among slow ones lose to one
    steady thread (the fastest step alone would have picked two)."""
    seen = {2: 0}

    def cost(n):
        if n == 1:
            return 0.006
        seen[2] += 1
        return 0.003 if seen[2] == 3 else 0.010

    f = FakeSteps(cost)
    t = ThreadTuner(counts=(2, 1), probe_steps=3, hold_seconds=10.0, clock=f.clock,
                    apply=f.apply)
    f.run(t, 12)
    assert f.used[:8] == [2, 2, 2, 2, 1, 1, 1, 1] and f.used[-1] == 1 and f.threads == 1


def test_ties_go_to_fewer_threads_and_the_switch_step_is_not_counted():
    f = FakeSteps(lambda n: 0.0100 if n == 2 else 0.0102)  # within 5%: one thread suffices
    t = ThreadTuner(counts=(2, 1), probe_steps=2, hold_seconds=10.0, clock=f.clock,
                    apply=f.apply)
    f.run(t, 20)
    assert f.used[-1] == 1
    slow_first = FakeSteps(lambda n: 0.004)
    t = ThreadTuner(counts=(2, 1), probe_steps=2, hold_seconds=10.0, clock=slow_first.clock,
                    apply=slow_first.apply)
    for i in range(12):  # the first step after switching to 1 thread is slow: not counted
        t.tick()
        slow_first.now += 0.5 if (i == 3) else (0.003 if t.current == 1 else 0.004)
    assert t.current == 1


def test_rest_excludes_the_time_between_epochs():
    f = FakeSteps(lambda n: 0.004 if n == 1 else 0.003)
    t = ThreadTuner(counts=(2, 1), probe_steps=2, hold_seconds=10.0, clock=f.clock,
                    apply=f.apply)
    f.run(t, 3)
    t.rest()
    f.now += 100.0  # an evaluation: neither counted nor a step
    f.run(t, 5)
    assert t.current == 2 and sum(t.steps.values()) == 7


def test_close_restores_blas_and_kernel_threads():
    pytest.importorskip("threadpoolctl")
    before = autothreads.get_threads()
    t = ThreadTuner(counts=(2, 1))
    t._use(1)
    assert backend.kernel_threads(8) == 1
    assert all(n == 1 for n in autothreads.get_threads()[0])
    t.close()
    assert autothreads.get_threads() == before


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("off", "off"), ("3", 3),
                                            (" AUTO ", "auto")])
def test_setting_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("GAMMABETA_THREADS", value)
    assert autothreads.threads_setting() == expected


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_a_bad_setting_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("GAMMABETA_THREADS", value)
    with pytest.raises(ConfigError, match="GAMMABETA_THREADS"):
        autothreads.threads_setting()


def test_fit_records_the_thread_counts(monkeypatch):
    from gammabeta import nn, optim
    from gammabeta.train import fit

    monkeypatch.setenv("GAMMABETA_THREADS", "auto")
    monkeypatch.setattr(autothreads, "usable_cores", lambda: 2)
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(4, 8, rng=rng), nn.ReLU(), nn.Linear(8, 2, rng=rng))
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    before = autothreads.get_threads()
    hist = fit(model, x, y, optimizer=optim.SGD(model.parameters(), lr=0.1), epochs=2,
               batch_size=16, rng=rng)
    assert sum(hist.threads.values()) == 8  # 2 epochs of 4 steps, each at its count
    assert autothreads.get_threads() == before
