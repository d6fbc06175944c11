"""The rest of a party's heavy work on a real local Ray cluster (the session's, conftest.py): Paillier encryption
and X.T @ [[d]] by row blocks, with a vertical logistic regression that learns the same model as on the local
pool."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus.compute import LocalCompute, select

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


class CountingCompute:
    """The session's Ray backend, counting the tasks handed to it (so a test knows the work did go there)."""

    remote = True

    def __init__(self, backend):
        self._backend = backend
        self.tasks = 0

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def pool(self, records, workers=None):
        pool = self._backend.pool(records, workers)
        submit = pool.submit

        def counted(fn, *args):
            self.tasks += 1
            return submit(fn, *args)

        pool.submit = counted
        return pool


@pytest.fixture
def on_ray(ray_compute, monkeypatch):
    """This process's backend is the cluster, and Paillier work of test size is spread (thresholds at 1)."""
    from isthmus.crypto import keys, multiexp

    counting = CountingCompute(ray_compute)
    monkeypatch.setattr(select, "_current", counting)
    monkeypatch.setattr(keys, "PARALLEL_MIN_ENCRYPTIONS", 1)
    monkeypatch.setattr(multiexp, "PARALLEL_MIN_PRODUCTS", 1)
    monkeypatch.setattr(multiexp, "PARALLEL_MIN_POWERS", 1)
    return counting


def test_encryption_and_weighted_sums_by_row_blocks_are_the_local_integers(on_ray, paillier_1024):
    from isthmus.crypto import multiexp

    public, private = paillier_1024
    rng = np.random.default_rng(7)
    values, X = rng.normal(size=300), rng.normal(size=(300, 12))
    encrypted = public.encrypt(values)  # random factors made by cluster tasks
    assert on_ray.tasks >= 2
    np.testing.assert_allclose(private.decrypt(encrypted), values, atol=2**-32)
    before = on_ray.tasks
    on_cluster = encrypted.rmatmul(X.T, precision=16)  # X.T @ [[v]]: tasks over row blocks, multiplied here
    assert on_ray.tasks >= before + 2
    integers = np.round(X.T * 2**16).astype(np.int64)
    local = multiexp._products(encrypted.ciphertexts(), integers, public.nsquare)
    assert on_cluster.ciphertexts() == local  # the same ciphertexts, not merely the same plaintexts


def test_vertical_logistic_regression_on_ray_learns_the_local_model(on_ray, monkeypatch, paillier_1024):
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from isthmus.algorithms.hetero_linear import LinearOptions
    from test_hetero_linear import SMALL_BATCHES, train_jointly

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:300]
    y = y[:300]
    config = LinearOptions(epochs=2, batch_size=100, key_bits=1024, seed=3, batch_rows_per_feature=SMALL_BATCHES)
    scores_ray, guest_ray, hosts_ray = train_jointly(config, X[:, :10], y, [X[:, 10:]])
    assert on_ray.tasks > 0
    monkeypatch.setattr(select, "_current", LocalCompute())
    scores_local, guest_local, hosts_local = train_jointly(config, X[:, :10], y, [X[:, 10:]])
    np.testing.assert_allclose(hosts_ray["host-1"].coef_, hosts_local["host-1"].coef_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(guest_ray.coef_, guest_local.coef_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(scores_ray, scores_local, rtol=0, atol=1e-9)
    assert np.abs(hosts_local["host-1"].coef_).max() > 1e-3  # the host did learn something
