"""The pieces under PSI: id normalisation, X25519 blinding, RSA blind signatures, batching, wire checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus.crypto import ecdh, rsa_blind
from isthmus.crypto.batchpool import BatchPool, split_evenly
from isthmus.data.ids import canonical_id, canonical_ids
from isthmus.errors import DataError, ProtocolError
from isthmus.protocols.psi_wire import decode_indices, encode_indices

# --- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [(133, "133"), (np.int64(-7), "-7"), (np.uint64(2**63), str(2**63)), (133.0, "133"), (np.float32(5), "5"),
     (" 133\t", "133"), ("007", "007"), ("Cafe\u0301", "Caf\u00e9"), ("x y", "x y")],
)
def test_ids_are_compared_in_one_canonical_form(raw, expected):
    assert canonical_id(raw, party="p", row=0) == expected


@pytest.mark.parametrize(
    "raw, message",
    [(True, "boolean"), (np.bool_(False), "boolean"), (1.5, "float 1.5"), (float("nan"), "missing"), (2.0**60, "float"),
     (None, "missing"), ("  ", "empty"), (b"133", "unsupported type bytes"), ([1], "unsupported type list")],
)
def test_unusable_ids_name_the_party_and_row(raw, message):
    with pytest.raises(DataError, match=message) as error:
        canonical_id(raw, party="bank", row=4)
    assert "'bank'" in str(error.value) and "row 4" in str(error.value)


def test_a_column_mixing_ints_and_strings_is_compared_as_text():
    ids = canonical_ids([1, "a", " 2", 3.0], party="p")
    assert ids.values == ["1", "a", "2", "3"] and list(ids.rows) == [0, 1, 2, 3]
    with pytest.raises(DataError, match="rows 0 and 1"):
        canonical_ids([7, "7"], party="p")


def test_repeated_ids_are_refused_or_keep_their_first_row():
    with pytest.raises(DataError, match=r"party 'p': id 'b' appears in rows 1 and 3"):
        canonical_ids(["a", "b", "c", "b"], party="p")
    ids = canonical_ids(["a", "b", "c", "b", "a"], party="p", dedupe="first")
    assert ids.values == ["a", "b", "c"] and list(ids.rows) == [0, 1, 2]


def test_pandas_columns_with_gaps_are_read_as_missing():
    assert canonical_ids(pd.Series([3, 4], dtype="Int64"), party="p").values == ["3", "4"]
    with pytest.raises(DataError, match="row 1 is missing"):
        canonical_ids(pd.Series([3, None], dtype="Int64"), party="p")
    with pytest.raises(DataError, match="row 0 is missing"):
        canonical_ids(pd.Series([None, "a"], dtype="string"), party="p")


# --- X25519 blinding ----------------------------------------------------------------------------


def test_blinding_commutes_and_depends_on_key_and_salt():
    a, b, salt = ecdh.new_key(), ecdh.new_key(), ecdh.new_key()
    ids = ["alice", "bob", "carol"]
    ab = ecdh.blind_points(b, ecdh.blind_ids(a, salt, ids))
    ba = ecdh.blind_points(a, ecdh.blind_ids(b, salt, ids))
    assert ab == ba and len(ab) == 3 * ecdh.POINT_BYTES
    assert ecdh.blind_ids(a, salt, ids) != ecdh.blind_ids(b, salt, ids)
    assert ecdh.blind_ids(a, salt, ids) != ecdh.blind_ids(a, ecdh.new_key(), ids)


def test_the_unblinding_key_strips_exactly_its_key():
    key, unblinding = ecdh.new_key_with_inverse()
    other, salt, ids = ecdh.new_key(), bytes(16), ["p", "q"]
    both = ecdh.blind_points(other, ecdh.blind_ids(key, salt, ids))
    assert ecdh.blind_points(unblinding, both) == ecdh.blind_ids(other, salt, ids)


@given(st.text(max_size=40), st.binary(min_size=16, max_size=64))
def test_ids_hash_to_canonical_points_of_the_curve(identifier, salt):
    point = ecdh.hash_to_point(identifier, salt)
    assert len(point) == 32 and ecdh._on_curve(int.from_bytes(point, "little"))
    assert point == ecdh.hash_to_point(identifier, salt)


def test_hash_to_point_lands_on_the_twist_half_of_the_time_before_retrying():
    """Guard for the retry: without it, about half of the ids would hash onto the twist."""
    import hashlib

    first_tries = [hashlib.blake2b(b"\0\0\0\0" + str(i).encode(), digest_size=32, key=bytes(32), person=ecdh._PERSON).digest() for i in range(400)]
    on_curve = sum(ecdh._on_curve(int.from_bytes(d, "little") & ((1 << 255) - 1)) for d in first_tries)
    assert 120 < on_curve < 280


@pytest.mark.parametrize(
    "points, message",
    [(b"\x05" * 31, "whole number"), (bytes(32), "not a canonical point"), ((1).to_bytes(32, "little"), "small order"),
     ((2**255 - 19).to_bytes(32, "little"), "not a canonical point")],
)
def test_hostile_points_are_refused(points, message):
    with pytest.raises(ValueError, match=message):
        ecdh.blind_points(ecdh.new_key(), points)


# --- RSA blind signatures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key():
    return rsa_blind.RsaPrivateKey.generate()


def test_blind_signatures_match_the_servers_own_signatures(rsa_key):
    salt = bytes(range(32))
    public = rsa_blind.RsaPublicKey.from_wire(rsa_key.public.to_wire())
    client_ids = ["x1", "x2", "x3", "x4"]
    blinded, unblinders = rsa_blind.blind_ids(public, salt, client_ids)
    digests = rsa_blind.unblind(public, salt, client_ids, rsa_blind.sign_blinded(rsa_key, blinded), unblinders)
    assert digests == rsa_blind.sign_ids(rsa_key, salt, client_ids)
    assert blinded != rsa_blind.blind_ids(public, salt, client_ids)[0]  # fresh blinding every time


def test_blinded_values_outside_the_modulus_are_refused(rsa_key):
    width = rsa_key.public.byte_length
    with pytest.raises(ValueError, match="outside"):
        rsa_blind.sign_blinded(rsa_key, (5).to_bytes(width, "big") + bytes(width))
    with pytest.raises(ValueError, match="outside"):
        rsa_blind.sign_blinded(rsa_key, rsa_key.public.n.to_bytes(width, "big"))
    with pytest.raises(ValueError, match="whole number"):
        rsa_blind.sign_blinded(rsa_key, bytes(width + 1))


def test_a_signature_that_does_not_verify_is_caught(rsa_key):
    salt = bytes(32)
    blinded, unblinders = rsa_blind.blind_ids(rsa_key.public, salt, ["a", "b"])
    signed = bytearray(rsa_blind.sign_blinded(rsa_key, blinded))
    signed[-1] ^= 1
    with pytest.raises(ValueError, match="signature 1 does not verify"):
        rsa_blind.unblind(rsa_key.public, salt, ["a", "b"], bytes(signed), unblinders)


# --- batching and wire checks --------------------------------------------------------------------


@given(st.integers(0, 5000), st.integers(1, 8), st.integers(1, 700))
def test_split_evenly_covers_everything_in_balanced_bounded_pieces(count, parts, max_part):
    ranges = split_evenly(count, parts, max_part)
    assert [i for start, stop in ranges for i in range(start, stop)] == list(range(count))
    sizes = [stop - start for start, stop in ranges]
    assert all(0 < size <= max_part for size in sizes)
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert len(ranges) >= min(count, parts)


def test_batch_pool_hands_worker_failures_back_through_the_future():
    for workers in (1, 2):
        with BatchPool(workers) as pool:
            assert pool.submit(ecdh.blind_points, ecdh.new_key(), b"").result() == b""
            with pytest.raises(ValueError, match="small order"):
                pool.submit(ecdh.blind_points, ecdh.new_key(), (1).to_bytes(32, "little")).result()


def test_indices_round_trip_and_are_checked():
    data = encode_indices(np.array([4, 0, 2]))
    assert list(decode_indices(data, bound=5, max_count=3, peer="p", tag="t")) == [4, 0, 2]
    for bad, bound, max_count in ((data, 4, 3), (data, 5, 2), (encode_indices(np.array([1, 1])), 5, 3), (data[:-1], 5, 3)):
        with pytest.raises(ProtocolError) as error:
            decode_indices(bad, bound=bound, max_count=max_count, peer="p", tag="t")
        assert error.value.peer == "p" and error.value.tag == "t"
