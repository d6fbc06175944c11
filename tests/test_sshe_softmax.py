"""hetero_lr_sshe with 3+ classes: one multinomial model whose softmax runs on shares (sshe_lr/softmax.py)."""

from __future__ import annotations

import numpy as np
from scipy.special import softmax as exact_softmax
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from conftest import run_parties
from isthmus.algorithms.sshe_lr import softmax
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.algorithms.sshe_lr.roles import fit_guest, fit_host
from isthmus.transport.local import LocalHub
from test_sshe_lr import twin_sgd

#: Three digits that look alike (3, 5, 8): a task the pooled model gets right on most rows, not all.
DIGITS, ROWS = [3, 5, 8], 60
#: Three batches of 20 per epoch (plain SGD; chosen on the float64 twin, which the protocol reproduces)
OPTIONS = SSHEOptions(epochs=2, batch_size=20, learning_rate=1.0, key_bits=1024)


def digits(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    keep = np.flatnonzero(np.isin(y, DIGITS))[:rows]
    X = X[keep][:, 16:48]  # the middle rows of pixels, 32 columns
    X = X[:, X.std(axis=0) > 0]
    return StandardScaler().fit_transform(X), y[keep]


def plaintext_twin(options: SSHEOptions, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same batches and steps in float64 with softmax.reference: what the shares must add up to
    ((features + intercept) x K, the intercept last)."""
    Y = (y[:, None] == np.unique(y)[None, :]).astype(np.float64)
    return twin_sgd(options, X, Y, softmax.reference)


def test_the_float64_twin_of_the_shared_softmax_follows_scipy_over_its_range():
    rng = np.random.default_rng(0)
    for classes in (3, 10):
        Z = rng.normal(size=(2000, classes)) * 4
        assert np.abs(softmax.reference(Z) - exact_softmax(Z, axis=1)).max() < 1e-3
        spread = rng.uniform(-softmax.SPREAD, softmax.SPREAD, size=(2000, classes))
        assert np.abs(softmax.reference(spread) - exact_softmax(spread, axis=1)).max() < 0.05


def pooled_accuracy(X: np.ndarray, y: np.ndarray) -> float:
    return LogisticRegression(C=1.0 / (OPTIONS.alpha * len(y)), max_iter=5000).fit(X, y).score(X, y)


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.array(DIGITS)[scores.argmax(axis=1)] == y))


def test_two_parties_train_one_multinomial_model_equal_to_the_twin_and_the_pooled_accuracy():
    X, y = digits()
    split = X.shape[1] // 2
    hub = LocalHub(["guest", "host"])
    done = run_parties({"guest": lambda: fit_guest(OPTIONS, hub.channel("guest"), X[:, :split], y, hosts=["host"]),
                        "host": lambda: fit_host(OPTIONS, hub.channel("host"), X[:, split:], guest="guest")},
                       timeout=600)
    guest, host = done["guest"].weights, done["host"]
    # K columns at each party, its own only: the guest's pixels and the intercept, the host's pixels
    assert guest.shape == (split + 1, 3) and host.shape == (X.shape[1] - split, 3)
    assert done["guest"].classes.tolist() == DIGITS
    # the shares add up to the float64 twin: the protocol's only error is fixed point
    twin = plaintext_twin(OPTIONS, X, y)
    assert np.abs(np.vstack([guest[:-1], host, guest[-1:]]) - twin).max() < 1e-5
    scores = X[:, :split] @ guest[:-1] + guest[-1] + X[:, split:] @ host
    assert abs(accuracy(scores, y) - pooled_accuracy(X, y)) <= 0.01


def test_three_parties_share_the_softmax_through_the_lead_and_match_the_twin():
    """A guest and two hosts: the second host's shares of Z reach the lead (FOLD) and the residual's come
    back (SPREAD) K per row; the same float64 twin as with one host holding both hosts' columns."""
    X, y = digits()
    a, b = X.shape[1] // 3, 2 * X.shape[1] // 3
    hub = LocalHub(["guest", "host-a", "host-b"])
    done = run_parties({"guest": lambda: fit_guest(OPTIONS, hub.channel("guest"), X[:, :a], y, hosts=["host-a", "host-b"]),
                        "host-a": lambda: fit_host(OPTIONS, hub.channel("host-a"), X[:, a:b], guest="guest"),
                        "host-b": lambda: fit_host(OPTIONS, hub.channel("host-b"), X[:, b:], guest="guest")},
                       timeout=600)
    guest, host_a, host_b = done["guest"].weights, done["host-a"], done["host-b"]
    assert guest.shape == (a + 1, 3) and host_a.shape == (b - a, 3) and host_b.shape == (X.shape[1] - b, 3)
    twin = plaintext_twin(OPTIONS, X, y)
    assert np.abs(np.vstack([guest[:-1], host_a, host_b, guest[-1:]]) - twin).max() < 1e-5
    scores = X[:, :a] @ guest[:-1] + guest[-1] + X[:, a:b] @ host_a + X[:, b:] @ host_b
    assert abs(accuracy(scores, y) - pooled_accuracy(X, y)) <= 0.01


def test_what_each_party_sees_of_a_product_is_uniform_whatever_the_secrets(monkeypatch):
    """The guest decrypts a0 b1 + b0 a1 - r: reduced to the ring it is uniform, for zero secrets as for large
    ones, and so is each party's share of the product; the host sees only ciphertexts under the guest's key."""
    from scipy.stats import kstest

    from isthmus.algorithms.sshe_lr import arith, shares
    from isthmus.algorithms.sshe_lr.protocol import Side

    decrypted = []
    real_decrypt = shares.Packing.decrypt

    def recording(self, *args):
        values = real_decrypt(self, *args)
        decrypted.extend(values)
        return values

    monkeypatch.setattr(shares.Packing, "decrypt", recording)
    rng = np.random.default_rng(0)
    for secret in (0, 3 << 30):
        a, b = [secret] * 300, [secret + 7] * 300
        a0, b0 = [int(v) for v in rng.integers(0, 2**62, 300)], [int(v) for v in rng.integers(0, 2**62, 300)]
        a1 = [(x - s) % arith.MODULUS for x, s in zip(a, a0)]
        b1 = [(x - s) % arith.MODULUS for x, s in zip(b, b0)]
        hub = LocalHub(["guest", "host"])
        options = SSHEOptions(key_bits=1024)

        def party(name, first, mine_a, mine_b):
            side = Side(options, hub.channel(name), "host" if first else "guest", np.zeros((1, 1)), first=first,
                        penalized=np.ones(1, dtype=bool))
            return arith.multiply(side, [v % arith.MODULUS for v in mine_a], [v % arith.MODULUS for v in mine_b])

        done = run_parties({"guest": lambda: party("guest", True, a0, b0), "host": lambda: party("host", False, a1, b1)})
        product = shares.add(done["guest"], done["host"], modulus=arith.MODULUS)
        assert product == [x * y % arith.MODULUS for x, y in zip(a, b)]
        for view in (done["guest"], done["host"]):
            assert kstest(np.array(view, dtype=float) / arith.MODULUS, "uniform").pvalue > 1e-3
        assert kstest(np.array(decrypted, dtype=float) / shares.RING, "uniform").pvalue > 1e-3
        decrypted.clear()


def test_a_multiclass_task_with_two_label_values_is_refused():
    import pytest

    from isthmus.errors import DataError

    with pytest.raises(DataError, match="multiclass task needs 3 or more label values"):
        fit_guest(SSHEOptions(task="multiclass", key_bits=1024), LocalHub(["guest", "host"]).channel("guest"),
                  np.zeros((4, 1)), np.array([0, 1, 0, 1]), hosts=["host"])
