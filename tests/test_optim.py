"""Optimisers: convergence, the decay schedule, first steps worked by hand, and penalties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Lasso, Ridge

from isthmus.errors import ConfigError
from isthmus.ml.optim import SGD, Adam, RMSProp, apply_penalty, make_optimizer

# f(w) = 1/2 sum_i A_i (w_i - C_i)^2, badly conditioned on purpose; its gradient is A (w - C).
A = np.array([1.0, 4.0, 0.25])
C = np.array([1.0, -2.0, 3.0])


@pytest.mark.parametrize(
    ("name", "options"),
    [("sgd", {"learning_rate": 0.4}), ("adam", {"learning_rate": 0.1, "decay": 0.01}),
     ("rmsprop", {"learning_rate": 0.05, "decay": 0.01, "decay_sqrt": False})],
)
def test_converges_on_a_quadratic(name, options):
    optimizer = make_optimizer(name, **options)
    w = np.zeros(3)
    for _ in range(2000):
        w = optimizer.step(w, A * (w - C))
    np.testing.assert_allclose(w, C, atol=1e-6)
    assert optimizer.steps == 2000


@pytest.mark.parametrize("decay_sqrt", [True, False])
def test_decay_schedule_matches_fate(decay_sqrt):
    optimizer = SGD(0.1, decay=0.5, decay_sqrt=decay_sqrt)
    if decay_sqrt:
        expected = [0.1, 0.1 / np.sqrt(1.5), 0.1 / np.sqrt(2.0), 0.1 / np.sqrt(2.5)]
    else:
        expected = [0.1, 0.1 / 1.5, 0.1 / 2.0, 0.1 / 2.5]
    w = np.zeros(1)
    taken = []
    for _ in range(4):  # with a gradient of 1 each step moves the weight by exactly the learning rate
        new = optimizer.step(w, np.ones(1))
        taken.append(float(w[0] - new[0]))
        w = new
    assert taken == pytest.approx(expected)
    assert [optimizer.learning_rate_at(t) for t in range(4)] == pytest.approx(expected)


def test_no_decay_keeps_the_rate():
    assert SGD(0.3).learning_rate_at(10_000) == 0.3


def test_first_adam_step_has_the_size_of_the_learning_rate():
    # after bias correction, m/sqrt(v) = g/|g| on step one, whatever the gradient's scale
    step = Adam(0.01).step(np.zeros(3), np.array([1e-4, -5.0, 300.0]))
    np.testing.assert_allclose(step, [-0.01, 0.01, -0.01], rtol=1e-3)


def test_first_rmsprop_step_is_the_sign_over_root_one_minus_rho():
    step = RMSProp(0.01, rho=0.99).step(np.zeros(2), np.array([2.0, -0.5]))
    np.testing.assert_allclose(step, [-0.01 / 0.1, 0.01 / 0.1], rtol=1e-6)


def test_step_leaves_the_caller_weights_alone():
    w = np.ones(2)
    Adam().step(w, np.ones(2))
    np.testing.assert_array_equal(w, np.ones(2))


def test_shape_mismatches_are_refused():
    optimizer = Adam()
    with pytest.raises(ValueError, match="differ"):
        optimizer.step(np.zeros(2), np.zeros(3))
    optimizer.step(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="optimiser state has shape"):
        optimizer.step(np.zeros(3), np.ones(3))


def test_make_optimizer_refuses_unknown_names_options_and_values():
    with pytest.raises(ConfigError, match="unknown optimizer 'adagrad'; valid: sgd, adam, rmsprop"):
        make_optimizer("adagrad")
    with pytest.raises(ConfigError, match="optimizer 'sgd'.*beta1"):
        make_optimizer("sgd", beta1=0.9)
    with pytest.raises(ConfigError, match="learning_rate must be > 0"):
        make_optimizer("adam", learning_rate=0)
    with pytest.raises(ConfigError, match="decay must be >= 0"):
        make_optimizer("rmsprop", decay=-1)
    with pytest.raises(ConfigError, match="beta1 and beta2"):
        make_optimizer("adam", beta2=1.0)


# --- penalties ---------------------------------------------------------------------------------


def test_penalty_gradients_by_hand():
    w, g = np.array([2.0, -3.0, 0.0, 5.0]), np.array([0.1, 0.1, 0.1, 0.1])
    np.testing.assert_allclose(apply_penalty(w, g, penalty="l2", alpha=0.5), [1.1, -1.4, 0.1, 2.6])
    np.testing.assert_allclose(apply_penalty(w, g, penalty="l1", alpha=0.5), [0.6, -0.4, 0.1, 0.6])
    intercept_free = np.array([True, True, True, False])
    with_mask = apply_penalty(w, g, penalty="l2", alpha=0.5, penalized=intercept_free)
    np.testing.assert_allclose(with_mask, [1.1, -1.4, 0.1, 0.1])
    np.testing.assert_array_equal(apply_penalty(w, g, penalty=None, alpha=0.5), g)


def test_penalty_refuses_bad_arguments():
    w = np.zeros(2)
    with pytest.raises(ConfigError, match="unknown penalty 'l3'"):
        apply_penalty(w, w, penalty="l3", alpha=1.0)
    with pytest.raises(ConfigError, match="alpha must be >= 0"):
        apply_penalty(w, w, penalty="l2", alpha=-1.0)
    with pytest.raises(ValueError, match="boolean mask"):
        apply_penalty(w, w, penalty="l2", alpha=1.0, penalized=np.array([1, 0]))


def _least_squares() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    return x, x @ np.array([2.0, -1.0, 0.0, 0.0, 0.5]) + 0.1 * rng.normal(size=200)


def _fit(optimizer, x, y, penalty, alpha, steps):
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        w = optimizer.step(w, apply_penalty(w, x.T @ (x @ w - y) / len(y), penalty=penalty, alpha=alpha))
    return w


def test_l2_penalised_descent_reaches_the_ridge_solution():
    x, y = _least_squares()
    w = _fit(SGD(0.5), x, y, "l2", 0.1, 500)
    # our loss is mean squared error / 2 + alpha/2 |w|^2; scikit-learn's Ridge scales alpha by n
    np.testing.assert_allclose(w, Ridge(alpha=0.1 * len(y), fit_intercept=False).fit(x, y).coef_, atol=1e-8)


@pytest.mark.parametrize(("name", "options"), [("sgd", {"learning_rate": 0.5, "decay": 1.0}),
                                               ("adam", {"learning_rate": 0.1, "decay": 0.5})])
def test_l1_subgradient_descent_approaches_the_lasso_solution(name, options):
    x, y = _least_squares()
    w = _fit(make_optimizer(name, **options), x, y, "l1", 0.1, 3000)
    np.testing.assert_allclose(w, Lasso(alpha=0.1, fit_intercept=False).fit(x, y).coef_, atol=2e-3)
