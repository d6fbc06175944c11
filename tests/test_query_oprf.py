"""The 2HashDH OPRF over ristretto255 and the sealed sums built on it."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from isthmus.crypto.oprf import ELEMENT_BYTES, Blinding, OprfKey
from isthmus.crypto.paillier import generate_keypair
from isthmus.query.records import exposure_value, seal, tag_and_pad, total_of
from isthmus.query.sums import add_up, encrypt_unpads, open_sums, packed_count

DOMAIN = b"test-consortium"
INPUTS = [f"C{i:06d}".encode() for i in range(50)]


@pytest.fixture(scope="module")
def private_key():
    return generate_keypair(1024)[1]


def test_oblivious_evaluation_equals_the_key_holders_own():
    key = OprfKey.generate()
    blinding = Blinding(DOMAIN, INPUTS, workers=2)
    assert blinding.finalize(key.evaluate_blinded(blinding.blinded)) == key.evaluate(DOMAIN, INPUTS)


def test_outputs_depend_on_key_domain_and_input():
    key, other = OprfKey.generate(), OprfKey.generate()
    outputs = key.evaluate(DOMAIN, INPUTS)
    assert len(set(outputs)) == len(INPUTS)
    assert not set(outputs) & set(other.evaluate(DOMAIN, INPUTS))
    assert not set(outputs) & set(key.evaluate(b"another-consortium", INPUTS))
    assert OprfKey(key.to_bytes()).evaluate(DOMAIN, INPUTS) == outputs


def test_blinded_elements_are_fresh_each_time():
    first, second = Blinding(DOMAIN, INPUTS[:1]), Blinding(DOMAIN, INPUTS[:1])
    assert first.blinded != second.blinded
    assert INPUTS[0] not in first.blinded


@pytest.mark.parametrize("element", [bytes(32), b"\xff" * 32, b"\x01" * 31, b"\x02" * 33])
def test_key_holder_refuses_invalid_elements(element):
    """The identity, a non-canonical encoding, and lengths that are not whole elements."""
    with pytest.raises(ValueError):
        OprfKey.generate().evaluate_blinded(element)


def test_client_refuses_an_answer_of_the_wrong_length():
    blinding = Blinding(DOMAIN, INPUTS[:3])
    with pytest.raises(ValueError, match="expected 3"):
        blinding.finalize(OprfKey.generate().evaluate_blinded(blinding.blinded)[:ELEMENT_BYTES])


@pytest.mark.parametrize("scalar", [bytes(32), b"\xff" * 32, b"\x01" * 16])
def test_invalid_keys_are_refused(scalar):
    with pytest.raises(ValueError):
        OprfKey(scalar)


def test_key_never_prints():
    key = OprfKey.generate()
    assert key.to_bytes().hex() not in repr(key)


def test_sealed_sums_open_to_the_sum_of_matched_values_only(private_key):
    ids, width = 23, 4
    rng = np.random.default_rng(3)
    outputs = [[secrets.token_bytes(64) for _ in range(width)] for _ in range(ids)]
    matched = rng.random((ids, width)) < 0.5
    exposures = rng.integers(0, 2**53, (ids, width)).tolist()
    sealed = np.zeros((ids, width), dtype=object)
    for row in range(ids):
        for col in range(width):
            record = seal([outputs[row][col]], [exposures[row][col]])[0]
            assert record[:16] == tag_and_pad(outputs[row][col])[0]
            sealed[row, col] = int.from_bytes(record[16:], "big")
    pads = [tag_and_pad(out)[1] for row in outputs for out in row]
    unpads = encrypt_unpads(private_key.public_key, pads, (ids, width))
    packed = add_up(unpads, matched, sealed)
    assert packed.shape == (packed_count(private_key.public_key, ids, width),)
    totals = [total_of(s) for s in open_sums(private_key, packed, ids, width)]
    for row in range(ids):
        hits = [exposures[row][col] for col in range(width) if matched[row, col]]
        assert totals[row] == (len(hits), sum(hits))


def test_the_masking_multiple_changes_every_time(private_key):
    """The asker sees S = sum + 2**128 * (m + R - wraps); a fresh R per answer hides the wraps."""
    pads = [secrets.randbits(128)]
    unpads = encrypt_unpads(private_key.public_key, pads, (1, 1))
    sealed = np.array([[(exposure_value(5) + pads[0]) % 2**128]], dtype=object)
    raws = {private_key.decrypt_raw(add_up(unpads, np.array([[True]]), sealed))[0] for _ in range(3)}
    assert len(raws) == 3
    assert all(total_of(open_sums(private_key, add_up(unpads, np.array([[True]]), sealed), 1, 1)[0]) == (1, 5) for _ in range(2))
