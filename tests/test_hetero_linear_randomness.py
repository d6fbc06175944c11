"""The background pool of encryption randomness that keeps fresh factors off the training loop's critical path."""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.hetero_linear.cipher import Randomness


def test_refill_fills_the_pool_and_encryption_takes_each_factor_once(paillier_1024):
    public_key, private_key = paillier_1024
    public_key.random_factors(public_key.precomputed)  # start from an empty pool
    randomness = Randomness(public_key)
    randomness.refill(50)
    randomness.close()
    assert public_key.precomputed == 50
    pooled = list(public_key._pool)
    values = np.array([0.0, -1.5, 2.25, 1e-6])
    encrypted = public_key.encrypt(values)
    assert public_key.precomputed == 46
    np.testing.assert_allclose(private_key.decrypt(encrypted), values, atol=2**-32)
    # factors are handed out once: the pool no longer holds the ones encryption used
    assert set(pooled[-4:]).isdisjoint(public_key._pool)
    assert len(set(encrypted.ciphertexts())) == 4


def test_refill_only_makes_what_the_pool_lacks(paillier_1024):
    public_key, _ = paillier_1024
    public_key.random_factors(public_key.precomputed)
    randomness = Randomness(public_key)
    randomness.refill(10)
    randomness.close()
    randomness.refill(10)  # already there: no new work
    randomness.close()
    assert public_key.precomputed == 10
    public_key.random_factors(10)


def test_plaintext_mode_needs_no_randomness():
    randomness = Randomness(None)
    randomness.refill(1000)
    randomness.close()
