"""Paillier keys, ciphertext arithmetic, wire format and masking (1024-bit keys for speed)."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus.crypto.paillier import (
    DEFAULT_KEY_BITS,
    DEFAULT_PRECISION,
    CipherArray,
    PaillierPublicKey,
    generate_keypair,
)
from isthmus.errors import ConfigError, EncodingOverflowError, KeyMismatchError, ProtocolError
from isthmus.transport import codec

RESOLUTION = 2.0**-DEFAULT_PRECISION


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


@pytest.fixture(scope="module")
def other_keys():
    return generate_keypair(1024)


# -- keys -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [512, 1023, 8193, "2048"])
def test_key_sizes_outside_the_allowed_range_are_refused(bits):
    with pytest.raises(ConfigError, match="1024"):
        generate_keypair(bits)


def test_default_key_has_2048_bits_and_round_trips():
    public_key, private_key = generate_keypair()
    assert public_key.bits == DEFAULT_KEY_BITS == 2048
    assert public_key.n.bit_length() == 2048
    values = np.array([-1.5, 0.0, 123456.789])
    np.testing.assert_allclose(private_key.decrypt(public_key.encrypt(values)), values, atol=RESOLUTION)


def test_keys_are_fresh_and_identified_by_the_hash_of_n(keys, other_keys):
    public_key, _ = keys
    assert public_key.n != other_keys[0].n
    assert len(public_key.fingerprint) == 64 and int(public_key.fingerprint, 16) >= 0
    assert public_key.fingerprint != other_keys[0].fingerprint


def test_keys_with_the_same_n_are_one_object(keys):
    public_key, _ = keys
    assert PaillierPublicKey(int(public_key.n)) is public_key
    assert PaillierPublicKey.from_wire(public_key.to_wire()) is public_key


# -- encryption and encoding ------------------------------------------------------------------------
def test_round_trip_keeps_shape_and_values(keys):
    public_key, private_key = keys
    values = np.random.default_rng(1).normal(scale=1e3, size=(3, 4))
    decrypted = private_key.decrypt(public_key.encrypt(values))
    assert decrypted.shape == (3, 4) and decrypted.dtype == np.float64
    np.testing.assert_allclose(decrypted, values, rtol=0, atol=RESOLUTION)


def test_scalars_lists_and_empty_arrays(keys):
    public_key, private_key = keys
    assert private_key.decrypt(public_key.encrypt(-2.5)).shape == ()
    assert private_key.decrypt(public_key.encrypt(-2.5)) == -2.5
    assert private_key.decrypt(public_key.encrypt([1, 2, 3])).tolist() == [1.0, 2.0, 3.0]
    assert private_key.decrypt(public_key.encrypt(np.zeros((0, 3)))).shape == (0, 3)


def test_precision_zero_encrypts_big_integers_exactly(keys):
    public_key, private_key = keys
    values = np.array([2**200, -(2**150) - 1, 0, 7], dtype=object)
    c = public_key.encrypt(values, precision=0)
    assert c.exponent == 0
    assert private_key.decrypt_encoded(c) == [2**200, -(2**150) - 1, 0, 7]


def test_encryptions_of_the_same_value_differ(keys):
    public_key, _ = keys
    a, b = public_key.encrypt([1.0, 1.0]).ciphertexts()
    assert a != b


def test_encoding_overflow_reports_the_representable_range(keys):
    public_key, _ = keys
    with pytest.raises(EncodingOverflowError, match=r"represents \[-"):
        public_key.encrypt(np.array([2**2000], dtype=object), precision=0)
    with pytest.raises(EncodingOverflowError):
        public_key.encrypt(1e300)  # 1e300 * 2**32 exceeds a 1024-bit modulus
    with pytest.raises(EncodingOverflowError):
        public_key.encrypt(np.inf)
    with pytest.raises(ValueError, match="NaN"):
        public_key.encrypt([1.0, np.nan])
    with pytest.raises(TypeError):
        public_key.encrypt(["a"])


def test_a_wrapped_sum_is_detected_at_decryption(keys):
    public_key, private_key = keys
    near_limit = public_key.encrypt(np.array([int(public_key.n) // 3], dtype=object), precision=0)
    assert private_key.decrypt_encoded(near_limit) == [int(public_key.n) // 3]
    with pytest.raises(EncodingOverflowError, match="overflowed"):
        private_key.decrypt(near_limit + near_limit)


def test_precomputed_randomness_is_used_and_still_decrypts(keys):
    public_key, private_key = keys
    before = public_key.precomputed
    public_key.precompute(4)
    assert public_key.precomputed == before + 4
    c = public_key.encrypt([1.0, 2.0, 3.0])
    assert public_key.precomputed == before + 1
    assert private_key.decrypt(c).tolist() == [1.0, 2.0, 3.0]


# -- homomorphic arithmetic -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(keys):
    public_key, _ = keys
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=6), rng.normal(size=6)
    return x, y, public_key.encrypt(x), public_key.encrypt(y)


def test_addition_and_subtraction(keys, pair):
    _, private_key = keys
    x, y, cx, cy = pair
    for result, expected in [
        (cx + cy, x + y),
        (cx - cy, x - y),
        (cx + y, x + y),
        (y + cx, x + y),
        (cx - 1.25, x - 1.25),
        (3 - cx, 3 - x),
        (-cx, -x),
        (sum([cx, cx, cy]), 2 * x + y),
        (cx - np.arange(6, dtype=np.uint8), x - np.arange(6)),
    ]:
        np.testing.assert_allclose(private_key.decrypt(result), expected, atol=4 * RESOLUTION)


def test_ndarray_on_the_left_defers_to_the_ciphertext(keys, pair):
    _, private_key = keys
    x, y, cx, _ = pair
    result = y + cx
    assert isinstance(result, CipherArray)
    assert isinstance(y * cx, CipherArray)


def test_multiplication_by_plaintext(keys, pair):
    _, private_key = keys
    x, y, cx, _ = pair
    np.testing.assert_allclose(private_key.decrypt(cx * y), x * y, atol=1e-8)
    np.testing.assert_allclose(private_key.decrypt(-0.75 * cx), -0.75 * x, atol=1e-8)
    np.testing.assert_allclose(private_key.decrypt(cx / 4), x / 4, atol=1e-8)
    assert private_key.decrypt(cx * 0).tolist() == [0.0] * 6


def test_exact_multipliers_keep_the_exponent_short(keys, pair):
    x, y, cx, _ = pair
    assert (cx * 2).exponent == cx.exponent
    assert (cx * np.array([1, -3, 4, 0, 5, 6])).exponent == cx.exponent
    assert (cx * 0.5).exponent == cx.exponent + 1
    assert (cx * y).exponent == cx.exponent + 32
    assert cx.mul(y, precision=8).exponent == cx.exponent + 8


def test_operands_at_different_exponents_are_aligned(keys):
    public_key, private_key = keys
    coarse = public_key.encrypt([1.5, -2.0], precision=4)
    fine = public_key.encrypt([0.001, 0.002], precision=40)
    total = coarse + fine
    assert total.exponent == 40
    np.testing.assert_allclose(private_key.decrypt(total), [1.501, -1.998], atol=1e-11)


def test_broadcasting_and_sums_along_axes(keys):
    public_key, private_key = keys
    x = np.arange(6.0).reshape(2, 3)
    c = public_key.encrypt(x)
    np.testing.assert_array_equal(private_key.decrypt(c + np.array([10.0, 20.0, 30.0])), x + [10, 20, 30])
    np.testing.assert_array_equal(private_key.decrypt(c * np.array([[2], [3]])), x * [[2], [3]])
    assert private_key.decrypt(c.sum()) == 15.0
    np.testing.assert_array_equal(private_key.decrypt(c.sum(axis=0)), x.sum(axis=0))
    np.testing.assert_array_equal(private_key.decrypt(c.sum(axis=1)), x.sum(axis=1))


def test_indexing_and_reshaping(keys):
    public_key, private_key = keys
    x = np.arange(12.0)
    c = public_key.encrypt(x)
    assert len(c) == 12 and c.size == 12 and c.ndim == 1
    assert private_key.decrypt(c[3]) == 3.0 and c[3].shape == ()
    np.testing.assert_array_equal(private_key.decrypt(c[2:5]), x[2:5])
    np.testing.assert_array_equal(private_key.decrypt(c[[0, 11, 5]]), x[[0, 11, 5]])
    np.testing.assert_array_equal(private_key.decrypt(c[x > 8]), x[x > 8])
    grid = c.reshape(3, 4)
    np.testing.assert_array_equal(private_key.decrypt(grid.T), x.reshape(3, 4).T)
    np.testing.assert_array_equal(private_key.decrypt(grid.ravel()), x)
    np.testing.assert_array_equal(private_key.decrypt(grid.reshape((4, 3))), x.reshape(4, 3))
    joined = CipherArray.concatenate([c[:2], c[5:7] * 0.5])
    np.testing.assert_array_equal(private_key.decrypt(joined), [0.0, 1.0, 2.5, 3.0])


def test_ciphertexts_under_different_keys_do_not_mix(keys, other_keys):
    a = keys[0].encrypt([1.0])
    b = other_keys[0].encrypt([1.0])
    with pytest.raises(KeyMismatchError):
        a + b
    with pytest.raises(KeyMismatchError):
        CipherArray.concatenate([a, b])
    with pytest.raises(KeyMismatchError):
        keys[1].decrypt(b)


# -- masking ----------------------------------------------------------------------------------------
def test_masked_round_trip_through_the_arbiter(keys):
    public_key, private_key = keys
    gradient = np.array([0.25, -3.5, 1e-6, 0.0])
    c = public_key.encrypt(gradient) * 0.5
    masked, mask = c.masked()
    raw = private_key.decrypt_raw(masked)
    assert all(0 <= m < public_key.n for m in raw)
    encoded = private_key.decrypt_raw(c)
    assert all(m != e for m, e in zip(raw, encoded))  # the arbiter sees only the masked values
    np.testing.assert_allclose(mask.unmask(raw), gradient * 0.5, atol=RESOLUTION)


@pytest.mark.parametrize("raw", ["nope", [1, 2], [1, 2, 3.0], [1, 2, -1], None])
def test_unmask_refuses_malformed_answers(keys, raw):
    public_key, _ = keys
    masked, mask = public_key.encrypt([1.0, 2.0, 3.0]).masked()
    with pytest.raises(ProtocolError, match="arbiter"):
        mask.unmask(raw, peer="arbiter", tag="grad")


def test_unmask_refuses_values_at_or_above_n(keys):
    public_key, _ = keys
    _, mask = public_key.encrypt([1.0]).masked()
    with pytest.raises(ProtocolError):
        mask.unmask([int(public_key.n)])


# -- wire -------------------------------------------------------------------------------------------
def test_codec_round_trip(keys):
    public_key, private_key = keys
    c = public_key.encrypt(np.arange(6.0).reshape(2, 3)) * 3
    message = codec.decode(codec.encode({"grad": c, "key": public_key}))
    assert message["key"] is public_key
    assert message["grad"].shape == (2, 3) and message["grad"].exponent == c.exponent
    np.testing.assert_array_equal(private_key.decrypt(message["grad"]), np.arange(6.0).reshape(2, 3) * 3)


def test_fixed_width_serialisation(keys):
    public_key, _ = keys
    c = public_key.encrypt(np.ones(5))
    width = (public_key.nsquare.bit_length() + 7) // 8
    assert len(c.to_bytes()) == 5 * width
    back = CipherArray.from_bytes(public_key, c.to_bytes(), (5,), c.exponent)
    assert back.ciphertexts() == c.ciphertexts()


def test_fresh_ciphertexts_travel_as_they_are_derived_ones_rerandomised(keys):
    public_key, private_key = keys
    fresh = public_key.encrypt([1.0, 2.0])
    assert fresh.to_wire()["data"] == fresh.to_bytes()
    derived = fresh + fresh
    wire = derived.to_wire()
    assert wire["data"] != derived.to_bytes()
    np.testing.assert_array_equal(private_key.decrypt(CipherArray.from_wire(wire)), [2.0, 4.0])
    as_is = (fresh - 1.0).sendable_as_is()  # the caller vouches that the receiver never saw ``fresh``
    assert as_is.to_wire()["data"] == as_is.to_bytes()
    np.testing.assert_array_equal(private_key.decrypt(CipherArray.from_wire(as_is.to_wire())), [0.0, 1.0])


def _wire(keys):
    return keys[0].encrypt([1.0, 2.0]).to_wire()


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda w, k: w.update(shape="2"), TypeError),
        (lambda w, k: w.update(shape=[2.0]), ValueError),
        (lambda w, k: w.update(shape=[-2]), ValueError),
        (lambda w, k: w.update(shape=[1] * 9), TypeError),
        (lambda w, k: w.update(shape=[3]), ValueError),
        (lambda w, k: w.update(exponent=1.5), ValueError),
        (lambda w, k: w.update(exponent=True), ValueError),
        (lambda w, k: w.update(exponent=-1), ValueError),
        (lambda w, k: w.update(exponent=10**6), ValueError),
        (lambda w, k: w.update(data=w["data"][:-1]), ValueError),
        (lambda w, k: w.update(data=list(w["data"])), TypeError),
        (lambda w, k: w.update(data=b"\xff" * len(w["data"])), ValueError),  # c >= n^2
        (lambda w, k: w.update(data=bytes(len(w["data"]))), ValueError),  # c == 0
        (lambda w, k: w.update(data=int(k.nsquare).to_bytes(len(w["data"]) // 2, "big") * 2), ValueError),
        (lambda w, k: w.update(extra=1), TypeError),
        (lambda w, k: w.pop("key"), TypeError),
        (lambda w, k: w.update(key={"n": int(k.n)}), TypeError),
        (lambda w, k: w.update(key={"n": int(k.n).to_bytes(128, "big"), "g": b"1"}), TypeError),
        (lambda w, k: w.update(key={"n": b"\x00" + int(k.n).to_bytes(128, "big")}), ValueError),
        (lambda w, k: w.update(key={"n": int(k.n + 1).to_bytes(128, "big")}), ValueError),  # even
        (lambda w, k: w.update(key={"n": (3 * (2**1022 + 1)).to_bytes(128, "big")}), ValueError),  # small factor
        (lambda w, k: w.update(key={"n": (2**511 + 187).to_bytes(64, "big")}), ValueError),  # tiny n
        (lambda w, k: w.update(key={"n": (2**8192 + 1).to_bytes(1025, "big")}), ValueError),  # huge n
    ],
)
def test_from_wire_refuses_malformed_fields(keys, change, error):
    wire = _wire(keys)
    change(wire, keys[0])
    with pytest.raises(error):
        CipherArray.from_wire(wire)


def test_malformed_ciphertexts_from_a_peer_are_protocol_errors(keys):
    wire = _wire(keys)
    wire["data"] = wire["data"][:-3]
    message = codec.frame(codec._pack({"g": codec.msgpack.ExtType(codec._EXT_CIPHER, codec._pack(wire))}))
    with pytest.raises(ProtocolError, match="host"):
        codec.decode(message, peer="host", tag="gradient")
