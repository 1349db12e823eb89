"""gammabeta.sklearn.BNClassifier: scikit-learn's estimator checks, model selection, labels,
determinism, parameter errors and the module's doctest."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import gammabeta.sklearn as gsk
from gammabeta.sklearn import EXPECTED_FAILED_CHECKS, BNClassifier


@pytest.fixture(autouse=True)
def one_blas_thread():
    """One BLAS thread: on a busy 2-core machine OpenBLAS's second thread makes these small
    matrix products up to 20x slower (results are the same either way)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x, y


def blobs(n=120, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return centers[y] + rng.standard_normal((n, d)), y


def small(**kw):
    return BNClassifier(**{"hidden": (16,), "epochs": 5, "random_state": 0, **kw})


def weights(clf):
    return [p.data.copy() for p in clf.model_.parameters()]


def test_check_estimator_passes_every_applicable_check():
    results = check_estimator(BNClassifier(epochs=10, hidden=(16,)), on_fail=None,
                              on_skip=None, expected_failed_checks=EXPECTED_FAILED_CHECKS)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert failed == []
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert {"check_classifiers_train", "check_fit_idempotent", "check_estimators_pickle",
            "check_methods_subset_invariance", "check_classifiers_classes"} <= passed
    assert len(passed) >= 50


def test_cross_val_score_on_digits(digits):
    x, y = digits
    pipe = make_pipeline(StandardScaler(), BNClassifier(hidden=(64,), epochs=5, random_state=0))
    scores = cross_val_score(pipe, x, y, cv=5)
    assert scores.shape == (5,)
    assert scores.mean() > 0.88  # measured 0.92 (seeds 0 and 1); chance is 0.1


def test_grid_search_over_gamma_init(digits):
    x, y = digits
    x = x[:600] / 16.0
    grid = GridSearchCV(small(hidden=(32,)), {"gamma_init": ["ones", 0.5, "uniform"]}, cv=3)
    grid.fit(x, y[:600])
    assert grid.best_params_["gamma_init"] in ["ones", 0.5, "uniform"]
    assert len(grid.cv_results_["mean_test_score"]) == 3
    assert grid.best_score_ > 0.8
    assert grid.best_estimator_.get_params()["gamma_init"] == grid.best_params_["gamma_init"]


def test_clone_gives_identical_params_and_an_unfitted_copy():
    clf = BNClassifier(hidden=(8, 4), gamma_init=0.5, lr=0.01, random_state=3)
    clf.fit(*blobs())
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "model_") and hasattr(clf, "model_")


def test_same_random_state_same_predictions_different_seeds_differ():
    x, y = blobs()
    a, b, c = small().fit(x, y), small().fit(x, y), small(random_state=1).fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    for wa, wb in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(weights(a), weights(c),
                                                            strict=True))


def test_random_state_generator_and_none():
    x, y = blobs()
    gen = small(random_state=np.random.default_rng(7)).fit(x, y)
    ref = small(random_state=7).fit(x, y)
    for wg, wr in zip(weights(gen), weights(ref), strict=True):
        np.testing.assert_array_equal(wg, wr)  # a Generator is used as is
    u1, u2 = small(random_state=None).fit(x, y), small(random_state=None).fit(x, y)
    assert not np.array_equal(weights(u1)[0], weights(u2)[0])  # unseeded: each fit differs


def test_string_and_offset_labels_round_trip():
    x, y = blobs()
    names = np.array(["cat", "dog", "emu"])
    clf = small(epochs=10).fit(x, names[y])
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    pred = clf.predict(x)
    assert set(pred) <= set(names)
    assert np.mean(pred == names[y]) > 0.9
    assert clf.score(x, names[y]) == np.mean(pred == names[y])
    clf2 = small(epochs=10).fit(x, y + 5)
    np.testing.assert_array_equal(clf2.classes_, [5, 6, 7])
    np.testing.assert_array_equal(clf2.predict(x) - 5, np.argmax(clf2.predict_proba(x), 1))


def test_predict_proba_is_eval_mode_softmax():
    x, y = blobs()
    clf = small().fit(x, y)
    p = clf.predict_proba(x)
    assert p.shape == (len(x), 3) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (p >= 0).all()
    # eval mode (running statistics, no dropout): one sample alone gets the same probabilities
    np.testing.assert_allclose(clf.predict_proba(x[:1]), p[:1], rtol=1e-6)
    z = clf.decision_function(x)
    np.testing.assert_array_equal(np.argmax(z, 1), np.argmax(p, 1))


def test_fitted_attributes_and_history():
    x, y = blobs()
    clf = small(epochs=4).fit(x, y)
    assert clf.n_features_in_ == 5 and clf.n_iter_ == 4 and len(clf.history_) == 4
    assert [r["epoch"] for r in clf.history_] == [1, 2, 3, 4]
    assert {"train_loss", "train_accuracy", "lr"} <= set(clf.history_[0])
    assert all(w.dtype == np.float32 for w in weights(clf))


def test_batch_size_larger_than_the_data_and_trailing_single_sample():
    x, y = blobs(n=21)
    clf = small(batch_size=1000).fit(x, y)  # clipped to 21
    assert clf.config_.batch_size == 21
    assert np.mean(clf.predict(x) == y) > 0.8
    # 21 = 10 + 10 + a lone sample: BatchNorm never sees a batch of one (it would raise)
    clf = small(batch_size=10, epochs=8).fit(x, y)
    assert clf.n_iter_ == 8 and np.mean(clf.predict(x) == y) > 0.8


@pytest.mark.parametrize("param, value", [
    ("hidden", (0,)), ("lr", -1), ("gamma_init", "nope"), ("dropout", 1.0),
    ("optimizer", "rmsprop"), ("schedule", "linear"), ("batch_size", 1), ("epochs", 0),
    ("act", "swish"), ("norm", "weight"), ("random_state", "seed"), ("random_state", -1),
])
def test_bad_params_raise_value_error_naming_the_param(param, value):
    clf = BNClassifier(**{param: value})  # __init__ only stores
    assert clf.get_params()[param] is value
    with pytest.raises(ValueError, match=param):
        clf.fit(*blobs(n=30))


def test_one_class_is_refused():
    x, _ = blobs(n=10)
    with pytest.raises(ValueError, match="2 classes"):
        small().fit(x, np.zeros(10))


def test_verbose_prints_one_line_per_epoch(capsys):
    small(epochs=3, verbose=True).fit(*blobs())
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3: train_loss=")


def test_module_docstring_example_runs():
    result = doctest.testmod(gsk, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6
    assert result.failed == 0
