"""Hetero linear and logistic regression over the in-process channel: parity, multi-host, privacy."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from conftest import run_parties
from isthmus.errors import ConfigError, PeerAbortedError
from isthmus.algorithms.hetero_linear import HeteroLinearArbiter, HeteroLinearGuest, HeteroLinearHost, LinearOptions
from isthmus.transport.local import LocalHub


#: Tests of the learning arithmetic on small data turn off the batch floor (at the protocol level; a job
#: needs the benchmark-only switch for that): tests/adversarial/test_adv_vertical.py checks the floor.
SMALL_BATCHES = 1


def train_jointly(config: LinearOptions, X_guest, y, X_hosts, *, hub: LocalHub | None = None, progress=None):
    """Train guest + hosts + arbiter as threads; return the guest's scores on all rows and the parts."""
    hosts = [f"host-{i}" for i in range(1, len(X_hosts) + 1)]
    hub = hub or LocalHub(["guest", *hosts, "arbiter"])
    guest = HeteroLinearGuest(config)
    host_parts = {name: HeteroLinearHost(config) for name in hosts}

    def run_guest():
        channel = hub.channel("guest")
        guest.fit(channel, X_guest, y, hosts=hosts, arbiter="arbiter", progress=progress)
        scores = guest.predict_proba(channel, X_guest, hosts=hosts)
        guest.finish(channel, hosts=hosts)
        return scores

    def run_host(name, X):
        def target():
            channel = hub.channel(name)
            host_parts[name].fit(channel, X, guest="guest", arbiter="arbiter")
            host_parts[name].serve_scores(channel, X, guest="guest")
        return target

    roles = {"guest": run_guest, "arbiter": lambda: HeteroLinearArbiter(config).fit(
        hub.channel("arbiter"), guest="guest", hosts=hosts)}
    roles.update({name: run_host(name, X) for name, X in zip(hosts, X_hosts)})
    return run_parties(roles, timeout=300)["guest"], guest, host_parts


@pytest.fixture(scope="module")
def breast():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def centralised_auc(X, y, alpha=0.01):
    model = LogisticRegression(C=1.0 / (alpha * len(y)), max_iter=5000).fit(X, y)
    return roc_auc_score(y, model.predict_proba(X)[:, 1])


def test_plaintext_mode_matches_centralised_logistic_regression(breast):
    X, y = breast
    config = LinearOptions(epochs=15, batch_size=64, learning_rate=0.15, encrypt=False)
    scores, _, _ = train_jointly(config, X[:, :10], y, [X[:, 10:]])
    assert abs(roc_auc_score(y, scores) - centralised_auc(X, y)) < 0.005


def test_encrypted_logistic_regression_two_hosts_matches_centralised(breast, paillier_1024):
    X, y = breast
    config = LinearOptions(epochs=5, batch_size=128, learning_rate=0.15, key_bits=1024)
    scores, guest, hosts = train_jointly(config, X[:, :10], y, [X[:, 10:20], X[:, 20:]])
    assert abs(roc_auc_score(y, scores) - centralised_auc(X, y)) < 0.01
    # each party keeps only its own coefficients
    assert guest.coef_.shape == (11, 1)
    assert [h.coef_.shape for h in hosts.values()] == [(10, 1), (10, 1)]


def test_encrypted_and_plaintext_modes_agree(breast, paillier_1024):
    """Encryption changes nothing but fixed-point rounding: the same weights to ~1e-4."""
    X, y = breast
    rows = slice(0, 200)
    plain = LinearOptions(epochs=2, batch_size=100, key_bits=1024, encrypt=False, batch_rows_per_feature=SMALL_BATCHES)
    secret = LinearOptions(epochs=2, batch_size=100, key_bits=1024, batch_rows_per_feature=SMALL_BATCHES)
    _, guest_plain, hosts_plain = train_jointly(plain, X[rows, :10], y[rows], [X[rows, 10:]])
    _, guest_secret, hosts_secret = train_jointly(secret, X[rows, :10], y[rows], [X[rows, 10:]])
    np.testing.assert_allclose(guest_secret.coef_, guest_plain.coef_, atol=1e-4)
    np.testing.assert_allclose(hosts_secret["host-1"].coef_, hosts_plain["host-1"].coef_, atol=1e-4)
    for a, b in zip(guest_secret.history_, guest_plain.history_):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)


def test_a_batch_size_under_the_floor_is_raised_and_said_so(breast):
    """The guest raised it silently: a job asking for batches of 16 trained on batches of 500 (its log's
    batch_rows said so, its progress did not)."""
    X, y = breast
    records = []
    train_jointly(LinearOptions(epochs=1, encrypt=False, batch_size=16), X[:, :10], y, [X[:, 10:]],
                  progress=records.append)
    assert records[0]["note"].startswith("batch_size 16 raised to ")
    assert "rows per feature x 20 features of 'host-1'" in records[0]["note"]
    assert records[1]["batch_rows"] > 400 and "note" not in records[1]


def test_reported_loss_is_the_taylor_loss_of_the_batch(breast):
    """Full-batch SGD from zero weights: epoch 1 reports log 2; epoch 2 reports the Taylor loss
    log 2 - y'z/2 + z^2/8 at w1 = -lr * grad(0), computed here on the pooled data."""
    X, y = breast
    lr = 0.5
    config = LinearOptions(epochs=2, batch_size=0, learning_rate=lr, penalty=None, tol=0.0, encrypt=False,
                           residual="taylor")
    _, guest, _ = train_jointly(config, X[:, :10], y, [X[:, 10:]])
    pooled = np.hstack([X[:, :10], np.ones((len(y), 1)), X[:, 10:]])
    w1 = -lr * pooled.T @ (0.5 - y) / len(y)
    z = pooled @ w1
    signed = 2 * y - 1
    taylor = np.mean(np.log(2.0) - 0.5 * signed * z + 0.125 * z**2)
    assert guest.history_[0]["loss"] == pytest.approx(np.log(2.0))
    assert guest.history_[1]["loss"] == pytest.approx(taylor, rel=1e-9)


def test_linear_regression_matches_ridge():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    config = LinearOptions(task="regression", epochs=60, batch_size=64, learning_rate=0.05, alpha=0.001,
                          encrypt=False, tol=1e-7)
    scores, _, _ = train_jointly(config, X[:, :4], y, [X[:, 4:]])
    reference = Ridge(alpha=0.001 * len(y)).fit(X, y).predict(X)
    assert abs(r2_score(y, scores) - r2_score(y, reference)) < 0.01


def test_multiclass_one_vs_rest():
    """The Taylor-approximated logistic loss is a least-squares loss on 4y-2, so one-vs-rest converges
    to what a one-vs-rest least-squares classifier gets (iris' middle class is not linearly separable)."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    config = LinearOptions(task="multiclass", epochs=30, batch_size=32, learning_rate=0.3, encrypt=False,
                          batch_rows_per_feature=SMALL_BATCHES)
    scores, guest, hosts = train_jointly(config, X[:, :2], y, [X[:, 2:]])
    assert scores.shape == (150, 3)
    reference = (RidgeClassifier(alpha=1.5).fit(X, y).predict(X) == y).mean()
    assert (guest.classes_[scores.argmax(axis=1)] == y).mean() >= reference - 0.02
    assert hosts["host-1"].coef_.shape == (2, 3)


def test_early_stopping_keeps_the_best_validation_weights(breast):
    X, y = breast
    config = LinearOptions(epochs=40, batch_size=32, learning_rate=2.0, validation_fraction=0.3,
                          early_stopping_rounds=2, tol=0.0, encrypt=False, batch_rows_per_feature=SMALL_BATCHES)
    _, guest, _ = train_jointly(config, X[:, :10], y, [X[:, 10:]])
    val = [h["validation_loss"] for h in guest.history_]
    assert len(val) < 40  # stopped early
    assert len(guest.validation_rows_) == round(0.3 * len(y))


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="penalty"):
        LinearOptions(penalty="l3")
    with pytest.raises(ConfigError, match=r"unknown option .epochz. \(did you mean .epochs.\?\)"):
        LinearOptions.parse({"epochz": 3}, where="test")
    with pytest.raises(ConfigError, match="validation_fraction"):
        LinearOptions(early_stopping_rounds=3)


def test_a_failing_host_stops_the_others_instead_of_hanging(breast):
    X, y = breast
    hub = LocalHub(["guest", "host-1", "arbiter"])
    config = LinearOptions(epochs=2, encrypt=False)

    def broken_host():
        channel = hub.channel("host-1")
        channel.recv("arbiter", "hetero-linear/public-key")
        channel.abort("disk full")
        raise RuntimeError("disk full")

    def guest():
        HeteroLinearGuest(config).fit(hub.channel("guest"), X[:, :10], y, hosts=["host-1"], arbiter="arbiter")

    with pytest.raises(AssertionError) as failure:
        run_parties({"guest": guest, "host-1": broken_host,
                     "arbiter": lambda: HeteroLinearArbiter(config).fit(hub.channel("arbiter"), guest="guest",
                                                                         hosts=["host-1"])}, timeout=30)
    assert "still running" not in str(failure.value)
    assert isinstance(failure.value.__cause__, (RuntimeError, PeerAbortedError))


def test_every_party_hears_of_the_failing_guest_not_of_a_party_that_failed_because_of_it(breast):
    """The arbiter, ending on the guest's abort, aborted too, naming itself: the host heard that first and
    the job's proposer read "vertical linear arbiter failed: PeerAbortedError" for a guest with too few rows."""
    X, y = breast
    hub = LocalHub(["guest", "host-1", "arbiter"])
    config = LinearOptions(epochs=2, encrypt=False)  # the batch floor: 400 rows are too few for 20 host columns
    errors: dict[str, BaseException] = {}

    def party(name, fit):
        def target():
            try:
                fit(hub.channel(name))
            except Exception as exc:
                errors[name] = exc
        return threading.Thread(target=target, daemon=True)

    threads = [party("guest", lambda c: HeteroLinearGuest(config).fit(c, X[:400, :10], y[:400], hosts=["host-1"],
                                                                      arbiter="arbiter")),
               party("host-1", lambda c: HeteroLinearHost(config).fit(c, X[:400, 10:], guest="guest", arbiter="arbiter")),
               party("arbiter", lambda c: HeteroLinearArbiter(config).fit(c, guest="guest", hosts=["host-1"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert "fewer than the" in str(errors["guest"]), errors
    for name in ("host-1", "arbiter"):
        assert isinstance(errors[name], PeerAbortedError), errors
        assert "guest: vertical linear guest failed: DataError" in str(errors[name]), errors
    for name in ("host-1", "arbiter"):  # over gRPC, which one a party hears first is a race: only the guest speaks
        assert hub.mailboxes[name].quitters("job") == {"guest"}


def test_sigmoid_residual_matches_true_logistic_regression(breast):
    """The exact residual converges to scikit-learn's logistic regression, not to least squares."""
    X, y = breast
    config = LinearOptions(epochs=20, batch_size=128, learning_rate=0.05, optimizer="adam", residual="sigmoid",
                          encrypt=False)
    scores, guest, _ = train_jointly(config, X[:, :10], y, [X[:, 10:20], X[:, 20:]])
    assert abs(roc_auc_score(y, scores) - centralised_auc(X, y)) < 0.002
    # the reported loss is the true log loss of each batch, so it ends near the centralised optimum's
    assert guest.history_[-1]["loss"] < 0.12


def test_sigmoid_residual_is_the_same_encrypted_and_in_plaintext(breast, paillier_1024):
    X, y = breast
    rows = slice(0, 160)
    runs = [train_jointly(LinearOptions(epochs=2, batch_size=80, key_bits=1024, residual="sigmoid", encrypt=secret,
                                       batch_rows_per_feature=SMALL_BATCHES),
                          X[rows, :10], y[rows], [X[rows, 10:]])[1] for secret in (False, True)]
    np.testing.assert_allclose(runs[1].coef_, runs[0].coef_, atol=1e-4)
    assert runs[1].history_[-1]["loss"] == pytest.approx(runs[0].history_[-1]["loss"], abs=1e-4)


def test_the_sigmoid_shuffle_comes_from_the_os_secret_randomness(breast, monkeypatch):
    """The permutation that hides the batch order from the arbiter is a secret: random.SystemRandom, never
    an unseeded numpy generator (not meant for secrets)."""
    X, y = breast
    real_rng, real_shuffle, shuffled = np.random.default_rng, random.SystemRandom.shuffle, []

    def seeded_only(seed=None):
        assert seed is not None, "a secret permutation from numpy's generator"
        return real_rng(seed)

    def recorded_shuffle(self, items):
        shuffled.append(len(items))
        real_shuffle(self, items)

    monkeypatch.setattr(np.random, "default_rng", seeded_only)
    monkeypatch.setattr(random.SystemRandom, "shuffle", recorded_shuffle)
    config = LinearOptions(epochs=1, batch_size=0, residual="sigmoid", encrypt=False)
    train_jointly(config, X[:, :10], y, [X[:, 10:]])
    assert shuffled == [len(y)]


@pytest.mark.parametrize("options, hosts", [
    ({"residual": "taylor"}, 2),  # a quadratic loss: the hosts' cross terms too
    ({"residual": "taylor", "encrypt": True, "key_bits": 1024}, 2),
    ({}, 1),  # the exact sigmoid's softplus, through the arbiter
    ({"encrypt": True, "key_bits": 1024}, 2),  # each host's own [[(e_ref - y) . u_h]], summed
    ({"task": "regression"}, 2),
    ({"task": "multiclass"}, 1),  # one softmax model
])
def test_the_validation_loss_is_formed_encrypted_and_is_that_of_the_held_out_rows(options, hosts):
    """The guest's validation loss each epoch (early stopping) is the held-out rows' loss (the Taylor one
    for a Taylor model, half the squared error for regression: the training loss's), with only its sum
    decrypted: the hosts' partial scores of those rows reached the guest in clear every epoch, one linear
    projection of their columns per epoch (benchmarks/label_leakage.py lr-validation: R^2 1.00 after 20
    epochs)."""
    X, y = (load_iris if options.get("task") == "multiclass" else load_diabetes if options.get("task") else
            load_breast_cancer)(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    config = LinearOptions(**{"epochs": 3, "batch_size": 32, "learning_rate": 0.1, "validation_fraction": 0.3,
                              "early_stopping_rounds": 10, "encrypt": False, "batch_rows_per_feature": SMALL_BATCHES,
                              "tol": 0.0, **options})
    parts = [X[:, 2 + i::hosts + 1] for i in range(hosts)]
    _, guest, host_parts = train_jointly(config, X[:, :2], y, parts)
    rows = guest.validation_rows_
    z = np.column_stack([X[rows, :2], np.ones(len(rows))]) @ guest.coef_ + sum(
        part[rows] @ host_parts[f"host-{i + 1}"].coef_ for i, part in enumerate(parts))
    if config.task == "regression":
        expected = 0.5 * np.mean((z[:, 0] - y[rows]) ** 2)
    elif config.softmax:
        one_hot = y[rows, None] == guest.classes_[None, :]
        expected = np.mean(np.log(np.exp(z).sum(axis=1)) - (one_hot * z).sum(axis=1))
    elif config.exact_sigmoid:
        expected = np.mean(np.logaddexp(0.0, z[:, 0]) - y[rows] * z[:, 0])
    else:
        signed = 2.0 * y[rows] - 1.0
        expected = np.mean(np.log(2.0) - 0.5 * signed * z[:, 0] + 0.125 * z[:, 0] ** 2)
    best = min(record["validation_loss"] for record in guest.history_)  # every party keeps the best epoch's weights
    assert best == pytest.approx(expected, rel=1e-4 if config.encrypt else 1e-6)
