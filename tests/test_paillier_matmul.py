"""Products with plaintext matrices, X.T @ [[d]], and the bucket multi-exponentiation behind them."""

from __future__ import annotations

import math

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.crypto.multiexp import best_window, inverses, product_of_powers
from isthmus.crypto.paillier import DEFAULT_MATMUL_PRECISION, generate_keypair


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


MODULUS = gmpy2.mpz(2**521 - 1)  # a prime, so every base is invertible


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(2, 2**520), st.integers(-(2**40), 2**40)), max_size=40))
def test_product_of_powers_matches_one_powmod_per_term(terms):
    bases = [gmpy2.mpz(b) for b, _ in terms]
    exponents = [e for _, e in terms]
    expected = math.prod(int(gmpy2.powmod(b, e, MODULUS)) for b, e in terms) % MODULUS
    assert product_of_powers(bases, exponents, MODULUS) == expected


def test_product_of_powers_edge_cases():
    assert product_of_powers([], [], MODULUS) == 1
    assert product_of_powers([gmpy2.mpz(5)], [0], MODULUS) == 1
    assert product_of_powers([gmpy2.mpz(5)], [-1], MODULUS) == gmpy2.invert(5, MODULUS)
    with pytest.raises(ValueError):
        product_of_powers([gmpy2.mpz(5)], [1, 2], MODULUS)


@given(st.lists(st.integers(1, 2**521 - 2), max_size=20))
def test_batch_inverses(values):
    assert inverses([gmpy2.mpz(v) for v in values], MODULUS) == [gmpy2.invert(v, MODULUS) for v in values]


def test_window_grows_with_the_number_of_bases():
    assert best_window(10, 17) < best_window(10_000, 17) <= best_window(1_000_000, 17)
    assert best_window(10_000, 1) == 2


def test_matmul_equals_numpy_within_fixed_point_tolerance(keys):
    public_key, private_key = keys
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 7))  # rows x features, as a party holds them
    d = rng.normal(size=200)
    gradient = private_key.decrypt(X.T @ public_key.encrypt(d))
    assert gradient.shape == (7,)
    # each entry of X is rounded to 2**-17 at most; the errors add up over at most 200 rows
    tolerance = 200 * 2.0 ** -(DEFAULT_MATMUL_PRECISION + 1) * np.abs(d).max()
    np.testing.assert_allclose(gradient, X.T @ d, rtol=0, atol=tolerance)


def test_matmul_from_the_right_and_with_explicit_precision(keys):
    public_key, private_key = keys
    X = np.array([[1.5, -2.0], [0.0, 3.25], [-0.5, 0.0]])
    d = public_key.encrypt([2.0, -1.0, 4.0])
    np.testing.assert_array_equal(private_key.decrypt(d @ X), X.T @ [2.0, -1.0, 4.0])
    result = d.rmatmul(X.T, precision=3)
    assert result.exponent == d.exponent + 3
    np.testing.assert_array_equal(private_key.decrypt(result), X.T @ [2.0, -1.0, 4.0])


def test_integer_matrices_are_exact_and_keep_the_exponent(keys):
    public_key, private_key = keys
    X = np.array([[1, 0, -7], [0, 0, 0], [2**20, -(2**20), 1]])
    d = public_key.encrypt([3.0, 5.0, 0.5])
    result = X @ d
    assert result.exponent == d.exponent
    np.testing.assert_array_equal(private_key.decrypt(result), X @ np.array([3.0, 5.0, 0.5]))


def test_matmul_with_no_rows_is_an_encryption_of_zero(keys):
    public_key, private_key = keys
    empty = public_key.encrypt(np.zeros(0))
    assert private_key.decrypt(np.ones((2, 0)) @ empty).tolist() == [0.0, 0.0]


def test_matmul_shape_errors(keys):
    public_key, _ = keys
    d = public_key.encrypt([1.0, 2.0])
    with pytest.raises(ValueError):
        np.ones((3, 3)) @ d
    with pytest.raises(ValueError):
        d.reshape(1, 2).rmatmul(np.ones((2, 1)))
