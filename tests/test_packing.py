"""Packing several fixed-point values per plaintext: exact round trips, headroom, merging, limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.crypto.packing import Packer, decrypt_packed, encrypt_packed
from isthmus.crypto.paillier import CipherArray, PaillierPublicKey, generate_keypair
from isthmus.errors import EncodingOverflowError


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


def test_slot_arithmetic(keys):
    packer = Packer(keys[0], precision=20, value_bits=32, max_addends=1)
    assert (packer.slot_bits, packer.capacity) == (32, 1023 // 32)
    packer = Packer(keys[0], precision=16, value_bits=24, max_addends=1000)
    assert (packer.slot_bits, packer.capacity) == (34, 1023 // 34)  # 1000 addends need 10 bits
    assert Packer(keys[0], max_addends=1024).slot_bits == 42 and Packer(keys[0], max_addends=1025).slot_bits == 43
    assert packer.value_range == (-(2**23) / 2**16, (2**23 - 1) / 2**16)


@settings(max_examples=40, deadline=None)
@given(
    precision=st.integers(0, 30),
    value_bits=st.integers(2, 40),
    max_addends=st.integers(1, 5000),
    data=st.data(),
)
def test_sums_at_the_precision_and_headroom_limits_unpack_exactly(keys, precision, value_bits, max_addends, data):
    packer = Packer(keys[0], precision=precision, value_bits=value_bits, max_addends=max_addends)
    low, high = -(2 ** (value_bits - 1)), 2 ** (value_bits - 1) - 1  # fixed-point numerators
    slots = data.draw(st.integers(1, min(4, packer.capacity)))
    numerators = data.draw(st.lists(st.sampled_from([low, high, 0, low + 1, high - 1]), min_size=slots, max_size=slots))
    addends = data.draw(st.sampled_from([1, max_addends]))
    row = np.array(numerators, dtype=np.float64) / 2**precision
    # `addends` copies of the same row, summed in plaintext (what the ciphertext sum decrypts to)
    packed = packer.pack(row.reshape(1, -1))[0] * addends
    unpacked = packer.unpack([packed], slots=slots, addends=addends)
    assert unpacked.tolist() == [[addends * m / 2**precision for m in numerators]]


@given(st.floats(min_value=-1e30, max_value=1e30), st.integers(0, 20), st.integers(2, 40))
def test_values_outside_the_slot_range_are_refused(value, precision, value_bits):
    packer = Packer(PaillierPublicKey(2**1024 - 105), precision=precision, value_bits=value_bits)
    low, high = packer.value_range
    numerator = round(value * 2**precision)
    if -(2 ** (value_bits - 1)) <= numerator <= 2 ** (value_bits - 1) - 1:
        assert packer.unpack(packer.pack([[value]]), slots=1)[0, 0] == numerator / 2**precision
    else:
        with pytest.raises(EncodingOverflowError, match=r"must lie in \["):
            packer.pack([[value]])


def test_configurations_that_cannot_fit_are_refused(keys):
    with pytest.raises(EncodingOverflowError):
        Packer(keys[0], value_bits=1024)
    packer = Packer(keys[0], value_bits=32)
    with pytest.raises(EncodingOverflowError):
        packer.pack(np.zeros((1, packer.capacity + 1)))
    with pytest.raises(EncodingOverflowError):
        packer.merge(packer.encrypt(np.zeros((2, 2))), slots=2, groups=packer.capacity)
    with pytest.raises(EncodingOverflowError, match="headroom"):
        packer.unpack(packer.pack([[1.0]]), slots=1, addends=2)


def test_a_slot_that_overflowed_is_reported(keys):
    packer = Packer(keys[0], precision=0, value_bits=4, max_addends=4)
    with pytest.raises(EncodingOverflowError, match="overflowed"):
        packer.unpack([61], slots=1, addends=4)  # four 4-bit values sum to at most 60
    with pytest.raises(EncodingOverflowError, match="overflowed"):
        packer.unpack([64], slots=1, addends=4)  # carried out of the 6-bit slot


def test_throughput_packing_round_trip(keys):
    public_key, private_key = keys
    values = np.random.default_rng(4).normal(scale=100, size=1000)
    c = encrypt_packed(public_key, values)
    assert c.shape == (-(-1000 // Packer(public_key).capacity),)
    np.testing.assert_array_equal(decrypt_packed(private_key, c, 1000), np.rint(values * 2**20) / 2**20)


def test_secureboost_histogram_flow(keys):
    """Guest packs (g, h) per row; host sums per bin and merges bins; guest unpacks exact sums."""
    public_key, private_key = keys
    rng = np.random.default_rng(5)
    rows = 300
    gh = np.column_stack([rng.uniform(-1, 1, rows), rng.uniform(0, 0.25, rows)])
    packer = Packer(public_key, precision=20, value_bits=24, max_addends=rows)
    encrypted = packer.encrypt(gh)  # one ciphertext per row
    assert encrypted.shape == (rows,)

    bins = rng.integers(0, 7, rows)
    sums = CipherArray.concatenate([encrypted[bins == b].sum().reshape(1) for b in range(7)])
    merged = packer.merge(sums, slots=2, groups=3)  # 7 bins -> 3 ciphertexts, the last one padded
    assert merged.shape == (3,)

    counts = np.bincount(bins, minlength=7)[:, None]
    histogram = packer.decrypt(private_key, merged, slots=2, groups=3, count=7, addends=counts)
    quantised = np.rint(gh * 2**20) / 2**20
    expected = np.array([quantised[bins == b].sum(axis=0) for b in range(7)])
    np.testing.assert_array_equal(histogram, expected)
    np.testing.assert_array_equal(packer.decrypt(private_key, sums, slots=2, addends=counts), expected)
