"""hetero_lr_sshe over the in-process channel: true logistic regression without an arbiter, exact arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from conftest import run_parties
from isthmus.algorithms.hetero_linear.batches import plan_batches
from isthmus.algorithms.sshe_lr import fourier, shares
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.algorithms.sshe_lr.roles import fit_guest, fit_host
from isthmus.transport.local import LocalHub


def train(options: SSHEOptions, X_guest, y, X_host, hub: LocalHub | None = None):
    hub = hub or LocalHub(["guest", "host"])
    done = run_parties({"guest": lambda: fit_guest(options, hub.channel("guest"), X_guest, y, hosts=["host"]),
                        "host": lambda: fit_host(options, hub.channel("host"), X_host, guest="guest")}, timeout=600)
    return done["guest"], done["host"]


def plaintext_twin(options: SSHEOptions, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same batches and steps in float64 with the same sine series: what the shares must add up to."""
    return twin_sgd(options, X, y.astype(np.float64), fourier.sigmoid)


def twin_sgd(options: SSHEOptions, X: np.ndarray, target: np.ndarray, link) -> np.ndarray:
    """The protocol's plain SGD in float64 on ``X`` plus an intercept column (last, unpenalised): the guest's
    batches, residual ``link(scores) - target``; weights shaped like ``target``'s columns (a vector for a vector)."""
    Xd = np.hstack([X, np.ones((len(X), 1))])
    rng = np.random.default_rng(options.seed)
    rng.permutation(len(Xd))  # the guest's hold-out draw (nothing held out here)
    edges = plan_batches(len(Xd), options.batch_size, 1, why="")
    w = np.zeros((Xd.shape[1], *target.shape[1:]))
    for _ in range(options.epochs):
        shuffled = rng.permutation(len(Xd))
        for start, stop in zip(edges, edges[1:]):
            rows = np.sort(shuffled[start:stop])
            gradient = Xd[rows].T @ (link(Xd[rows] @ w) - target[rows]) / len(rows)
            penalty = options.alpha * w
            penalty[-1] = 0.0
            w -= options.learning_rate * (gradient + penalty)
    return w


def test_the_sine_series_follows_the_sigmoid_over_its_range():
    z = np.linspace(-fourier.FLAT, fourier.FLAT, 200_001)
    assert np.abs(fourier.sigmoid(z) - expit(z)).max() < fourier.MAX_ERROR
    beyond = np.linspace(fourier.FLAT, fourier.PERIOD / 2, 1001)  # falls back towards 1/2, never past it
    assert fourier.sigmoid(beyond).min() > 0.5 - fourier.MAX_ERROR


def test_local_truncation_of_shares_is_exact_to_one_unit():
    rng = np.random.default_rng(1)
    for value in rng.integers(-2**60, 2**60, size=200).tolist():
        a = int(rng.integers(0, 2**62)) * 2**194 + int(rng.integers(0, 2**62))
        b = (value - a) % shares.RING
        a2, b2 = shares.truncate([a], 20, first=True)[0], shares.truncate([b], 20, first=False)[0]
        assert abs(shares.signed((a2 + b2) % shares.RING) - (value >> 20)) <= 1


def test_matches_logistic_regression_on_pooled_columns_without_an_arbiter():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    options = SSHEOptions(epochs=2, batch_size=64, learning_rate=0.5, key_bits=1024)
    guest, host_weights = train(options, X[:, :10], y, X[:, 10:])
    # each party holds only its own weights: the guest its 10 and the intercept, the host its 20
    assert guest.weights.shape == (11,) and host_weights.shape == (20,)
    # the shares add up to the float64 twin: the protocol's only error is fixed point (2^-24 steps)
    twin = plaintext_twin(options, X, y)
    assert np.abs(np.r_[guest.weights[:10], host_weights, guest.weights[10]] - twin).max() < 1e-5
    scores = X[:, :10] @ guest.weights[:10] + guest.weights[10] + X[:, 10:] @ host_weights
    pooled = LogisticRegression(C=1.0 / (options.alpha * len(y)), max_iter=5000).fit(X, y)
    assert abs(roc_auc_score(y, scores) - roc_auc_score(y, pooled.decision_function(X))) < 0.002


def test_three_parties_each_pair_with_its_own_keys_match_the_pooled_model():
    """A guest and two hosts (10 + 10 + 10 columns): the same shares as with one host holding both
    hosts' columns, so the same float64 twin; each host ends with its own weights only."""
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :30]
    options = SSHEOptions(epochs=1, batch_size=32, learning_rate=0.5, key_bits=1024)
    hub = LocalHub(["guest", "host-a", "host-b"])
    done = run_parties({"guest": lambda: fit_guest(options, hub.channel("guest"), X[:, :10], y, hosts=["host-a", "host-b"]),
                        "host-a": lambda: fit_host(options, hub.channel("host-a"), X[:, 10:20], guest="guest"),
                        "host-b": lambda: fit_host(options, hub.channel("host-b"), X[:, 20:], guest="guest")},
                       timeout=600)
    guest, a, b = done["guest"].weights, done["host-a"], done["host-b"]
    assert guest.shape == (11,) and a.shape == (10,) and b.shape == (10,)
    twin = plaintext_twin(options, X, y)
    assert np.abs(np.r_[guest[:10], a, b, guest[10]] - twin).max() < 1e-5
    scores = X[:, :10] @ guest[:10] + guest[10] + X[:, 10:20] @ a + X[:, 20:] @ b
    pooled = LogisticRegression(C=1.0 / (options.alpha * len(y)), max_iter=5000).fit(X, y)
    assert abs(roc_auc_score(y, scores) - roc_auc_score(y, pooled.decision_function(X))) < 0.002


def test_a_label_with_one_value_is_refused_naming_the_model():
    from isthmus.errors import DataError

    with pytest.raises(DataError, match="hetero_lr_sshe needs 2 or more label values"):
        fit_guest(SSHEOptions(key_bits=1024), LocalHub(["guest", "host"]).channel("guest"), np.zeros((3, 1)),
                  np.array([1, 1, 1]), hosts=["host"])


def test_registered_without_an_arbiter_and_its_parts_load_back():
    from isthmus.algorithms.base import Roster
    from isthmus.algorithms.registry import algorithm
    from isthmus.errors import ConfigError

    sshe = algorithm("hetero_lr_sshe")
    with pytest.raises(ConfigError, match=r"takes roles \[.guest., .host.\]"):
        sshe.check(Roster({"g": "guest", "h": "host", "a": "arbiter"}), SSHEOptions(), allow_plaintext=False)
    guest = {"model": "hetero_lr_sshe", "role": "guest", "features": ["a"], "scaler": None, "task": "binary",
             "coef": [[0.5], [-1.0]], "classes": [0, 1], "history": [], "intercept_included": True,
             "hosts": ["h"], "options": SSHEOptions(key_bits=1024).to_dict()}
    part = sshe.load("guest", guest)
    assert part.to_dict()["coef"].tolist() == [[0.5], [-1.0]] and part.to_dict()["options"]["key_bits"] == 1024
