"""Softmax (multinomial) multiclass of hetero_lr with ``residual: sigmoid``, over the in-process channel:
parity with scikit-learn's default LogisticRegression on the pooled columns, encryption, what the arbiter sees."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from isthmus.algorithms.hetero_linear import LinearOptions, batches, tags
from isthmus.algorithms.hetero_linear.algorithm import HeteroLR
from isthmus.ml.scaling import Standardizer
from isthmus.transport.local import LocalHub
from test_hetero_linear import SMALL_BATCHES, train_jointly

ALPHA = 0.01
SOFTMAX = {"task": "multiclass", "residual": "sigmoid", "alpha": ALPHA, "tol": 0.0}


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's digits, each pixel standardised as the parties do, and the pooled multinomial model
    with the same L2 penalty (isthmus: mean loss + alpha/2 |W|^2; scikit-learn: C sum loss + |W|^2 / 2)."""
    X, y = load_digits(return_X_y=True)
    X = Standardizer.fit(X).transform(X)
    pooled = LogisticRegression(C=1.0 / (ALPHA * len(y)), max_iter=5000).fit(X, y)
    return X, y, pooled


def accuracy(classes: np.ndarray, scores: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(classes[scores.argmax(axis=1)] == y))


def log_loss(probabilities: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(probabilities[np.arange(len(y)), y])))


@pytest.mark.parametrize("split", [[32], [22, 43]], ids=["guest+host", "guest+2hosts"])
def test_softmax_matches_pooled_multinomial_logistic_regression_on_digits(digits, split):
    """Digits' 64 pixels split between the parties: the federated multinomial model reaches the pooled
    model's accuracy (target 0.01) and its optimum (log loss), which one-vs-rest could not (0.95 vs 0.99)."""
    X, y, pooled = digits
    parts = np.split(X, split, axis=1)
    config = LinearOptions(**SOFTMAX, optimizer="adam", learning_rate=0.1, epochs=60, batch_size=0, encrypt=False,
                           precision=8)  # precision 8: the safe batch (16 x 32 x 2.7 rows) fits the 1797 rows
    probabilities, guest, hosts = train_jointly(config, parts[0], y, parts[1:])
    reference = pooled.predict_proba(X)
    assert abs(accuracy(guest.classes_, probabilities, y) - accuracy(pooled.classes_, reference, y)) <= 0.01
    assert log_loss(probabilities, y) == pytest.approx(log_loss(reference, y), abs=0.01)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert guest.coef_.shape == (parts[0].shape[1] + 1, 10)  # K weight columns per party, one model
    assert [h.coef_.shape for h in hosts.values()] == [(part.shape[1], 10) for part in parts[1:]]
    assert guest.history_[-1]["batch_rows"] == len(y)  # the joint label rule leaves one batch (below)


def test_softmax_is_the_same_encrypted_and_in_plaintext(digits):
    """Paillier with the packed gaps changes nothing but fixed-point rounding."""
    X, y, _ = digits
    rows = np.flatnonzero(y < 4)[:120]
    runs = []
    for secret in (False, True):
        config = LinearOptions(**SOFTMAX, encrypt=secret, key_bits=1024, epochs=2, batch_size=60, optimizer="adam",
                               learning_rate=0.05, batch_rows_per_feature=SMALL_BATCHES)
        _, guest, hosts = train_jointly(config, X[rows, :6], y[rows], [X[rows, 6:10], X[rows, 10:14]])
        runs.append((guest, hosts))
    (plain, plain_hosts), (secret, secret_hosts) = runs
    np.testing.assert_allclose(secret.coef_, plain.coef_, atol=1e-4)
    for name in plain_hosts:
        np.testing.assert_allclose(secret_hosts[name].coef_, plain_hosts[name].coef_, atol=1e-4)
    assert secret.history_[-1]["loss"] == pytest.approx(plain.history_[-1]["loss"], abs=1e-4)


def test_the_reported_loss_is_the_batch_cross_entropy(digits):
    """Epoch 1 from zero weights reports log K exactly; the loss the guest assembles from the arbiter's
    logsumexp of the gaps and its encrypted correction is the true cross-entropy."""
    X, y, _ = digits
    config = LinearOptions(**SOFTMAX, epochs=2, batch_size=0, learning_rate=0.5, encrypt=False, precision=8)
    _, guest, _ = train_jointly(config, X[:, :32], y, [X[:, 32:]])
    assert guest.history_[0]["loss"] == pytest.approx(math.log(10))
    pooled = np.hstack([X[:, :32], np.ones((len(y), 1)), X[:, 32:]])
    one_hot = np.eye(10)[y]
    w1 = -0.5 * pooled.T @ (0.1 - one_hot) / len(y)  # one SGD step from zero (the penalty of 0 is 0)
    z = pooled @ w1
    assert guest.history_[1]["loss"] == pytest.approx(np.mean(logsumexp(z, axis=1) - (one_hot * z).sum(axis=1)))


def test_the_arbiter_sees_unnamed_score_gaps_of_shuffled_rows(digits, monkeypatch):
    """Per batch the arbiter gets K - 1 values per row: the row's class scores minus one of them, in a
    secret class order, rows in a secret order. Never the scores themselves, nor which class is which."""
    X, y, _ = digits
    seen = []
    send = LocalHub.channel

    def recording_channel(hub, party):
        channel = send(hub, party)
        if party == "guest":
            original = channel.send

            def recording_send(peer, tag, payload, *args, **kwargs):
                if tag == tags.SOFTMAX_REQUEST:
                    seen.append(payload)
                return original(peer, tag, payload, *args, **kwargs)

            channel.send = recording_send
        return channel

    monkeypatch.setattr(LocalHub, "channel", recording_channel)
    config = LinearOptions(**SOFTMAX, epochs=2, batch_size=0, learning_rate=0.5, encrypt=False, precision=8)
    _, guest, hosts = train_jointly(config, X[:, :32], y, [X[:, 32:]])
    assert len(seen) == 2 and all(request["gaps"].shape == (len(y) * 9,) for request in seen)
    # the second batch's scores, from the weights after the first step
    pooled = np.hstack([X[:, :32], np.ones((len(y), 1)), X[:, 32:]])
    scores = pooled @ (-0.5 * pooled.T @ (0.1 - np.eye(10)[y]) / len(y))
    disguised = np.hstack([np.zeros((len(y), 1)), seen[1]["gaps"].reshape(len(y), 9)])
    # every row the arbiter saw is some row's scores minus one of them, up to the order of the classes
    canonical = np.sort(disguised, axis=1) - np.sort(disguised, axis=1)[:, :1]
    truth = np.sort(scores, axis=1) - np.sort(scores, axis=1)[:, :1]
    np.testing.assert_allclose(canonical[np.lexsort(canonical.T)], truth[np.lexsort(truth.T)], atol=1e-9)
    # rows in a secret order, and classes in a secret order per row: a row seen in the classes' own order
    # (its scores minus its class-0 score) would be an identity permutation, chance 1 in 10!
    row_of = {tuple(np.round(row, 6)): i for i, row in enumerate(truth)}
    matched = [row_of[tuple(np.round(row, 6))] for row in canonical]
    assert matched != list(range(len(y)))
    in_class_order = [np.allclose(disguised[k], scores[i] - scores[i, 0]) for k, i in enumerate(matched)]
    assert sum(in_class_order) <= 3


def test_label_growth_of_the_batch_rule():
    """Binary labels keep the old rule (1 / their entropy); K balanced classes need (K - 1) / log2 K times
    the rows (jointly (K - 1) equations per feature against log2 K bits per row); a rare class needs
    what one-vs-rest needed for it."""
    balanced = np.eye(2)[np.arange(1000) % 2][:, 1:]
    assert batches.label_growth(balanced) == pytest.approx(1.0)
    rare = (np.arange(1000) % 10 == 0).astype(float)[:, None]
    assert batches.label_growth(rare) == pytest.approx(1 / 0.4690, rel=1e-3)
    ten = np.eye(10)[np.arange(1000) % 10]
    assert batches.label_growth(ten) == pytest.approx(9 / math.log2(10))
    skewed = np.eye(3)[np.r_[np.zeros(980, int), np.ones(10, int), np.full(10, 2)]]
    assert batches.label_growth(skewed) == pytest.approx(1 / 0.0808, rel=1e-2)  # class 1 alone
    assert batches.label_growth(np.linspace(0, 3, 50)[:, None]) == 1.0  # regression


def test_the_pooled_reference_is_scikit_learns_multinomial_default(digits):
    """`isthmus parity` compares multiclass hetero_lr with LogisticRegression's default (multinomial)."""
    X, y, pooled = digits
    options = HeteroLR.Options(**SOFTMAX, scale=False)
    reference = HeteroLR().reference(options, "multiclass", X, y, X[:50])
    np.testing.assert_allclose(reference.scores, pooled.predict_proba(X[:50]), atol=1e-6)
