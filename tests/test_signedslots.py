"""Signed slots: packed matrices round-trip exactly, and products by signed plaintext matrices computed
on packed ciphertexts (SIMD) equal the plain computation, for negatives, zeros and one row; the
few-bases products (subset tables) that compute hetero_nn's packed activation gradients equal powmod."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus.crypto.paillier import generate_keypair
from isthmus.crypto.signedslots import SignedSlots
from isthmus.errors import EncodingOverflowError

EXPONENT = 40


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


@pytest.fixture(scope="module")
def slots(keys):
    return SignedSlots.for_values(keys[0], 1e8, EXPONENT)


def test_layout_follows_the_key_and_the_bound(keys, slots):
    assert slots.slot_bits == 40 + 27 + 2 and slots.capacity == 1023 // 69 == 14
    assert slots.chunks(14) == 1 and slots.chunks(15) == 2 and slots.chunks(32) == 3
    with pytest.raises(EncodingOverflowError):
        SignedSlots(keys[0], 1024)


@pytest.mark.parametrize("shape", [(1, 1), (1, 32), (5, 14), (3, 29)])
def test_integers_round_trip_exactly_with_negatives_and_zeros(slots, shape):
    rng = np.random.default_rng(1)
    limit = 1 << (slots.slot_bits - 1)
    integers = rng.integers(-(1 << 62), 1 << 62, shape).astype(object)
    integers.flat[0], integers.flat[-1] = limit - 1, -(limit - 1)  # the extremes of a slot
    integers[:, 1::3] = 0
    assert np.array_equal(slots.unpack_rows(slots.pack_rows(integers), shape[1]), integers)


def test_a_value_beyond_its_slot_is_refused_and_an_overflowed_plaintext_reported(slots):
    with pytest.raises(EncodingOverflowError, match="does not fit"):
        slots.pack_rows(np.array([[1 << (slots.slot_bits - 1)]], dtype=object))
    packed = slots.pack_rows(np.array([[5, -3]], dtype=object))
    packed[0, 0] += 1 << (2 * slots.slot_bits)  # something above the two slots in use
    with pytest.raises(EncodingOverflowError, match="overflowed"):
        slots.unpack_rows(packed, 2)


def test_packed_products_by_signed_matrices_equal_the_plain_computation(keys, slots):
    """The three products of hetero_nn's interactive layer, on packed ciphertexts, against numpy."""
    public, private = keys
    rng = np.random.default_rng(2)
    alpha, weights, delta = rng.normal(size=(20, 17)), rng.normal(size=(17, 3)), rng.normal(size=(20, 3))
    delta[:, 1] = 0
    by_column = slots.encrypt_rows(alpha.T, 24)  # (17, chunks of 20 rows)
    z = [by_column[:, g].rmatmul(weights.T, precision=16) for g in range(by_column.shape[1])]
    z = np.stack([c.ciphertexts() for c in z], axis=1)  # (3, chunks): row j packs z[:, j]
    decoded = slots.decode_rows(np.array(private.decrypt_integers(z.ravel().tolist()), dtype=object).reshape(z.shape),
                                20, 40)
    np.testing.assert_allclose(decoded.T, alpha @ weights, atol=1e-4)

    by_row = slots.encrypt_rows(alpha, 24)  # (20, 2): row i packs alpha[i]
    gradient = [by_row[:, c].rmatmul(delta.T, precision=16) for c in range(by_row.shape[1])]
    gradient = slots.decode_rows(np.array([private.decrypt_raw(g) for g in gradient], dtype=object).T, 17, 40)
    np.testing.assert_allclose(gradient, (alpha.T @ delta).T, atol=1e-3)

    one = slots.encrypt_rows(weights.T[:, :1], 24)  # one column: a (3, 1) packing
    row = one[:, 0].rmatmul(delta[:1], precision=16)
    assert np.allclose(slots.decrypt_rows(private, row.reshape(1, 1), 1), delta[:1] @ weights[:1].T, atol=1e-4)


def test_adding_packed_plaintexts_adds_slot_by_slot(keys, slots):
    public, private = keys
    a, b = np.array([[1.5, -2.25, 0.0]]), np.array([[-1.5, 4.0, -7.125]])
    cipher = slots.encrypt_rows(a, EXPONENT)
    plus = cipher.plus_encoded(slots.pack_rows(np.rint(b * 2.0**EXPONENT).astype(np.int64)).ravel().tolist())
    np.testing.assert_array_equal(slots.decrypt_rows(private, plus, 3), a + b)


@pytest.mark.parametrize("shape", [(1, 1), (1, 8), (40, 3), (9, 8)])
def test_few_bases_products_equal_separate_powers_for_any_signs(keys, shape):
    """The subset-table path of matrix_products_of_powers (packed activation gradients: k bases, B rows)."""
    from isthmus.crypto.multiexp import few_bases_products, matrix_products_of_powers

    public = keys[0]
    modulus, rng = public.nsquare, np.random.default_rng(3)
    bases = public.encrypt(rng.normal(size=shape[1])).ciphertexts()
    exponents = rng.integers(-(1 << 17), 1 << 17, shape)
    exponents[0, 0], exponents[-1, :] = 0, -(1 << 17)
    expected = [gmpy2_product(bases, row, modulus) for row in exponents.tolist()]
    assert few_bases_products(bases, exponents, modulus) == expected
    assert matrix_products_of_powers(bases, exponents, modulus) == expected
    assert few_bases_products(bases, np.zeros(shape, dtype=np.int64), modulus) == [1] * shape[0]


def gmpy2_product(bases, exponents, modulus):
    import gmpy2

    result = gmpy2.mpz(1)
    for b, e in zip(bases, exponents):
        result = result * gmpy2.powmod(b, e, modulus) % modulus
    return result
