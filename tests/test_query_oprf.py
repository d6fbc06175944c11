"""The 2HashDH OPRF over ristretto255 and the sealed sums built on it."""

from __future__ import annotations

import secrets
import subprocess
import sys

import numpy as np
import pytest

from isthmus.crypto.oprf import ELEMENT_BYTES, Blinding, OprfKey, _multiply
from isthmus.crypto.paillier import generate_keypair
from isthmus.query.records import exposure_value, seal, tag_and_pad, total_of
from isthmus.query.sums import add_up, encrypt_unpads, open_sums, packed_count

DOMAIN = b"test-consortium"
INPUTS = [f"C{i:06d}".encode() for i in range(50)]


@pytest.fixture(scope="module")
def private_key():
    return generate_keypair(1024)[1]


# Computed with the first implementation (libsodium through pysodium): a change of binding must not
# change a single published pseudonym, or every institution's records would stop matching. The key
# is SHA-512("isthmus oprf known answer") reduced modulo the group order.
KNOWN_KEY = "7ee37180aadd61758567c52840d6c528cdd4002ce8569a1d81a27c9f0614ea0f"
KNOWN_OUTPUTS = {
    b"C000001": "5dac2622532e2b6044429103ce301d8e71273951b6338dde666b7845fc511f94"
                "565eb8791e8d314ae8d2b6938409beb23da1acbf10e2ca1b8367cf3a92ba60cd",
    b"": "8395039dbf934fc71fdd2024fcbc3bc0a7b4e6f526c2ce2e7dcb6f053774a0c9"
         "10a2428818af0676f6267f8675c362ed39ed67bdb849cafe2c0d002e484fd31d",
}
# RFC 9496 appendix A.1: the encodings of the generator B and of 2B.
RFC9496_B = "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"
RFC9496_2B = "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919"


def test_outputs_equal_the_known_answers():
    key = OprfKey(bytes.fromhex(KNOWN_KEY))
    outputs = key.evaluate(b"kat-consortium", list(KNOWN_OUTPUTS))
    assert [o.hex() for o in outputs] == list(KNOWN_OUTPUTS.values())
    blinding = Blinding(b"kat-consortium", list(KNOWN_OUTPUTS))
    assert blinding.finalize(key.evaluate_blinded(blinding.blinded)) == outputs


def test_the_group_is_ristretto255_of_rfc_9496():
    assert _multiply((2).to_bytes(32, "little"), bytes.fromhex(RFC9496_B)).hex() == RFC9496_2B


def test_a_fresh_process_needs_no_system_libsodium_and_leaves_no_library_behind(tmp_path):
    """The OPRF loads the libsodium bundled in its wheel, and the copy it loads from is removed."""
    code = ("import ctypes.util, sys; sys.modules['ctypes.util'].find_library = lambda name: None; "
            "import isthmus.crypto.oprf as o; print(o.OprfKey.generate().evaluate(b'd', [b'x'])[0].hex())")
    env = {"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(bytes.fromhex(result.stdout.strip())) == 64
    assert list(tmp_path.iterdir()) == []


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
