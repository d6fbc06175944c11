"""Fixed-point encoding, property-based: negatives, zeros, extremes, overflow at both ends."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.crypto import fixedpoint
from isthmus.crypto.paillier import generate_keypair
from isthmus.errors import EncodingOverflowError

N = 2**1024 - 105  # an odd 1024-bit modulus: encoding needs no factors
LIMIT = N // 3
precisions = st.integers(min_value=0, max_value=60)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e200, max_value=1e200)


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


@given(st.lists(finite, max_size=20), precisions)
def test_floats_round_to_the_nearest_multiple_of_the_resolution(values, precision):
    integers, shape = fixedpoint.encode(np.array(values, dtype=np.float64), precision, N)
    signed = [fixedpoint.signed(m, N) for m in integers]
    decoded = fixedpoint.decode(signed, precision, shape)
    assert decoded.tolist() == [round(v * 2**precision) / 2**precision for v in values]


@given(st.lists(st.integers(min_value=-LIMIT, max_value=LIMIT), max_size=20))
def test_integers_at_precision_zero_are_exact_up_to_the_limit(values):
    integers, _ = fixedpoint.encode(np.array(values, dtype=object), 0, N)
    assert all(0 <= m < N for m in integers)
    assert [fixedpoint.signed(m, N) for m in integers] == values


@given(st.integers(min_value=LIMIT + 1, max_value=N * 4), st.booleans())
def test_integers_beyond_the_limit_are_refused(value, negative):
    with pytest.raises(EncodingOverflowError, match="represents"):
        fixedpoint.encode(np.array([-value if negative else value], dtype=object), 0, N)


@given(st.integers(min_value=LIMIT + 1, max_value=N - LIMIT - 1))
def test_plaintexts_in_the_middle_third_are_reported_as_wrapped(m):
    with pytest.raises(EncodingOverflowError):
        fixedpoint.signed(m, N)


@given(st.lists(st.integers(min_value=-(2**62), max_value=2**62), min_size=1, max_size=10), precisions)
def test_int64_arrays_are_scaled_exactly(values, precision):
    assert fixedpoint.to_integers(np.array(values, dtype=np.int64), precision) == [v << precision for v in values]


@given(st.lists(finite, min_size=1, max_size=10), st.integers(min_value=0, max_value=40))
def test_minimal_precision_is_exact_and_minimal(values, cap):
    array = np.array(values)
    p = fixedpoint.minimal_precision(array, cap)
    assert 0 <= p <= cap
    if p < cap:
        assert all(v * 2**p == round(v * 2**p) for v in values)
        if p > 0:
            assert not all(v * 2 ** (p - 1) == round(v * 2 ** (p - 1)) for v in values)


def test_minimal_precision_of_common_multipliers():
    assert fixedpoint.minimal_precision(np.array([2.0, -3.0, 0.0]), 32) == 0
    assert fixedpoint.minimal_precision(np.array([0.5, 0.25]), 32) == 2
    assert fixedpoint.minimal_precision(np.array([0.1]), 32) == 32
    assert fixedpoint.minimal_precision(np.array([1, 2]), 32) == 0


def test_the_extremes_encrypt_and_decrypt(keys):
    public_key, private_key = keys
    limit = int(public_key.n) // 3
    values = np.array([limit, -limit, 0, 1, -1], dtype=object)
    assert private_key.decrypt_encoded(public_key.encrypt(values, precision=0)) == values.tolist()
    with pytest.raises(EncodingOverflowError):
        public_key.encrypt(np.array([limit + 1], dtype=object), precision=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=5), st.integers(0, 40))
def test_encrypted_round_trip(keys, values, precision):
    public_key, private_key = keys
    decrypted = private_key.decrypt(public_key.encrypt(values, precision=precision))
    np.testing.assert_allclose(decrypted, values, rtol=0, atol=2.0 ** -(precision + 1) * 1.000001)
