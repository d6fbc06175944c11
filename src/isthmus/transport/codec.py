"""Typed wire envelopes for protocol messages, built on msgpack; a peer's bytes are hostile input.

What can cross: None, bool, int, float, str, bytes, lists, dicts with string keys, numpy arrays of
whitelisted dtypes, Paillier public keys and ciphertext arrays (CKKS ones travel as maps of SEAL's bytes,
which Inspect.cipher parses against the job's key). Anything else is refused when
encoding (a programming error) or when decoding (a :class:`ProtocolError` naming peer and tag).
Nothing is ever unpickled.

A message is ``MAGIC``, the header's length (4 bytes, big-endian), the header (msgpack) and then the
arrays' bytes, one after another in the order their envelopes appear in the header. Arrays travel
outside msgpack so that a large one is copied once when encoding and once when decoding: inside it,
packing the array into its envelope, the envelope into the message and decoding back each made another
copy, and the codec, not the network, limited a 200 MB array's transfer (about 120 MB/s).

Decoding is bounded, so a small message cannot cost a large amount of memory or stack:

- an envelope (array, ciphertext array, public key) holds plain values only, never another
  envelope: each envelope is parsed by a nested msgpack call, so envelopes inside envelopes would
  recurse on the C stack and a few hundred of them (under a kilobyte) would crash the process;
- plain nesting is bounded by msgpack's own stack (a ``StackError``, hence a ``ProtocolError``);
- one message holds at most :data:`MAX_ELEMENTS` lists, maps, envelopes and items in them, counted
  as they are built. An empty map costs one byte on the wire and about 70 in memory, so without
  this bound 15 MiB of empty maps decode to over 1 GiB. Bulk data travels as arrays, ciphertext
  arrays or bytes, which are one element each, so real messages stay far below the bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from isthmus.errors import ProtocolError

MAGIC = b"ISM2"
_HEADER_LENGTH_BYTES = 4
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: larger payloads are a protocol bug or an attack
MAX_NDIM = 8
#: Lists, maps, envelopes and the items in them, per message. The largest message of the test suite's
#: protocol runs holds 279 (measured); refusing more costs at most about 70 bytes per element.
MAX_ELEMENTS = 1 << 20

_EXT_NDARRAY = 1
_EXT_CIPHER = 2
_EXT_PUBLIC_KEY = 3
_EXT_BIGINT = 4

# Little-endian, fixed-size dtypes only: no objects, no strings, no structured records.
_DTYPES = {
    np.dtype(name).str: np.dtype(name)
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
}
_INT64 = (-(1 << 63), (1 << 64) - 1)


def encode(obj: Any) -> bytes:
    """Serialise one message; raises ``TypeError`` for anything outside the wire vocabulary."""
    arrays: list[np.ndarray] = []
    header = msgpack.packb(obj, default=lambda value: _to_ext(value, arrays), use_bin_type=True, strict_types=False)
    return frame(header, *(array.reshape(-1).view(np.uint8) for array in arrays))


def frame(header: bytes, *array_bytes: Any) -> bytes:
    """A whole message: ``header`` (msgpack) followed by the bytes of the arrays its envelopes announce."""
    return b"".join([MAGIC, len(header).to_bytes(_HEADER_LENGTH_BYTES, "big"), header, *array_bytes])


def decode(data: bytes, *, peer: str | None = None, tag: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse one message from ``peer``; every failure is a :class:`ProtocolError`."""
    if len(data) > max_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}", peer=peer, tag=tag)
    if not data.startswith(MAGIC):
        raise ProtocolError("not an isthmus message (bad magic bytes)", peer=peer, tag=tag)
    try:
        return _Decoding(memoryview(data)[len(MAGIC):]).message()
    except ProtocolError as exc:
        raise ProtocolError(str(exc), peer=peer, tag=tag) from None
    except Exception as exc:  # msgpack raises many types for malformed input; all mean the same here
        raise ProtocolError(f"malformed message: {type(exc).__name__}: {exc}", peer=peer, tag=tag) from None


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _to_ext(obj: Any, arrays: list[np.ndarray]) -> Any:
    """``obj``'s envelope; an array's bytes go to ``arrays``, to follow the header."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.newbyteorder("<").str not in _DTYPES:
            raise TypeError(f"numpy dtype {obj.dtype} cannot cross the wire")
        arr = np.asarray(obj, dtype=obj.dtype.newbyteorder("<"), order="C")  # ascontiguousarray makes 0-d arrays 1-d
        arrays.append(arr)
        return msgpack.ExtType(_EXT_NDARRAY, _pack([arr.dtype.str, list(arr.shape)]))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, int) and not _INT64[0] <= obj <= _INT64[1]:
        return msgpack.ExtType(_EXT_BIGINT, _bigint_bytes(obj))
    if isinstance(obj, tuple):
        return list(obj)
    from isthmus.crypto.paillier import CipherArray, PaillierPublicKey  # only here: plain data never imports crypto

    if isinstance(obj, CipherArray):
        return msgpack.ExtType(_EXT_CIPHER, _pack(obj.to_wire()))
    if isinstance(obj, PaillierPublicKey):
        return msgpack.ExtType(_EXT_PUBLIC_KEY, _pack(obj.to_wire()))
    from isthmus.crypto.ckks import CkksArray, CkksPublicKey  # TenSEAL itself is imported only when used

    if isinstance(obj, (CkksArray, CkksPublicKey)):  # SEAL's bytes in a plain map: the receiver parses them
        return obj.to_wire()
    raise TypeError(f"{type(obj).__name__} cannot cross the wire")


class _Decoding:
    """One message being decoded: the element budget it shares with the envelopes inside it, and the
    arrays' bytes that its array envelopes take in turn."""

    def __init__(self, body: memoryview) -> None:
        self.left = MAX_ELEMENTS
        if len(body) < _HEADER_LENGTH_BYTES:
            raise ProtocolError("message ends before its header's length")
        header_end = _HEADER_LENGTH_BYTES + int.from_bytes(body[:_HEADER_LENGTH_BYTES], "big")
        if header_end > len(body):
            raise ProtocolError(f"header of {header_end - _HEADER_LENGTH_BYTES} bytes is longer than the message")
        self.header, self.array_bytes = body[_HEADER_LENGTH_BYTES:header_end], body[header_end:]
        self.taken = 0

    def message(self) -> Any:
        value = self._unpack(self.header, self._envelope)
        if self.taken != len(self.array_bytes):
            raise ProtocolError(f"{len(self.array_bytes) - self.taken} bytes after the last array")
        return value

    def _array(self, fields: Any) -> np.ndarray:
        """The next array announced by an envelope, copied out of the message so that it is writable."""
        dtype, shape = _array_header(fields)
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if size > len(self.array_bytes) - self.taken:
            raise ProtocolError(f"array of shape {shape} and dtype {dtype} is longer than the bytes left in the message")
        start, self.taken = self.taken, self.taken + size
        return np.frombuffer(self.array_bytes[start:self.taken], dtype=dtype).reshape(shape).copy()

    def _unpack(self, data: bytes | memoryview, ext_hook: Callable[[int, bytes], Any]) -> Any:
        return msgpack.unpackb(
            data,
            ext_hook=ext_hook,
            list_hook=self._spend,
            object_hook=self._spend,
            raw=False,
            strict_map_key=True,
            use_list=True,
            timestamp=2,  # msgpack's built-in timestamp ext (-1) would bypass ext_hook; as an int it stays in vocabulary
            max_array_len=MAX_ELEMENTS,
            max_map_len=MAX_ELEMENTS,
            max_str_len=len(data),
            max_bin_len=len(data),
            max_ext_len=len(data),
        )

    def _spend(self, container: Any) -> Any:
        """Count a finished list or map (msgpack calls this for each) against the budget."""
        self._take(1 + len(container))
        return container

    def _take(self, elements: int) -> None:
        self.left -= elements
        if self.left < 0:
            raise ProtocolError(f"more than {MAX_ELEMENTS} lists, maps, envelopes and items in one message")

    def _envelope(self, code: int, payload: bytes) -> Any:
        self._take(1)
        if code == _EXT_NDARRAY:
            return self._array(self._fields(payload))
        if code == _EXT_BIGINT:
            if not payload:
                raise ProtocolError("empty big integer")
            magnitude = int.from_bytes(payload[1:], "big")
            if payload[0] not in (0, 1):
                raise ProtocolError("bad big integer sign byte")
            return -magnitude if payload[0] else magnitude
        if code in (_EXT_CIPHER, _EXT_PUBLIC_KEY):
            from isthmus.crypto.paillier import CipherArray, PaillierPublicKey

            fields = self._fields(payload)
            if not isinstance(fields, dict):
                raise ProtocolError("ciphertext or key envelope is not a map")
            try:
                return (CipherArray if code == _EXT_CIPHER else PaillierPublicKey).from_wire(fields)
            except (ValueError, TypeError, KeyError) as exc:
                raise ProtocolError(f"invalid {'ciphertext array' if code == _EXT_CIPHER else 'public key'}: {exc}") from None
        raise ProtocolError(f"unknown wire type {code}")

    def _fields(self, payload: bytes) -> Any:
        """An envelope's plain contents; a wire type inside is refused before it is parsed."""
        return self._unpack(payload, _refuse_nested)


def _refuse_nested(code: int, payload: bytes) -> Any:
    raise ProtocolError(f"wire type {code} inside an envelope")


def _array_header(fields: Any) -> tuple[np.dtype, list[int]]:
    if not (isinstance(fields, list) and len(fields) == 2):
        raise ProtocolError("array envelope must be [dtype, shape]")
    dtype_name, shape = fields
    dtype = _DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise ProtocolError(f"array dtype {dtype_name!r} is not allowed")
    if not (isinstance(shape, list) and len(shape) <= MAX_NDIM and all(type(d) is int and d >= 0 for d in shape)):
        raise ProtocolError(f"bad array shape {shape!r}")
    return dtype, shape


def _bigint_bytes(value: int) -> bytes:
    magnitude = abs(value)
    return bytes([value < 0]) + magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
