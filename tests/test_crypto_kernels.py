"""The fast kernels under hetero training: signed-digit multi-exponentiation and widening fixed-base tables."""

from __future__ import annotations

import math

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.crypto import fixedbase, fixedpoint, multiexp, parallel
from isthmus.crypto.paillier import generate_keypair

MODULUS = gmpy2.mpz(2**521 - 1)  # a prime, so every base is invertible


def naive(bases, row) -> int:
    return math.prod(int(gmpy2.powmod(b, int(e), MODULUS)) for b, e in zip(bases, row)) % MODULUS


@given(st.lists(st.integers(-(2**62) + 1, 2**62 - 1), max_size=50), st.integers(2, 16))
def test_signed_digits_recompose_the_exponents(values, window):
    exponents = np.array(values, dtype=np.int64)
    digits = multiexp.signed_digits(exponents, window)
    half = 1 << (window - 1)
    assert all(((-half <= d) & (d < half)).all() for d in digits)
    recomposed = [sum(int(d[i]) << (window * k) for k, d in enumerate(digits)) for i in range(len(values))]
    assert recomposed == values


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(2, 2**520), st.integers(-(2**20), 2**20), st.integers(-(2**70), 2**70)),
                min_size=1, max_size=30))
def test_matrix_products_match_powmod_for_int64_and_huge_exponents(terms):
    bases = [gmpy2.mpz(b) for b, _, _ in terms]
    small = np.array([[e for _, e, _ in terms], [-e for _, e, _ in terms]], dtype=np.int64)
    huge = [[e for _, _, e in terms]]  # beyond int64: exact Python ints
    assert multiexp.matrix_products_of_powers(bases, small, MODULUS) == [naive(bases, row) for row in small]
    assert multiexp.matrix_products_of_powers(bases, huge, MODULUS) == [naive(bases, huge[0])]


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setattr(multiexp, "PARALLEL_MIN_PRODUCTS", 16)
    before = parallel.workers()
    parallel.configure(2)
    yield
    parallel.configure(before)


@pytest.mark.parametrize("outputs", [1, 5])  # one output: split the bases; five: split the outputs
def test_parallel_split_agrees_with_serial(two_workers, outputs):
    rng = np.random.default_rng(1)
    bases = [gmpy2.mpz(int(b)) for b in rng.integers(2, 2**62, size=40)]
    exponents = rng.integers(-(2**19), 2**19, size=(outputs, 40))
    assert multiexp.matrix_products_of_powers(bases, exponents, MODULUS) == [naive(bases, row) for row in exponents]


def test_exponent_matrix_shape_is_checked():
    with pytest.raises(ValueError):
        multiexp.matrix_products_of_powers([gmpy2.mpz(3)] * 2, np.ones((1, 3), dtype=np.int64), MODULUS)
    with pytest.raises(ValueError):
        multiexp.product_of_powers([gmpy2.mpz(3)], [1, 2], MODULUS)


def test_integer_array_matches_the_exact_integers():
    values = np.array([[0.5, -1.25, 3.0], [1e-9, -7.75, 2.0]])
    assert fixedpoint.to_integer_array(values, 16).dtype == np.int64
    assert fixedpoint.to_integer_array(values, 16).ravel().tolist() == [round(v * 2**16) for v in values.ravel()]
    big = fixedpoint.to_integer_array(np.array([2.0**70, -3.0]), 8)
    assert big.dtype == object and big.tolist() == [2**78, -3 * 2**8]
    assert fixedpoint.to_integer_array(np.array([2**61, -5], dtype=np.int64), 4).tolist() == [2**65, -80]


def test_fixed_base_table_widens_after_enough_powers_and_stays_correct(monkeypatch):
    monkeypatch.setattr(fixedbase, "WIDE_AFTER", 64)
    base, modulus = gmpy2.mpz(7), gmpy2.mpz(2**127 - 1)
    powers = fixedbase.FixedBasePowers(base, modulus, exponent_bits=256)
    assert powers.window == 8
    powers.random_powers(64)
    assert powers.window == 12  # a 127-bit modulus fits the widest table easily
    table = powers._table
    digits = [4095, 0, 17] + [1] * (table.rows - 3)
    exponent = sum(d << (12 * i) for i, d in enumerate(digits))
    assert table.rows * 12 >= 256
    assert table._power(digits) == gmpy2.powmod(base, exponent, modulus)
    assert len(set(powers.random_powers(50))) == 50


def test_encryption_after_the_table_widens(monkeypatch):
    monkeypatch.setattr(fixedbase, "WIDE_AFTER", 8)
    public_key, private_key = generate_keypair(1024)
    values = np.linspace(-3, 3, 20)
    public_key.encrypt(values)
    assert public_key._fixed_base().window == 12
    np.testing.assert_allclose(private_key.decrypt(public_key.encrypt(values)), values, atol=2**-32)


def test_table_budget_narrows_the_window_for_big_moduli(monkeypatch):
    monkeypatch.setattr(fixedbase, "TABLE_BUDGET", 4 << 20)
    powers = fixedbase.FixedBasePowers(gmpy2.mpz(3), gmpy2.mpz(2**1023 - 1), exponent_bits=256)
    powers.random_powers(fixedbase.WIDE_AFTER)
    assert powers.window == 10  # 26 rows x 1024 entries x 128 bytes fit 4 MiB; 11-bit digits would not
    monkeypatch.setattr(fixedbase, "TABLE_BUDGET", 1 << 20)
    small = fixedbase.FixedBasePowers(gmpy2.mpz(3), gmpy2.mpz(2**1023 - 1), exponent_bits=256)
    small.random_powers(fixedbase.WIDE_AFTER)
    assert small.window == 8 and small._widened  # nothing wider fits: the byte table stays, built once


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 40), st.integers(1, 4), st.sampled_from([2**5, 2**33, 2**70]), st.randoms(use_true_random=False))
def test_shared_base_tables_match_powmod_for_many_rows(outputs, count, bound, rng):
    """Many rows over the same few bases (``X @ [[w]]``): the per-base tables agree with powmod, for
    signed, int64 and beyond-int64 exponents, whichever route the cost model would pick."""
    bases = [gmpy2.mpz(rng.randrange(2, 2**520)) for _ in range(count)]
    exponents = multiexp._exponent_matrix([[rng.randrange(-bound, bound) for _ in range(count)] for _ in range(outputs)], count)
    expected = [naive(bases, row) for row in exponents]
    assert multiexp._shared_base_products(bases, exponents, MODULUS, 3) == expected
    assert multiexp.matrix_products_of_powers(bases, exponents, MODULUS) == expected


@pytest.mark.parametrize("workers", [1, 2])
def test_row_products_take_each_rows_own_bases(two_workers, workers):
    parallel.configure(workers)
    rng = np.random.default_rng(2)
    bases = [gmpy2.mpz(int(b)) for b in rng.integers(2, 2**62, size=9 * 4)]
    exponents = rng.integers(-(2**23), 2**23, size=(9, 4))
    expected = [naive(bases[4 * i:4 * i + 4], row) for i, row in enumerate(exponents)]
    assert multiexp.row_products_of_powers(bases, exponents, MODULUS) == expected
