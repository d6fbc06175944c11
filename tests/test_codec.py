"""The wire codec: every wire type round-trips; hostile bytes give ProtocolError and nothing else."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from isthmus.errors import ProtocolError
from isthmus.transport import codec

WIRE_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 300), max_value=1 << 300)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


# Plain values with arrays anywhere in them: envelopes inside lists and maps are the normal case.
with_arrays = st.recursive(
    plain | arrays(st.sampled_from(WIRE_DTYPES), st.integers(0, 6)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _array_envelope(dtype: str, shape: list, data: bytes) -> bytes:
    return codec.frame(_record(1, msgpack.packb([dtype, shape], use_bin_type=True)), data)


def _ext(code: int, payload: bytes) -> bytes:
    return codec.frame(_record(code, payload))


def _header(message: bytes) -> bytes:
    """What follows the magic bytes and the header's length (a message without arrays has nothing else)."""
    return message[len(codec.MAGIC) + codec._HEADER_LENGTH_BYTES :]


def _record(code: int, payload: bytes) -> bytes:
    """An ext 32 record by hand: msgpack's ExtType refuses the negative codes a hostile peer may send."""
    return b"\xc9" + len(payload).to_bytes(4, "big") + code.to_bytes(1, "big", signed=True) + payload


def _list_of(items: list[bytes]) -> bytes:
    return bytes([0x90 | len(items)]) + b"".join(items)  # a fixarray: at most 15 items


def _array_record(dtype: str, length: int) -> bytes:
    return _record(1, msgpack.packb([np.dtype(dtype).str, [length]]))


# Headers a hostile peer may write: plain values and arrays, wrapped in envelopes of any code (also
# envelopes in envelopes) and in lists, to any depth; the arrays' bytes that follow are drawn apart.
hostile_headers = st.recursive(
    plain.map(lambda value: _header(codec.encode(value)))
    | st.builds(_array_record, st.sampled_from(WIRE_DTYPES), st.integers(0, 4)),
    lambda children: st.builds(_record, st.sampled_from([1, 2, 3, 4, 0, -1]), children) | st.lists(children, max_size=4).map(_list_of),
    max_leaves=12,
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, list):
        return type(b) is list and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


def _in_vocabulary(obj: object) -> bool:
    if obj is None or type(obj) in (bool, int, float, str, bytes, np.ndarray):
        return True
    if type(obj) is list:
        return all(_in_vocabulary(item) for item in obj)
    if type(obj) is dict:
        return all(type(key) in (str, bytes) and _in_vocabulary(value) for key, value in obj.items())
    return False


@given(plain)
def test_plain_values_round_trip(value):
    assert codec.decode(codec.encode(value)) == value


@given(with_arrays)
def test_values_with_arrays_round_trip(value):
    assert _same(codec.decode(codec.encode(value)), value)


@pytest.mark.parametrize("value", [0, -1, (1 << 63) - 1, -(1 << 63), (1 << 64) - 1, 1 << 64, -(1 << 64), 7**200, -(7**200)])
def test_integers_of_any_size_round_trip(value):
    got = codec.decode(codec.encode(value))
    assert got == value and type(got) is int


def test_special_floats_and_tuples():
    got = codec.decode(codec.encode([math.inf, -math.inf, math.nan, (1, "a")]))
    assert got[:2] == [math.inf, -math.inf] and math.isnan(got[2]) and got[3] == [1, "a"]


@pytest.mark.parametrize("dtype", WIRE_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (2, 3, 4), (1,) * codec.MAX_NDIM])
def test_arrays_of_every_wire_dtype_round_trip(dtype, shape):
    array = (np.arange(int(np.prod(shape))) % 5).astype(dtype).reshape(shape)
    got = codec.decode(codec.encode({"a": array}))["a"]
    assert got.dtype == np.dtype(dtype) and got.shape == shape
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable  # a decoded array belongs to the caller


def test_big_endian_and_strided_arrays_arrive_as_native_values():
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    strided = np.arange(20.0)[::3]
    got_big, got_strided = codec.decode(codec.encode([big_endian, strided]))
    np.testing.assert_array_equal(got_big, big_endian)
    np.testing.assert_array_equal(got_strided, strided)
    assert got_big.dtype == np.dtype("<i4")


def test_numpy_scalars_become_python_values():
    got = codec.decode(codec.encode([np.int64(-3), np.float32(0.5), np.bool_(True), np.uint64((1 << 64) - 1)]))
    assert got == [-3, 0.5, True, (1 << 64) - 1]
    assert [type(v) for v in got] == [int, float, bool, int]


@pytest.mark.parametrize("value", [np.array([{}], dtype=object), np.array(["text"]), np.zeros(2, dtype=np.complex128), np.zeros(2, dtype=np.float16)])
def test_arrays_outside_the_wire_dtypes_are_refused_when_encoding(value):
    with pytest.raises(TypeError, match="cannot cross the wire"):
        codec.encode(value)


@pytest.mark.parametrize("value", [object(), {1, 2}, 1 + 2j, len])
def test_other_python_objects_are_refused_when_encoding(value):
    with pytest.raises(TypeError):
        codec.encode(value)


def test_errors_name_peer_and_tag():
    with pytest.raises(ProtocolError, match=r"peer='host', tag='gradients'") as bad:
        codec.decode(b"garbage", peer="host", tag="gradients")
    assert (bad.value.peer, bad.value.tag) == ("host", "gradients")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_raise_protocol_error_and_nothing_else(data):
    with pytest.raises(ProtocolError):
        codec.decode(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.binary(max_size=40))
def test_random_bodies_decode_to_wire_values_or_protocol_error(header, array_bytes):
    try:
        value = codec.decode(codec.frame(header, array_bytes))
    except ProtocolError:
        return
    assert _in_vocabulary(value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_headers, st.binary(max_size=40))
def test_nested_envelopes_decode_to_wire_values_or_protocol_error(header, array_bytes):
    try:
        value = codec.decode(codec.frame(header, array_bytes))
    except ProtocolError:
        return
    assert _in_vocabulary(value)


VALID_MESSAGES = [
    codec.encode({"w": np.arange(6.0).reshape(2, 3), "n": 1 << 70, "s": "é", "b": b"\x00", "l": [None, True, -1.5]}),
    codec.encode([np.array([], dtype=np.int8), {"nested": {"deeper": [1, 2, 3]}}]),
]


@pytest.mark.parametrize("message", VALID_MESSAGES)
def test_every_truncation_of_a_valid_message_raises_protocol_error(message):
    for end in range(len(message)):
        with pytest.raises(ProtocolError):
            codec.decode(message[:end])


@pytest.mark.parametrize("message", VALID_MESSAGES)
def test_trailing_bytes_are_refused(message):
    with pytest.raises(ProtocolError):
        codec.decode(message + b"\x00")


@pytest.mark.parametrize("code", [0, 5, 42, 127, -2, -128])
def test_unknown_ext_codes_are_refused(code):
    with pytest.raises(ProtocolError):
        codec.decode(_ext(code, b"\x01\x02"))


def test_msgpack_timestamps_arrive_as_plain_integers():
    value = codec.decode(codec.frame(msgpack.packb(msgpack.Timestamp(5, 0))))
    assert value == 5_000_000_000 and type(value) is int


@pytest.mark.parametrize("dtype", ["|O", "<U3", "|V8", "<c16", "<f2", "<M8[s]", "bogus", 8])
def test_array_dtypes_outside_the_whitelist_are_refused(dtype):
    with pytest.raises(ProtocolError, match="dtype"):
        codec.decode(_array_envelope(dtype, [1], b"\x00" * 8))


@pytest.mark.parametrize(
    "shape",
    [[1 << 40, 1 << 40], [1 << 62], [(1 << 64) - 1, 2], [-1], [True], [1.0], "3", [1] * (codec.MAX_NDIM + 1), [2, 2]],
)
def test_shapes_that_do_not_match_the_data_are_refused(shape):
    with pytest.raises(ProtocolError):
        codec.decode(_array_envelope("<f8", shape, b"\x00" * 8))


@pytest.mark.parametrize("envelope", [[], ["<f8"], ["<f8", [1], b"\x00" * 8], {"dtype": "<f8"}, "x"])
def test_malformed_array_envelopes_are_refused(envelope):
    with pytest.raises(ProtocolError):
        codec.decode(_ext(1, msgpack.packb(envelope, use_bin_type=True)))


@pytest.mark.parametrize("payload", [b"", b"\x02\x01", b"\xff"])
def test_malformed_big_integers_are_refused(payload):
    with pytest.raises(ProtocolError):
        codec.decode(_ext(4, payload))


@pytest.mark.parametrize("header", [b"\xdd\x3f\xff\xff\xff", b"\xdf\x3f\xff\xff\xff", b"\xc6\x3f\xff\xff\xff", b"\xdb\x7f\xff\xff\xff"])
def test_huge_declared_lengths_are_refused_without_allocating(header):
    with pytest.raises(ProtocolError):
        codec.decode(codec.frame(header))


def test_non_string_map_keys_are_refused():
    with pytest.raises(ProtocolError):
        codec.decode(codec.frame(msgpack.packb({1: "one"})))


def test_deep_nesting_is_refused():
    with pytest.raises(ProtocolError):
        codec.decode(codec.frame(b"\x91" * 100_000 + b"\xc0"))


def test_size_limit_is_checked_before_parsing():
    message = codec.encode(np.zeros(1000))
    assert codec.decode(message, max_bytes=len(message)).shape == (1000,)
    with pytest.raises(ProtocolError, match=f"exceeds the limit of {len(message) - 1}"):
        codec.decode(message, max_bytes=len(message) - 1)


def test_bad_magic_is_refused():
    """Also a message of the earlier wire format (arrays inside msgpack), from a party not yet upgraded."""
    with pytest.raises(ProtocolError, match="magic"):
        codec.decode(b"ISM1" + codec.encode(1)[4:])


def test_arrays_take_their_bytes_after_the_header_in_the_order_they_appear():
    first, second = np.arange(3, dtype=np.int16), np.array([[0.5, 1.5]])
    message = codec.encode({"a": first, "b": [second]})
    assert message.endswith(first.tobytes() + second.tobytes())
    got = codec.decode(message)
    assert _same(got, {"a": first, "b": [second]})
    got["a"][0] = 7  # a received array is the receiver's own, not a view of the message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (codec.MAGIC + b"\x00\x00", "ends before its header's length"),
        (codec.MAGIC + (100).to_bytes(4, "big") + b"\xc0", "header of 100 bytes is longer than the message"),
        (_array_envelope("<f8", [2], b"\x00" * 15), "longer than the bytes left"),
        (_array_envelope("<f8", [2], b"\x00" * 17), "1 bytes after the last array"),
        (codec.frame(msgpack.packb([1, 2]), b"\x00"), "1 bytes after the last array"),
    ],
)
def test_a_frame_whose_lengths_disagree_is_refused(message, reason):
    with pytest.raises(ProtocolError, match=reason):
        codec.decode(message)
