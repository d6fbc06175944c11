"""Split finding and the plaintext reference booster (isthmus.tree.tree, booster): no crypto, no channel."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.metrics import r2_score, roc_auc_score

from isthmus.errors import ConfigError
from isthmus.tree.booster import SecureBoostReference
from isthmus.tree.gh import UNIT_SCALE
from isthmus.tree.params import BoostParams
from isthmus.tree.tree import Histogram, best_split


def one_feature_histogram(grad, hess, missing=(0, 0)):
    """Histogram of one feature with the given per-bin integer sums plus a missing-value bin."""
    return Histogram(np.array([0]), np.array([list(grad) + [missing[0]]]), np.array([list(hess) + [missing[1]]]))


def test_best_split_separates_opposite_gradients():
    hist = one_feature_histogram([-10, -10, 10, 10], [5, 5, 5, 5])
    split = best_split(hist, np.array([4]), 0, 20, UNIT_SCALE, BoostParams(reg_lambda=1.0))
    assert (split.bin, split.default_left) == (1, False)
    assert split.gain == pytest.approx(400 / 11 * 2 - 0)
    assert (split.left_grad, split.left_hess) == (-20, 10)


def test_missing_values_take_the_direction_that_gains_more():
    # missing rows carry gradients like the right-hand side, then like the left-hand side
    right_like = one_feature_histogram([-10, 10], [5, 5], missing=(8, 4))
    assert best_split(right_like, np.array([2]), 8, 14, UNIT_SCALE, BoostParams()).default_left is False
    left_like = one_feature_histogram([-10, 10], [5, 5], missing=(-8, 4))
    assert best_split(left_like, np.array([2]), -8, 14, UNIT_SCALE, BoostParams()).default_left is True


def test_constraints_forbid_splits():
    hist = one_feature_histogram([-10, 10], [1, 1])
    assert best_split(hist, np.array([2]), 0, 2, UNIT_SCALE, BoostParams(min_child_weight=1.5)) is None
    assert best_split(hist, np.array([2]), 0, 2, UNIT_SCALE, BoostParams(min_split_gain=1e3)) is None
    assert best_split(hist, np.array([1]), 0, 2, UNIT_SCALE, BoostParams()) is None  # one value bin: no threshold


def test_params_are_checked():
    with pytest.raises(ConfigError, match="max_depth"):
        BoostParams(max_depth=0)
    with pytest.raises(ConfigError, match="validation_fraction"):
        BoostParams(early_stopping_rounds=3)


@pytest.fixture(scope="module")
def breast():
    X, y = load_breast_cancer(return_X_y=True)
    return [X[:, :10], X[:, 10:]], y


def test_reference_learns_breast_cancer(breast):
    parts, y = breast
    model = SecureBoostReference(n_trees=10, max_depth=3).fit(parts, y)
    proba = model.predict_proba(parts)
    assert proba.shape == (len(y), 2)
    assert roc_auc_score(y, proba[:, 1]) > 0.99
    assert (model.predict(parts) == y).mean() > 0.95
    importance = model.feature_importance()
    assert set(importance) == {"guest", "host1"}
    assert sum(importance["guest"]["split_count"]) + sum(importance["host1"]["split_count"]) == sum(
        sum(1 for left in tree.left if left >= 0) for tree in model.ensemble_.trees)


def test_column_blocks_do_not_change_the_model(breast):
    """Splitting the columns differently between parties grows the same trees: ties go to the first column."""
    parts, y = breast
    joined = np.hstack(parts)
    one = SecureBoostReference(n_trees=3).fit([joined], y).predict_proba([joined])
    two = SecureBoostReference(n_trees=3).fit(parts, y).predict_proba(parts)
    np.testing.assert_allclose(one, two)


def test_missing_values_follow_the_learned_default():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    x = rng.normal(size=2000) + 2 * y
    x[(y == 1) & (rng.random(2000) < 0.5)] = np.nan  # missing means "positive", mostly
    parts = [x[:, None], rng.normal(size=(2000, 1))]
    model = SecureBoostReference(n_trees=5, max_depth=2).fit(parts, y)
    proba = model.predict_proba([np.array([[np.nan], [-3.0]]), np.zeros((2, 1))])[:, 1]
    assert proba[0] > 0.8
    assert proba[1] < 0.2


def test_multiclass_softmax():
    X, y = load_iris(return_X_y=True)
    model = SecureBoostReference(n_trees=5, max_depth=3, objective="multiclass").fit([X[:, :2], X[:, 2:]], y)
    proba = model.predict_proba([X[:, :2], X[:, 2:]])
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (model.predict([X[:, :2], X[:, 2:]]) == y).mean() > 0.95
    assert len(model.ensemble_.trees) == 15


def test_regression():
    X, y = load_diabetes(return_X_y=True)
    model = SecureBoostReference(n_trees=20, max_depth=3, objective="regression").fit([X[:, :5], X[:, 5:]], y)
    assert r2_score(y, model.predict([X[:, :5], X[:, 5:]])) > 0.6
    with pytest.raises(ConfigError):
        model.predict_proba([X[:, :5], X[:, 5:]])


def test_early_stopping_keeps_the_best_round():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(400, 5)), rng.integers(0, 2, 400)  # noise: validation loss soon rises
    model = SecureBoostReference(n_trees=50, max_depth=4, learning_rate=0.5, validation_fraction=0.3,
                                 early_stopping_rounds=3).fit([X[:, :2], X[:, 2:]], y)
    losses = model.ensemble_.validation_loss
    best = int(np.argmin(losses))
    assert len(losses) == best + 4 < 50
    assert len(model.ensemble_.trees) == best + 1


def test_subsampling_is_reproducible_and_matters(breast):
    parts, y = breast
    params = {"n_trees": 4, "subsample": 0.7, "colsample_bytree": 0.5}
    first = SecureBoostReference(seed=1, **params).fit(parts, y).predict_proba(parts)
    again = SecureBoostReference(seed=1, **params).fit(parts, y).predict_proba(parts)
    other = SecureBoostReference(seed=2, **params).fit(parts, y).predict_proba(parts)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
